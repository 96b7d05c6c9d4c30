//! One file per family of breakage. Every test is named `lab_<scenario>` so
//! the test runner's output lists exactly which scenarios ran.

mod backend_log;
mod config;
mod containers;
mod direct_request;
mod error_log;
mod history;
mod monitoring;
mod non_root;
mod php_fpm;
mod read_only;
mod resources;
mod screen;
mod security;
mod serve;
mod tcp;
mod temp_path;
mod timeline;
mod tls_dns;
mod traffic;
