//! nginx: configuration parser and model, discovery of the running master, `nginx -t`,
//! and the error log.
//!
//! Architecture invariant: parsing never fails on content — a broken config yields a model
//! plus `ParseError`s with file:line; only an unreadable main file is an `Err`. Every file
//! read is bounded.

pub mod accesslog;
pub mod check;
pub mod config;
pub mod discovery;
pub mod errorlog;
