//! A rule rendered from its JSON in nft's syntax, for when `nft -a list ruleset` was not
//! read. Close to nft's own printing for the expressions we model; anything else is shown as
//! its JSON so nothing is hidden.

use serde_json::Value;

use super::NftRule;

pub(super) fn rule(rule: &NftRule) -> String {
    let mut parts: Vec<String> = rule.expr.iter().map(expr).collect();
    if let Some(c) = &rule.comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

fn expr(e: &Value) -> String {
    let Some((key, body)) = e.as_object().and_then(|o| o.iter().next()) else {
        return e.to_string();
    };
    match key.as_str() {
        "match" => {
            let left = body.get("left").map(operand).unwrap_or_default();
            let right = body.get("right").map(operand).unwrap_or_default();
            match body.get("op").and_then(Value::as_str) {
                Some("==") | Some("in") | None => format!("{left} {right}"),
                Some(op) => format!("{left} {op} {right}"),
            }
        }
        "accept" | "drop" | "return" | "continue" => key.clone(),
        "jump" | "goto" => format!(
            "{key} {}",
            body.get("target").and_then(Value::as_str).unwrap_or("?")
        ),
        "reject" => match (
            body.get("type").and_then(Value::as_str),
            body.get("expr").and_then(Value::as_str),
        ) {
            (Some("tcp reset"), _) => "reject with tcp reset".into(),
            (Some(t), Some(x)) => format!("reject with {t} {x}"),
            _ => "reject".into(),
        },
        "counter" => "counter".into(),
        "log" => match body.get("prefix").and_then(Value::as_str) {
            Some(p) => format!("log prefix \"{p}\""),
            None => "log".into(),
        },
        "vmap" => format!(
            "{} vmap {}",
            body.get("key").map(operand).unwrap_or_default(),
            body.get("data").map(operand).unwrap_or_default()
        ),
        "xt" => format!(
            "xt {} \"{}\"",
            body.get("type").and_then(Value::as_str).unwrap_or("?"),
            body.get("name").and_then(Value::as_str).unwrap_or("?")
        ),
        _ => e.to_string(),
    }
}

fn operand(v: &Value) -> String {
    match v {
        Value::String(s) => {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "@.:-_/".contains(c))
            {
                s.clone()
            } else {
                format!("\"{s}\"")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(operand).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            if let Some(p) = o.get("payload") {
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("?");
                let field = p.get("field").and_then(Value::as_str).unwrap_or("?");
                format!("{proto} {field}")
            } else if let Some(m) = o.get("meta") {
                let k = m.get("key").and_then(Value::as_str).unwrap_or("?");
                match k {
                    "iif" | "oif" | "iifname" | "oifname" | "l4proto" | "nfproto" | "mark"
                    | "skuid" | "skgid" => k.to_string(),
                    _ => format!("meta {k}"),
                }
            } else if let Some(c) = o.get("ct") {
                format!("ct {}", c.get("key").and_then(Value::as_str).unwrap_or("?"))
            } else if let Some(s) = o.get("set") {
                let items: Vec<String> = s
                    .as_array()
                    .map(|a| a.iter().map(set_item).collect())
                    .unwrap_or_default();
                format!("{{ {} }}", items.join(", "))
            } else if let Some(p) = o.get("prefix") {
                format!(
                    "{}/{}",
                    p.get("addr").map(operand).unwrap_or_default(),
                    p.get("len").map(operand).unwrap_or_default()
                )
            } else if let Some(Value::Array(r)) = o.get("range") {
                r.iter().map(operand).collect::<Vec<_>>().join("-")
            } else if let Some(e) = o.get("elem") {
                e.get("val").map(operand).unwrap_or_default()
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// A set element, or a map entry `[key, verdict]`.
fn set_item(v: &Value) -> String {
    match v.as_array() {
        Some(pair) if pair.len() == 2 => format!("{} : {}", operand(&pair[0]), expr(&pair[1])),
        _ => operand(v),
    }
}
