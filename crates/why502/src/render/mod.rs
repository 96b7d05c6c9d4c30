//! Renderers: the report as text for a person, JSON for panels, Prometheus text and a
//! Nagios/monitoring-plugin line for timers. Architecture invariant: only this crate knows
//! about terminals and output formats.

pub mod catalog;
pub mod metrics;
pub mod text;
pub mod tree;
