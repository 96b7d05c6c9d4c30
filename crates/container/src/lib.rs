//! The container behind an upstream. A published port is held by `docker-proxy` (its argv
//! names the container's address) or, with `--network host`, by the container's own process
//! (its cgroup names the container); a stopped container holds nothing, and only the engine
//! still knows which port it published. This crate ties a listener or an address to a
//! container and reads the container's state from the Docker Engine API over its unix socket:
//! running or exited, exit code, `OOMKilled`, restart count, health and its last probe, and
//! the last lines it logged.
//!
//! Read-only and bounded: only `GET`s, each with a timeout and a byte cap; the engine is asked
//! only at sockets a running `dockerd` serves (connecting to a socket-activated
//! `docker.socket` would start the daemon, which is a change to the host).

pub mod api;
pub mod cgroup;
pub mod endpoint;
pub mod events;
pub mod logs;
pub mod proxy;
pub mod state;

pub use api::{EngineClient, EngineError, Limits};
pub use cgroup::{container_of_cgroup, container_of_path, ContainerRef, Runtime};
pub use endpoint::{engine_endpoints, DaemonProcess, EngineEndpoint, DEFAULT_DOCKER_SOCKET};
pub use events::{container_events, ContainerEvent};
pub use logs::{demux_logs, LogLine, LogStream};
pub use proxy::DockerProxy;
pub use state::{
    inspect, last_log_lines, short_id, ContainerState, ContainerSummary, EngineSnapshot, Health,
    HealthProbe, PortBinding, MAX_INSPECTED_STOPPED,
};
