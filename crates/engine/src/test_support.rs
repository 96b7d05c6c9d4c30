//! Fixtures the engine's unit tests share: an upstream with nginx's default settings and an
//! error-log line.

use why502_model::Protocol;
use why502_nginx::errorlog::ErrorLogLine;

use crate::targets::{address_string, TargetAddr, UpstreamTarget};

/// An HTTP upstream at `addr` with nginx's default settings and no references.
pub fn target(addr: TargetAddr) -> UpstreamTarget {
    UpstreamTarget {
        address: address_string(&addr),
        addr,
        name: None,
        protocol: Protocol::Http,
        tls: false,
        references: Vec::new(),
        server_names: Vec::new(),
        settings: why502_nginx::config::PassSettings::default(),
        resolved_at_request_time: false,
    }
}

/// `target` at 127.0.0.1:`port`.
pub fn tcp_target(port: u16) -> UpstreamTarget {
    target(TargetAddr::Tcp {
        host: "127.0.0.1".into(),
        port,
    })
}

/// An error-level line naming `upstream` in its upstream field, unclassified, at time 0.
pub fn error_line(upstream: &str, message: &str) -> ErrorLogLine {
    ErrorLogLine {
        time: 0,
        stamp: String::new(),
        level: "error".into(),
        message: message.into(),
        upstream: Some(upstream.into()),
        server: None,
        class: None,
    }
}
