//! php-fpm: its configuration, where to find it, and its status page.

pub mod config;
pub mod discovery;
pub mod ini;
pub mod status;

pub use config::{
    ConfigLoadError, ConfigProblem, FpmGlobal, FpmLogTarget, FpmPool, PhpFpmConfig, Setting,
    DEFAULT_ERROR_LOG, DEFAULT_PREFIX,
};
pub use discovery::{find_php_fpm_configs, master_config, ConfigOrigin, FoundFpmConfig};
pub use status::{
    judge_fpm_status, parse_fpm_status, parse_fpm_status_json, parse_fpm_status_text, FpmStatus,
    StatusJudgement, StatusLevel, StatusParseError,
};
