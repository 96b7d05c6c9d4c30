//! The report a run produces and the catalog of causes it may name.
//!
//! Architecture invariant: this crate is pure data. It reads nothing from the host and knows
//! nothing of terminals; every other crate depends on it and it depends on none of them.

mod catalog;
mod report;
mod step;

pub use catalog::{CauseId, CauseInfo, CAUSES};
pub use report::*;
pub use step::{Outcome, Status, StepId};
