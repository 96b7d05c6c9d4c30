//! `why502 tree`: the decision tree in text, Mermaid or Graphviz dot.

use std::fmt::Write;

use why502_engine::{TREE, VERDICT_RULES};

pub fn text() -> String {
    let mut o = String::from("502 Bad Gateway\n│\n");
    for (i, s) in TREE.iter().enumerate() {
        let last = i + 1 == TREE.len();
        let (branch, pipe) = if last {
            ("└─", "  ")
        } else {
            ("├─", "│ ")
        };
        let _ = writeln!(o, "{branch} {}. {} — {}", i + 1, s.id, s.question);
        let _ = writeln!(o, "{pipe}    how:     {}", s.method);
        let _ = writeln!(o, "{pipe}    by hand: {}", s.by_hand.join("  |  "));
        let causes: Vec<&str> = s.causes.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(o, "{pipe}    names:   {}", causes.join(", "));
        if !s.explains.is_empty() {
            let symptoms: Vec<&str> = s.explains.iter().map(|c| c.as_str()).collect();
            let _ = writeln!(
                o,
                "{pipe}    explains: {} (still runs after those breaks; its cause wins)",
                symptoms.join(", ")
            );
        }
        let _ = writeln!(o, "{pipe}");
    }
    o.push_str("The walk stops at the first step that breaks (--all runs every step).\n");
    o.push_str("The verdict, by the first rule that applies:\n");
    for (i, r) in VERDICT_RULES.iter().enumerate() {
        let _ = writeln!(o, "  {}. {r}", i + 1);
    }
    o
}

pub fn mermaid() -> String {
    let mut o = String::from("flowchart TD\n    start([502 Bad Gateway])\n");
    let mut prev = "start".to_string();
    for s in TREE {
        let id = s.id.as_str();
        let _ = writeln!(o, "    {id}{{\"{}\"}}", s.question.replace('"', "'"));
        let _ = writeln!(o, "    {prev} --> {id}");
        for c in s.causes {
            let _ = writeln!(o, "    {id} -- break --> {c}_{id}[{c}]");
        }
        prev = id.to_string();
    }
    let _ = writeln!(o, "    {prev} -- pass --> ok([none: no break found])");
    o
}

pub fn dot() -> String {
    let mut o = String::from("digraph why502 {\n  rankdir=TB;\n  node [shape=box];\n  start [label=\"502 Bad Gateway\", shape=oval];\n");
    let mut prev = "start".to_string();
    for s in TREE {
        let id = s.id.as_str();
        let _ = writeln!(
            o,
            "  {id} [shape=diamond, label=\"{}\\n{}\"];",
            id,
            s.question.replace('"', "'")
        );
        let _ = writeln!(o, "  {prev} -> {id};");
        for c in s.causes {
            let _ = writeln!(
                o,
                "  \"{c}\" [shape=note];\n  {id} -> \"{c}\" [label=break, style=dashed];"
            );
        }
        prev = id.to_string();
    }
    let _ = writeln!(
        o,
        "  ok [label=\"none\", shape=oval];\n  {prev} -> ok [label=pass];\n}}"
    );
    o
}

/// docs/tree.md: the text tree and the Mermaid chart, from `TREE`.
pub fn markdown() -> String {
    format!(
        "# The decision tree\n\nGenerated from `crates/engine/src/tree.rs` (`why502 tree`); do not edit by hand.\n\n```text\n{}```\n\n```mermaid\n{}```\n",
        text(),
        mermaid()
    )
}

/// The tree as JSON (`serve`'s `/v1/tree`): each step with its question, method, the
/// commands an admin would run, the causes it may name and the breaks it explains.
pub fn json() -> String {
    let steps: Vec<serde_json::Value> = TREE
        .iter()
        .map(|s| {
            serde_json::json!({
                "step": s.id,
                "question": s.question,
                "method": s.method,
                "by_hand": s.by_hand,
                "causes": s.causes,
                "explains": s.explains,
            })
        })
        .collect();
    let v = serde_json::json!({ "steps": steps, "verdict_rules": VERDICT_RULES });
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/tree.md is generated from `TREE`; this fails when it is stale.
    /// Regenerate with `UPDATE_DOCS=1 cargo test -p why502 tree_doc`.
    #[test]
    fn tree_doc_is_fresh() {
        crate::render::assert_generated_doc_is_fresh("tree.md", &markdown(), "tree_doc");
    }

    #[test]
    fn every_step_is_in_the_text_and_the_chart() {
        let (t, m) = (text(), mermaid());
        for s in TREE {
            assert!(t.contains(s.id.as_str()), "{} missing from the text", s.id);
            assert!(m.contains(s.id.as_str()), "{} missing from the chart", s.id);
        }
    }
}
