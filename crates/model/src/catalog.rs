//! The cause catalog: every cause id of the contract, declared once with its title, the step
//! that finds it, the fix an admin applies and what to read. `why502 causes`, the verdicts'
//! fix text and docs/causes.md all come from this table.

use serde::{Deserialize, Serialize};

use crate::StepId;

macro_rules! causes {
    ($( $variant:ident = $id:literal, step: $step:expr, title: $title:literal, fix: $fix:literal, docs: $docs:literal; )*) => {
        /// A stable, snake_case cause id. Panels and alert rules key on these: never rename.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum CauseId { $( $variant, )* }

        /// Every cause, in the contract's order.
        pub const CAUSES: &[CauseInfo] = &[
            $( CauseInfo { id: CauseId::$variant, name: $id, step: $step, title: $title, fix: $fix, docs: $docs }, )*
        ];

        impl CauseId {
            pub fn as_str(self) -> &'static str {
                match self { $( CauseId::$variant => $id, )* }
            }
        }
    };
}

/// One declaration of the catalog.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CauseInfo {
    #[serde(skip)]
    pub id: CauseId,
    #[serde(rename = "id")]
    pub name: &'static str,
    /// The step whose break this cause explains (`None` for `none` and `unknown`).
    pub step: Option<StepId>,
    pub title: &'static str,
    /// What an admin does about it, in general terms; a verdict's fix names the concrete paths.
    pub fix: &'static str,
    /// Longer explanation: how the agent recognises it.
    pub docs: &'static str,
}

causes! {
    None = "none", step: None,
        title: "No break found",
        fix: "Nothing to fix.",
        docs: "Every step that ran passed for this upstream.";
    BackendDown = "backend_down", step: Some(StepId::BackendUp),
        title: "The backend is not running",
        fix: "Start the backend (e.g. `systemctl start php8.2-fpm`), then find out why it stopped: its journal, its own log, and the kernel log for OOM kills.",
        docs: "No process listens where nginx points: no TCP listener on the address, or no unix socket file and no backend-like process listening on a socket anywhere else. nginx logs `connect() failed (111: Connection refused)` or `(2: No such file or directory)`. When a stopped container published the address, the summary names it, its exit code and when it stopped.";
    SocketMissing = "socket_missing", step: Some(StepId::BackendUp),
        title: "The unix socket nginx points to does not exist",
        fix: "Restart the backend so it re-creates its socket (a running process whose socket file was deleted cannot get it back), and look for what deleted it: a tmpfiles.d clean-up of /run or /tmp, a second instance, a deploy script.",
        docs: "The socket path in `fastcgi_pass`/`proxy_pass` is absent, yet a backend process still holds a listening unix socket bound to that path (its file was unlinked). nginx logs `(2: No such file or directory)`.";
    SocketPermission = "socket_permission", step: Some(StepId::BackendUp),
        title: "nginx's worker user may not connect to the unix socket",
        fix: "Let the worker user write to the socket: set listen.owner/listen.group/listen.mode (php-fpm) or the backend's socket mode so the worker user or its group has write permission, and give every parent directory search (x) permission for it; then restart the backend.",
        docs: "Connecting to a unix socket needs write permission on the socket and search permission on every directory above it, for the worker's uid, gid and supplementary groups. nginx logs `(13: Permission denied)`.";
    SocketStale = "socket_stale", step: Some(StepId::BackendUp),
        title: "The socket file exists but nothing accepts on it",
        fix: "The backend died without removing its socket (crash, SIGKILL, OOM kill). Restart the backend, and find out why it died.",
        docs: "The path is a socket file, but no process holds a listening socket bound to it (/proc/net/unix). nginx logs `(111: Connection refused)` on a unix socket.";
    AddressMismatch = "address_mismatch", step: Some(StepId::BackendUp),
        title: "The backend listens somewhere other than where nginx points",
        fix: "Make the two agree: point nginx's `*_pass` at the address the backend listens on, or change the backend's listen address; then `nginx -t && nginx -s reload` or restart the backend.",
        docs: "Nothing listens at nginx's address, but a backend-like process (php-fpm, python, gunicorn, uwsgi, node, java...) listens on another port, socket path or interface.";
    FirewallBlocked = "firewall_blocked", step: Some(StepId::Security),
        title: "A packet-filter rule blocks nginx → backend traffic",
        fix: "Allow the traffic: add an accept rule for the backend's port on the loopback or backend interface before the rule that drops it (nftables, iptables or ufw), and persist it.",
        docs: "A drop or reject rule in iptables, nftables or ufw matches the packets nginx sends to the backend.";
    SelinuxDenied = "selinux_denied", step: Some(StepId::Security),
        title: "SELinux denies nginx the socket or port",
        fix: "Allow it in policy: `setsebool -P httpd_can_network_connect 1` for TCP backends, label the socket or port (`semanage port -a`), or build a module from the AVC denial with audit2allow.",
        docs: "SELinux is enforcing and an AVC denial for httpd_t names the socket or port, or a boolean such as httpd_can_network_connect is off.";
    ApparmorDenied = "apparmor_denied", step: Some(StepId::Security),
        title: "AppArmor denies nginx the socket or port",
        fix: "Add the socket path (rw) or network rule to nginx's AppArmor profile and reload it with apparmor_parser -r.",
        docs: "An AppArmor profile confines nginx in enforce mode and an `apparmor=\"DENIED\"` line names the socket or network access.";
    UpstreamTimeout = "upstream_timeout", step: Some(StepId::DirectRequest),
        title: "The backend answers slower than nginx's read timeout",
        fix: "Find what is slow in the backend (slow queries, external calls); raise `*_read_timeout` only as a stop-gap.",
        docs: "nginx logs `upstream timed out (110: Connection timed out) while reading response header from upstream`; a direct request takes longer than the location's read timeout.";
    UpstreamReset = "upstream_reset", step: Some(StepId::DirectRequest),
        title: "The backend closes or resets the connection before a complete response",
        fix: "Look at the backend's own log for a crash or a worker killed mid-request (fatal error, segfault, max_requests, a worker timeout).",
        docs: "nginx logs `recv() failed (104: Connection reset by peer)` or `upstream prematurely closed connection`.";
    UpstreamInvalidResponse = "upstream_invalid_response", step: Some(StepId::DirectRequest),
        title: "The backend answers with a malformed response",
        fix: "Check the protocol: nginx speaks HTTP to proxy_pass, FastCGI to fastcgi_pass, uwsgi to uwsgi_pass; a mismatch or a backend that prints before its headers gives this.",
        docs: "nginx logs `upstream sent no valid HTTP/1.0 header` or `upstream sent invalid header`.";
    UpstreamHeaderTooBig = "upstream_header_too_big", step: Some(StepId::DirectRequest),
        title: "The backend's response header is larger than nginx's buffer for it",
        fix: "Raise `proxy_buffer_size` / `fastcgi_buffer_size` (and `*_buffers`) above the header size, or make the backend send smaller headers (big cookies).",
        docs: "nginx logs `upstream sent too big header while reading response header from upstream`.";
    UpstreamTls = "upstream_tls", step: Some(StepId::DirectRequest),
        title: "TLS between nginx and the backend fails",
        fix: "Renew or replace the backend's certificate, give nginx the CA with `proxy_ssl_trusted_certificate`, set `proxy_ssl_name`/`proxy_ssl_server_name on` for name checks, or use plain HTTP on loopback.",
        docs: "nginx logs `SSL_do_handshake() failed` or `upstream SSL certificate verify error`.";
    UpstreamDns = "upstream_dns", step: Some(StepId::DirectRequest),
        title: "The upstream host name does not resolve",
        fix: "Fix the name or the resolver; for names that change, use a `resolver` and a variable in `proxy_pass` so nginx resolves at request time.",
        docs: "nginx logs `could not be resolved` or `host not found in upstream`.";
    PoolExhausted = "pool_exhausted", step: Some(StepId::BackendLog),
        title: "The backend's workers are all busy",
        fix: "Raise pm.max_children (if memory allows) or the backend's worker count, and find the slow requests that hold workers.",
        docs: "php-fpm logs `server reached pm.max_children setting`; nginx logs `(11: Resource temporarily unavailable)` or `no live upstreams`.";
    AppError = "app_error", step: Some(StepId::BackendLog),
        title: "The backend application fails",
        fix: "Fix the application error its log names (fatal error, exception, memory_limit).",
        docs: "The backend's own log shows a fatal error, an uncaught exception or an exhausted memory_limit in the window; or the backend is a container that exits by itself (the engine's exit code, its restarts under a restart policy, its last log lines), or fails its health check (a warning).";
    OomKilled = "oom_killed", step: Some(StepId::Resources),
        title: "The kernel OOM killer killed the backend",
        fix: "Give the backend memory headroom: fewer workers, a lower memory_limit, a larger cgroup limit, swap, or more RAM; then restart it.",
        docs: "The kernel log shows an OOM kill of the backend's process or cgroup in the window, or the backend's container engine records `OOMKilled` for its last run (a memory limit such as `docker run -m`).";
    DiskFull = "disk_full", step: Some(StepId::Resources),
        title: "A filesystem the chain needs is out of space",
        fix: "Free space on the filesystem (rotate logs, clear caches and temp files), then restart what failed.",
        docs: "statvfs of a filesystem the chain writes to shows no free blocks for the user that writes.";
    InodesExhausted = "inodes_exhausted", step: Some(StepId::Resources),
        title: "A filesystem the chain needs is out of inodes",
        fix: "Delete the many small files (sessions, cache entries) filling the filesystem, then restart what failed.",
        docs: "statvfs of a filesystem the chain writes to shows no free inodes.";
    NginxConfigInvalid = "nginx_config_invalid", step: Some(StepId::NginxConfig),
        title: "nginx's configuration does not pass `nginx -t`",
        fix: "Fix the directive at the file:line nginx names, run `nginx -t`, then reload.",
        docs: "`nginx -t` fails, or the configuration cannot be parsed. A running nginx keeps its old configuration, but the next reload or restart fails.";
    NginxTempPath = "nginx_temp_path", step: Some(StepId::ErrorLog),
        title: "nginx cannot write its own temp or cache files",
        fix: "Make nginx's temp directory (the `*_temp_path` its error line names; /var/lib/nginx on Debian) writable by the worker user (`chown -R www-data: /var/lib/nginx/proxy`) or point `proxy_temp_path` elsewhere, then reload.",
        docs: "nginx's error log shows it failing to create or write a temp file (permission denied, a missing directory) while buffering an upstream's response: the failure is nginx's own filesystem, not the backend.";
    Unknown = "unknown", step: None,
        title: "nginx reports 502s for this upstream but no probe explains them",
        fix: "Read the evidence the report quotes, and run with --all to see every step.",
        docs: "The error log shows failures for this upstream in the window, but every probe passed.";
    // Extensions of the contract: ids added after v1, never renamed.
    ConfigChangedSinceLoad = "config_changed_since_load", step: Some(StepId::NginxConfig),
        title: "Config files changed after nginx last loaded them",
        fix: "What runs is not what is on disk: review the change, run `nginx -t`, then reload (`nginx -s reload`) — or revert the files.",
        docs: "A file the configuration includes has a modification time later than the running master's last start or reload. A warning: the next reload will apply changes nobody has tested.";
}

impl CauseId {
    pub fn info(self) -> &'static CauseInfo {
        // The table is generated from the same list as the enum, in the same order.
        &CAUSES[self as usize]
    }

    pub fn title(self) -> &'static str {
        self.info().title
    }

    pub fn fix(self) -> &'static str {
        self.info().fix
    }

    pub fn from_name(name: &str) -> Option<CauseId> {
        CAUSES.iter().find(|c| c.name == name).map(|c| c.id)
    }
}

impl std::fmt::Display for CauseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's cause ids, in its order. A rename or a removal breaks this test on
    /// purpose: the ids are a public API for panels and alert rules.
    const CONTRACT_IDS: &[&str] = &[
        "none",
        "backend_down",
        "socket_missing",
        "socket_permission",
        "socket_stale",
        "address_mismatch",
        "firewall_blocked",
        "selinux_denied",
        "apparmor_denied",
        "upstream_timeout",
        "upstream_reset",
        "upstream_invalid_response",
        "upstream_header_too_big",
        "upstream_tls",
        "upstream_dns",
        "pool_exhausted",
        "app_error",
        "oom_killed",
        "disk_full",
        "inodes_exhausted",
        "nginx_config_invalid",
        "nginx_temp_path",
        "unknown",
    ];

    #[test]
    fn catalog_holds_every_contract_id_in_order() {
        let names: Vec<&str> = CAUSES.iter().map(|c| c.name).collect();
        assert_eq!(&names[..CONTRACT_IDS.len()], CONTRACT_IDS);
        // Extensions, in the order they were added.
        assert_eq!(&names[CONTRACT_IDS.len()..], ["config_changed_since_load"]);
    }

    #[test]
    fn info_lookup_matches_the_id() {
        for c in CAUSES {
            assert_eq!(c.id.info().name, c.name);
            assert_eq!(c.id.as_str(), c.name);
            assert_eq!(CauseId::from_name(c.name), Some(c.id));
            let json = serde_json::to_string(&c.id).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", c.name));
        }
    }

    #[test]
    fn every_cause_has_title_fix_and_docs() {
        for c in CAUSES {
            assert!(!c.title.is_empty(), "{} has no title", c.name);
            assert!(!c.fix.is_empty(), "{} has no fix", c.name);
            assert!(!c.docs.is_empty(), "{} has no docs", c.name);
        }
    }
}
