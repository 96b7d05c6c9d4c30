//! A backend's own log: timestamps, classification of failure lines, the window read backward,
//! and summaries with fixes.

pub mod classify;
pub mod stamp;
pub mod summary;
pub mod window;

pub use classify::{classify_backend_line, signal_name, BackendLogClass};
pub use stamp::{parse_stamp, LocalClock, StampForm, Stamped};
pub use summary::{fix_text, summarize, ClassSummary, FixContext};
pub use window::{
    attribute_kills_to_timeouts, lifecycle_of, read_backend_log, unreadable_log, BackendLogEvent,
    BackendLogWindow, BackwardScan, Lifecycle, LifecycleEvent,
};
