//! nginx variable references in directive arguments: `$name` and `${name}`.

/// The variable name right after a `$` and how many bytes it is written with
/// (`{name}` counts its braces). An empty name when there is none, e.g. a lone `$`.
pub(crate) fn variable_at(after_dollar: &str) -> (&str, usize) {
    if let Some(braced) = after_dollar.strip_prefix('{') {
        return match braced.find('}') {
            Some(end) => (&braced[..end], end + 2),
            None => ("", 0),
        };
    }
    let len = after_dollar
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    (&after_dollar[..len], len)
}

/// Replaces each variable that `value_of` knows by its value; the others stay as written.
pub(crate) fn substitute_variables<'v>(
    text: &str,
    value_of: impl Fn(&str) -> Option<&'v str>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, written_len) = variable_at(after);
        let value = if name.is_empty() {
            None
        } else {
            value_of(name)
        };
        out.push_str(value.unwrap_or(&rest[dollar..dollar + 1 + written_len]));
        rest = &after[written_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        let cases: &[(&str, (&str, usize))] = &[
            ("host", ("host", 4)),
            ("host$uri", ("host", 4)),
            ("request_uri/x", ("request_uri", 11)),
            ("{port}0", ("port", 6)),
            ("{unclosed", ("", 0)),
            ("", ("", 0)),
            ("/path", ("", 0)),
            ("1", ("1", 1)),
        ];
        for (text, want) in cases {
            assert_eq!(variable_at(text), *want, "{text:?}");
        }
    }

    #[test]
    fn substitution() {
        let known = |name: &str| match name {
            "a" => Some("A"),
            "port" => Some("9000"),
            _ => None,
        };
        let cases: &[(&str, &str)] = &[
            ("$a", "A"),
            ("x$a.y", "xA.y"),
            ("h:${port}/", "h:9000/"),
            ("$a$b$a", "A$bA"),
            ("${b}", "${b}"),
            ("$", "$"),
            ("a$", "a$"),
            ("$$a", "$A"),
            ("${a", "${a"),
            ("no variables", "no variables"),
            ("é$aé", "éAé"),
        ];
        for (text, want) in cases {
            assert_eq!(substitute_variables(text, known), *want, "{text:?}");
        }
    }
}
