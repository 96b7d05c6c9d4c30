//! An upstream's requests, 502s and 504s from the access logs of the sites that use it: by
//! `$upstream_addr` when the format has it (exactly this upstream's requests), else the
//! sites' own logs (or their `$host` in a shared one). A shared log without either says
//! nothing about one upstream, and is not counted.

use std::time::SystemTime;

use why502_model::{MinuteCounts, Traffic};
use why502_nginx::accesslog::Counts;

use crate::sources::Sources;
use crate::targets::UpstreamTarget;

pub fn for_target(target: &UpstreamTarget, sources: &Sources, now: SystemTime) -> Option<Traffic> {
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let names: Vec<String> = target
        .server_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let mut by_upstream = Counts::default();
    let mut by_server = Counts::default();
    let (mut up_sources, mut server_sources) = (Vec::new(), Vec::new());
    let mut covered_from = sources.since_epoch;
    for u in &sources.access_logs {
        let serves = u
            .servers
            .iter()
            .any(|s| names.contains(&s.to_ascii_lowercase()));
        if !serves {
            continue;
        }
        let Ok(w) = sources.access_window(u) else {
            continue;
        };
        if let Some(t) = w.truncated_at {
            covered_from = covered_from.max(t);
        }
        if u.format.has("upstream_addr") {
            if let Some(c) = w.by_upstream.get(&target.address) {
                by_upstream.merge(c);
            }
            up_sources.push(u.path.display().to_string());
        } else if !u.shared {
            by_server.merge(&w.all);
            server_sources.push(u.path.display().to_string());
        } else if !w.by_host.is_empty() {
            for n in &names {
                if let Some(c) = w.by_host.get(n) {
                    by_server.merge(c);
                }
            }
            server_sources.push(u.path.display().to_string());
        }
    }
    let (counts, by, srcs) = if !up_sources.is_empty() {
        (by_upstream, "upstream", up_sources)
    } else if !server_sources.is_empty() {
        (by_server, "server", server_sources)
    } else {
        return None;
    };
    Some(Traffic {
        window_s: (now_s - covered_from).max(0) as u64,
        requests: counts.requests,
        status_502: counts.status_502,
        status_504: counts.status_504,
        per_minute: counts
            .per_minute
            .iter()
            .map(|(m, c)| MinuteCounts {
                at: humantime::format_rfc3339_seconds(
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((m * 60).max(0) as u64),
                )
                .to_string(),
                requests: c[0],
                status_502: c[1],
                status_504: c[2],
            })
            .collect(),
        by: by.to_string(),
        source: srcs.join(", "),
    })
}
