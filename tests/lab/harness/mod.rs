//! The reusable part of the lab: host requirements, network namespaces,
//! process supervision, config templates for nginx / php-fpm, the python
//! backend, and running + checking the `why502` binary.
//!
//! The harness API is wider than what today's scenarios use (e.g. php-fpm on
//! TCP), so unused items are allowed here rather than deleted.
#![allow(dead_code)]

mod agent;
mod cli;
mod docker;
mod firewall;
mod history;
mod lab;
mod misbehaving;
mod netns;
mod nginx;
mod php_fpm;
mod process;
mod python;
mod requirements;
mod resources;
mod serve;
mod syscall_audit;
mod tls_dns;
mod users;
mod wait;

// The whole API is re-exported even where no scenario uses it yet.
#[allow(unused_imports)]
pub use agent::{
    agent_bin, find_causes, find_upstream, findings, mentions_file_line, AgentRun, Expect,
    StepExpect, UpstreamExpect,
};
#[allow(unused_imports)]
pub use cli::CliSandbox;
#[allow(unused_imports)]
pub use docker::{Docker, LAB_IMAGE};
#[allow(unused_imports)]
pub use firewall::firewall_lab;
#[allow(unused_imports)]
pub use history::{
    bystander_pids, kernel_oom_kills, lab_kills, local_time, nginx_stamp, oom_kill_a_hog,
    php_fpm_stamp, record_kill, BYSTANDER_POOL,
};
#[allow(unused_imports)]
pub use lab::{tcp_addr, unix_addr, BackgroundRequests, Lab};
#[allow(unused_imports)]
pub use misbehaving::Misbehaviour;
#[allow(unused_imports)]
pub use nginx::{parse_nginx_error_location, render_nginx_conf, NGINX_LISTEN};
#[allow(unused_imports)]
pub use php_fpm::{FpmListen, PhpFpmPool};
#[allow(unused_imports)]
pub use process::{read_all, tail};
#[allow(unused_imports)]
pub use requirements::{find_program, promtool_check_metrics};
#[allow(unused_imports)]
pub use resources::{MemoryCgroup, TmpfsMount};
#[allow(unused_imports)]
pub use serve::{closed_within, raw_exchange, serve_socket_path, slowloris, ServeAnswer};
#[allow(unused_imports)]
pub use syscall_audit::SyscallAudit;
#[allow(unused_imports)]
pub use tls_dns::TestCert;
#[allow(unused_imports)]
pub use users::{lookup_group, lookup_user};
#[allow(unused_imports)]
pub use wait::poll_until;
