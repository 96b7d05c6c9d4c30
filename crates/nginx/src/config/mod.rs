//! nginx configuration: a tolerant lexer/parser (`parse_config`) and the model built from it
//! (`NginxConfig::from_parsed`).

mod builder;
mod endpoint;
mod lexer;
mod model;
mod parser;
mod units;
mod variables;

#[cfg(test)]
mod tests;

pub use model::*;
pub(crate) use parser::resolve_against;
pub use parser::{parse_config, parse_config_text, ConfigReadError, ParseLimits};
pub use units::{parse_size, parse_time};
