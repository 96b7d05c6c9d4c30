//! Rule texts from `nft -a list ruleset`: every rule line ends in `# handle N`.

use std::collections::HashMap;

use super::ListingKey;

/// Map (family, table, chain, handle) → the rule as nft prints it, without the handle
/// comment.
pub(super) fn rule_texts(listing: &str) -> HashMap<ListingKey, String> {
    let mut out = HashMap::new();
    let mut depth = 0usize;
    let mut table: Option<(String, String)> = None;
    let mut chain: Option<String> = None;
    for line in listing.lines() {
        let trimmed = line.trim();
        let (opens, closes) = braces(trimmed);
        if depth == 0 && trimmed.starts_with("table ") {
            let mut words = trimmed.split_whitespace().skip(1);
            if let (Some(f), Some(n)) = (words.next(), words.next()) {
                table = Some((f.to_string(), unquote(n)));
            }
        } else if depth == 1 && trimmed.starts_with("chain ") {
            chain = trimmed.split_whitespace().nth(1).map(unquote);
        } else if depth == 2 {
            if let (Some((family, tname)), Some(cname), Some(pos)) =
                (&table, &chain, trimmed.rfind("# handle "))
            {
                if let Ok(handle) = trimmed[pos + "# handle ".len()..].trim().parse::<u64>() {
                    let text = trimmed[..pos].trim_end().to_string();
                    out.insert((family.clone(), tname.clone(), cname.clone(), handle), text);
                }
            }
        }
        depth = (depth + opens).saturating_sub(closes);
        if depth < 2 {
            chain = None;
        }
        if depth == 0 {
            table = None;
        }
    }
    out
}

/// Braces outside double quotes.
fn braces(line: &str) -> (usize, usize) {
    let mut quoted = false;
    let (mut opens, mut closes) = (0, 0);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => opens += 1,
            '}' if !quoted => closes += 1,
            // Everything after the handle comment is ours to ignore.
            '#' if !quoted => break,
            _ => {}
        }
    }
    (opens, closes)
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}
