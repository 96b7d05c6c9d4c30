//! The ini dialect php-fpm reads: `[section]`, `key = value`, `;` comments (`#` too, at the
//! start of a line), double-quoted values, `include=GLOB`. One line at a time, never failing.

/// One meaningful line of a php-fpm config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniLine {
    Section(String),
    Pair {
        key: String,
        value: String,
    },
    Include(String),
    /// Something php-fpm would reject; the text says what.
    Invalid(String),
}

/// Parse one line; `None` for blank lines and comments.
pub fn parse_line(line: &str) -> Option<IniLine> {
    let t = line.trim();
    if t.is_empty() || t.starts_with(';') || t.starts_with('#') {
        return None;
    }
    if let Some(rest) = t.strip_prefix('[') {
        return Some(match strip_comment(rest).trim_end().strip_suffix(']') {
            Some(name) if !name.trim().is_empty() => IniLine::Section(name.trim().to_string()),
            _ => IniLine::Invalid(format!("malformed section header `{t}`")),
        });
    }
    let Some((key, value)) = t.split_once('=') else {
        return Some(IniLine::Invalid(format!(
            "expected `key = value`, found `{t}`"
        )));
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        return Some(IniLine::Invalid(format!("empty key in `{t}`")));
    }
    let value = unquote(strip_comment(value).trim());
    if key == "include" {
        return Some(IniLine::Include(value));
    }
    Some(IniLine::Pair { key, value })
}

/// Drop a `;` comment that is outside double quotes.
fn strip_comment(s: &str) -> &str {
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => return &s[..i],
            _ => {}
        }
    }
    s
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        return s[1..s.len() - 1].to_string();
    }
    s.to_string()
}

/// ini booleans as PHP reads them.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" | "" | "none" => Some(false),
        _ => None,
    }
}

/// php-fpm's time values: seconds by default, or a `s`, `m`, `h`, `d` suffix. `0` is off.
pub fn parse_fpm_seconds(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last()? {
        (i, 's') => (&v[..i], 1),
        (i, 'm') => (&v[..i], 60),
        (i, 'h') => (&v[..i], 3600),
        (i, 'd') => (&v[..i], 86_400),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse_line("; comment"), None);
        assert_eq!(parse_line("   "), None);
        assert_eq!(
            parse_line("[www] ; the pool"),
            Some(IniLine::Section("www".into()))
        );
        assert_eq!(
            parse_line("php_admin_value[error_log] = /var/log/fpm-php.www.log ; x"),
            Some(IniLine::Pair {
                key: "php_admin_value[error_log]".into(),
                value: "/var/log/fpm-php.www.log".into()
            })
        );
        assert_eq!(
            parse_line(r#"ping.response = "pong; really""#),
            Some(IniLine::Pair {
                key: "ping.response".into(),
                value: "pong; really".into()
            })
        );
        assert_eq!(
            parse_line("include=/etc/php/8.2/fpm/pool.d/*.conf"),
            Some(IniLine::Include("/etc/php/8.2/fpm/pool.d/*.conf".into()))
        );
        assert!(matches!(parse_line("[broken"), Some(IniLine::Invalid(_))));
        assert!(matches!(parse_line("no equals"), Some(IniLine::Invalid(_))));
    }

    #[test]
    fn seconds_and_bools() {
        assert_eq!(parse_fpm_seconds("30"), Some(30));
        assert_eq!(parse_fpm_seconds("30s"), Some(30));
        assert_eq!(parse_fpm_seconds("2m"), Some(120));
        assert_eq!(parse_fpm_seconds("1h"), Some(3600));
        assert_eq!(parse_fpm_seconds("soon"), None);
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("Off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
