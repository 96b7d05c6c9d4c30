//! End-to-end lab for `why502`.
//!
//! Every scenario builds a real stack — nginx, php-fpm and/or a python HTTP
//! backend — inside its own network namespace (loopback only), breaks it in
//! one specific way, proves that nginx really answers 502 for that reason,
//! and only then runs the `why502` binary inside the namespace and checks its
//! JSON verdict and exit code. See `tests/lab/README.md`.

mod harness;
mod scenarios;
