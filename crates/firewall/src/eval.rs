//! Walks the packet through every base chain on its hooks, in priority order.
//!
//! A rule whose match is unknown forks the walk: one branch assumes it matched, one that it
//! did not. The branches' ends are then combined: a rule is blamed only if every branch is
//! blocked and that rule certainly matches in its branch.

use crate::ir::{eval_all, Ctx, Rule, Table, Tri, Verdict};
use crate::packet::Packet;
use crate::verdict::{Action, Hook, PathVerdict, RuleRef};

/// Bounds so that no ruleset (loops through goto, thousands of unknown rules) can hang us.
const MAX_BRANCHES: usize = 256;
const MAX_STEPS: usize = 500_000;
/// The kernel refuses deeper jump stacks.
const MAX_JUMP_DEPTH: usize = 16;

/// An assumption a branch made about a rule it could not evaluate.
#[derive(Debug, Clone)]
struct Assumption {
    rule: RuleRef,
    reason: String,
    matched: bool,
}

#[derive(Debug, Clone)]
enum End {
    Passed,
    Blocked {
        rule: RuleRef,
        action: Action,
        hook: Hook,
        /// The blocking rule's own match was certain (not assumed).
        certain: bool,
    },
    /// A rule matched whose verdict we do not model.
    Undecided {
        rule: RuleRef,
        reason: String,
    },
}

#[derive(Debug)]
struct Branch {
    end: End,
    assumptions: Vec<Assumption>,
}

/// One base chain the packet passes, in order.
struct Stage<'a> {
    hook: Hook,
    table: &'a Table,
    chain: &'a str,
}

#[derive(Clone)]
struct Frame<'a> {
    chain: &'a str,
    next: usize,
}

#[derive(Clone)]
struct State<'a> {
    stage: usize,
    frames: Vec<Frame<'a>>,
    assumptions: Vec<Assumption>,
}

/// The hooks nginx's SYN traverses: a local backend's packet loops back through `lo`.
pub(crate) fn hooks_for(pkt: &Packet) -> &'static [Hook] {
    if pkt.local {
        &[
            Hook::Output,
            Hook::Postrouting,
            Hook::Prerouting,
            Hook::Input,
        ]
    } else {
        &[Hook::Output, Hook::Postrouting]
    }
}

fn stages<'a>(tables: &'a [Table], pkt: &Packet) -> Vec<Stage<'a>> {
    let mut out = Vec::new();
    for &hook in hooks_for(pkt) {
        let mut on_hook: Vec<(i64, Stage<'a>)> = Vec::new();
        for table in tables.iter().filter(|t| t.families.includes(pkt.family())) {
            let mut names: Vec<&String> = table.chains.keys().collect();
            names.sort();
            for name in names {
                if let Some(base) = table.chains.get(name).and_then(|c| c.base.as_ref()) {
                    if base.hook == hook {
                        on_hook.push((
                            base.prio,
                            Stage {
                                hook,
                                table,
                                chain: name,
                            },
                        ));
                    }
                }
            }
        }
        // Stable: equal priorities keep table order (the kernel's order between them is
        // registration order, and only matters for which of two drops is named).
        on_hook.sort_by_key(|(prio, _)| *prio);
        out.extend(on_hook.into_iter().map(|(_, s)| s));
    }
    out
}

/// Evaluate `pkt` (already normalized) through `tables`.
pub(crate) fn evaluate(tables: &[Table], pkt: &Packet) -> PathVerdict {
    let stages = stages(tables, pkt);
    match walk(&stages, pkt) {
        Ok(branches) => combine(branches),
        Err(why) => PathVerdict::Unknown {
            reasons: vec![why],
            rules: Vec::new(),
        },
    }
}

fn walk<'a>(stages: &[Stage<'a>], pkt: &Packet) -> Result<Vec<Branch>, String> {
    let mut done: Vec<Branch> = Vec::new();
    let mut steps = 0usize;
    let mut work: Vec<State<'a>> = Vec::new();
    if let Some(first) = stages.first() {
        work.push(State {
            stage: 0,
            frames: vec![Frame {
                chain: first.chain,
                next: 0,
            }],
            assumptions: Vec::new(),
        });
    } else {
        done.push(Branch {
            end: End::Passed,
            assumptions: Vec::new(),
        });
    }
    while let Some(mut st) = work.pop() {
        let end = loop {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(format!(
                    "the ruleset is too large or loops: stopped after {MAX_STEPS} rule evaluations"
                ));
            }
            let stage = &stages[st.stage];
            let cx = Ctx::at(pkt, stage.hook);
            let Some(frame) = st.frames.last_mut() else {
                // Returned out of the base chain: its policy decides.
                match end_of_base_chain(stages, &mut st) {
                    Some(end) => break end,
                    None => continue,
                }
            };
            // Jump targets are checked in `apply`, so a frame's chain always exists.
            let Some(chain) = stage.table.chains.get(frame.chain) else {
                st.frames.pop();
                continue;
            };
            let Some(rule) = chain.rules.get(frame.next) else {
                st.frames.pop();
                continue;
            };
            frame.next += 1;
            let certain = match eval_all(&rule.conds, &cx) {
                Tri::False => continue,
                Tri::True => true,
                Tri::Unknown(reason) => {
                    if rule.verdict == Verdict::Continue {
                        continue;
                    }
                    let mut not_matched = st.clone();
                    not_matched.assumptions.push(Assumption {
                        rule: rule.rule_ref.clone(),
                        reason: reason.clone(),
                        matched: false,
                    });
                    work.push(not_matched);
                    if work.len() + done.len() > MAX_BRANCHES {
                        return Err(format!(
                            "more than {MAX_BRANCHES} combinations of rules that could not be evaluated"
                        ));
                    }
                    st.assumptions.push(Assumption {
                        rule: rule.rule_ref.clone(),
                        reason,
                        matched: true,
                    });
                    false
                }
            };
            if let Some(end) = apply(rule, certain, stages, &mut st) {
                break end;
            }
        };
        done.push(Branch {
            end,
            assumptions: st.assumptions,
        });
    }
    Ok(done)
}

/// Apply a matched rule's verdict. `Some` when the walk ends.
fn apply<'a>(
    rule: &'a Rule,
    certain: bool,
    stages: &[Stage<'a>],
    st: &mut State<'a>,
) -> Option<End> {
    let hook = stages[st.stage].hook;
    match &rule.verdict {
        Verdict::Continue => None,
        Verdict::Accept => next_stage(stages, st),
        Verdict::Block(action) => Some(End::Blocked {
            rule: rule.rule_ref.clone(),
            action: *action,
            hook,
            certain,
        }),
        Verdict::Jump(target) | Verdict::Goto(target)
            if !stages[st.stage].table.chains.contains_key(target.as_str()) =>
        {
            Some(End::Undecided {
                rule: rule.rule_ref.clone(),
                reason: format!("its target chain {target} is not in the ruleset"),
            })
        }
        Verdict::Jump(target) => {
            if st.frames.len() >= MAX_JUMP_DEPTH {
                return Some(End::Undecided {
                    rule: rule.rule_ref.clone(),
                    reason: "jumps nest deeper than the kernel allows".into(),
                });
            }
            st.frames.push(Frame {
                chain: target,
                next: 0,
            });
            None
        }
        Verdict::Goto(target) => {
            st.frames.pop();
            st.frames.push(Frame {
                chain: target,
                next: 0,
            });
            None
        }
        Verdict::Return => {
            st.frames.pop();
            None
        }
        Verdict::Unmodelled(what) => Some(End::Undecided {
            rule: rule.rule_ref.clone(),
            reason: format!("its verdict is not modelled: {what}"),
        }),
    }
}

fn end_of_base_chain<'a>(stages: &[Stage<'a>], st: &mut State<'a>) -> Option<End> {
    let stage = &stages[st.stage];
    let policy = stage
        .table
        .chains
        .get(stage.chain)
        .and_then(|c| c.base.as_ref())
        .and_then(|b| b.drop_policy.clone());
    match policy {
        Some(rule) => Some(End::Blocked {
            rule,
            action: Action::Drop,
            hook: stage.hook,
            certain: true,
        }),
        None => next_stage(stages, st),
    }
}

/// The base chain accepted: the next base chain (same hook or the next hook) gets the packet.
fn next_stage<'a>(stages: &[Stage<'a>], st: &mut State<'a>) -> Option<End> {
    st.stage += 1;
    st.frames.clear();
    match stages.get(st.stage) {
        Some(next) => {
            st.frames.push(Frame {
                chain: next.chain,
                next: 0,
            });
            None
        }
        None => Some(End::Passed),
    }
}

fn describe(rule: &RuleRef) -> String {
    rule.to_string()
}

fn push_unique(list: &mut Vec<String>, s: String) {
    if !list.contains(&s) {
        list.push(s);
    }
}

fn combine(branches: Vec<Branch>) -> PathVerdict {
    let mut uncertain: Vec<(RuleRef, String)> = Vec::new();
    for b in &branches {
        for a in &b.assumptions {
            if !uncertain.iter().any(|(r, _)| *r == a.rule) {
                uncertain.push((a.rule.clone(), a.reason.clone()));
            }
        }
    }
    let uncertainty_notes = || -> Vec<String> {
        let mut notes = Vec::new();
        for (rule, reason) in &uncertain {
            push_unique(
                &mut notes,
                format!("could not evaluate {} ({reason})", describe(rule)),
            );
        }
        notes
    };

    if branches.iter().all(|b| matches!(b.end, End::Passed)) {
        let mut notes = uncertainty_notes();
        if !notes.is_empty() {
            notes.push("whether or not those rules match, the packet passes".into());
        }
        return PathVerdict::Passed { notes };
    }
    if branches
        .iter()
        .all(|b| matches!(b.end, End::Blocked { .. }))
    {
        // Name a rule that certainly matches; prefer the branch that assumed least.
        let chosen = branches
            .iter()
            .filter(|b| matches!(b.end, End::Blocked { certain: true, .. }))
            .min_by_key(|b| b.assumptions.iter().filter(|a| a.matched).count());
        if let Some(Branch {
            end: End::Blocked {
                rule, action, hook, ..
            },
            ..
        }) = chosen
        {
            let mut notes = uncertainty_notes();
            for b in &branches {
                if let End::Blocked { rule: other, .. } = &b.end {
                    if other != rule {
                        push_unique(&mut notes, format!("{} may stop it first", describe(other)));
                    }
                }
            }
            return PathVerdict::Blocked {
                rule: rule.clone(),
                action: *action,
                hook: *hook,
                notes,
            };
        }
    }
    // Mixed outcomes: say what could not be evaluated and what each outcome would be.
    let mut reasons = Vec::new();
    let mut rules: Vec<RuleRef> = Vec::new();
    for (rule, reason) in &uncertain {
        push_unique(
            &mut reasons,
            format!(
                "could not tell whether {} matches: {reason}",
                describe(rule)
            ),
        );
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    for b in &branches {
        match &b.end {
            End::Undecided { rule, reason } => {
                push_unique(
                    &mut reasons,
                    format!("{} matches but {reason}", describe(rule)),
                );
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
            End::Blocked { rule, action, .. } => push_unique(
                &mut reasons,
                format!(
                    "if it matches, the packet is {} by {}",
                    match action {
                        Action::Drop => "dropped",
                        Action::Reject => "rejected",
                    },
                    describe(rule)
                ),
            ),
            End::Passed => {}
        }
    }
    if branches.iter().any(|b| matches!(b.end, End::Passed)) && !uncertain.is_empty() {
        reasons.push("otherwise the packet passes".into());
    }
    PathVerdict::Unknown { reasons, rules }
}
