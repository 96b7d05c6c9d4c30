//! The one layer that touches the host: bounded file reads, external commands with explicit
//! argv and a deadline, and the /proc process table.
//!
//! Architecture invariant: nothing here writes to the host. Every read has a byte cap and
//! every command a timeout, so a caller cannot hang or exhaust memory through this crate.

pub mod civil;
pub mod exec;
pub mod fsread;
pub mod hash;
pub mod logtail;
pub mod netlink;
pub mod packages;
pub mod proc;
pub mod users;

pub use exec::{
    run, run_isolated, run_without_binding, start_isolated, start_without_binding, CommandOutput,
    ExecError, IsolatedSpawner, RunningCommand,
};
pub use fsread::{open_regular, read_bounded, read_to_string_bounded, ReadError};
pub use logtail::{read_tail, read_tail_screened, BlockScreen, LineTake, TailLimits, TailRead};
pub use packages::{read_package_changes, PackageChange};
pub use proc::{own_netns, Credentials, ProcessInfo, ProcessTable, SocketOwnerScan};
pub use users::{group_name, identity_for, user_name, Identity};
