//! Step `error_log`: what nginx's error log says about this upstream.

use super::{StepContext, StepFinding};
use crate::targets::UpstreamTarget;

pub fn check(_target: &UpstreamTarget, _cx: &StepContext<'_>) -> StepFinding {
    StepFinding::skip("the error log is not read by this version of why502")
}
