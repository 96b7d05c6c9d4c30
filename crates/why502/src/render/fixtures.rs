//! Fixed reports for the renderers' tests.

use why502_model::*;

pub fn upstream(i: usize, status: Status, cause: CauseId) -> UpstreamReport {
    UpstreamReport {
        address: format!("unix:/run/php/site{i}.sock"),
        name: None,
        protocol: Protocol::Fastcgi,
        tls: false,
        referenced_by: vec![Reference {
            file: "/etc/nginx/sites-enabled/x".into(),
            line: 3,
            server_name: Some(format!("site{i}.example")),
            location: Some("/".into()),
            directive: String::new(),
        }],
        status,
        verdict: Verdict {
            step: StepId::BackendUp,
            cause,
            summary: format!("summary of site {i} | with a pipe\nand a newline"),
            fix: "fix".into(),
            evidence: Vec::new(),
        },
        steps: Vec::new(),
        timeline: Vec::new(),
        traffic: None,
        container: None,
    }
}

pub fn report(upstreams: Vec<UpstreamReport>) -> Report {
    let status = Report::compute_status(&upstreams, &[]);
    Report {
        schema: SCHEMA.into(),
        status,
        host: "web-1".into(),
        started_at: "2026-12-02T03:00:00Z".into(),
        duration_ms: 42,
        nginx: NginxInfo {
            binary: None,
            conf: "/etc/nginx/nginx.conf".into(),
            conf_source: "default".into(),
            prefix: None,
            worker_user: None,
            master_pid: None,
            loaded_at: None,
            other_masters: Vec::new(),
            changed_since_load: Vec::new(),
        },
        upstreams,
        host_checks: Vec::new(),
        notes: Vec::new(),
        phases: Vec::new(),
    }
}
