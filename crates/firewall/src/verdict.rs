use serde::Serialize;

/// Address family of an nftables table (or of an iptables ruleset: ip / ip6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ip,
    Ip6,
    Inet,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }
}

/// Which tool owns the rule, so the fix names the right command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nftables,
    Iptables,
    Ip6tables,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::Iptables => "iptables",
            Backend::Ip6tables => "ip6tables",
        }
    }
}

/// Netfilter hooks a locally generated packet passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Output,
    Postrouting,
    Prerouting,
    Input,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
        }
    }

    /// iptables' built-in chain for this hook.
    pub fn iptables_chain(self) -> &'static str {
        match self {
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Silently discarded: nginx waits for its connect timeout (504 or 502 after retries).
    Drop,
    /// Refused (RST or ICMP error): nginx logs `connect() failed` at once and answers 502.
    Reject,
}

/// One rule (or a chain's policy) as the admin would find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub backend: Backend,
    pub family: Family,
    pub table: String,
    pub chain: String,
    /// nftables handle (for iptables-nft rules too, when the nft ruleset was readable).
    pub handle: Option<u64>,
    /// 1-based position in the chain, as `iptables -D CHAIN N` counts (iptables only).
    pub position: Option<usize>,
    /// The chain's default policy decided, not a rule.
    pub policy: bool,
    /// The rule as `nft -a list ruleset` / `iptables-save` prints it (for a policy, the
    /// policy clause).
    pub text: String,
    /// Chain managed by ufw (`ufw-*`, `ufw6-*`): fix it with `ufw`, not by hand.
    pub ufw: bool,
    /// The command that manages this rule: nft, iptables, ip6tables, iptables-legacy, ...
    pub tool: String,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend {
            Backend::Nftables => write!(
                f,
                "nftables {} {} chain {}",
                self.family.as_str(),
                self.table,
                self.chain
            )?,
            _ => write!(f, "{} table {} chain {}", self.tool, self.table, self.chain)?,
        }
        if let Some(h) = self.handle {
            write!(f, " handle {h}")?;
        }
        if let Some(p) = self.position {
            write!(f, " rule {p}")?;
        }
        write!(f, ": {}", self.text)
    }
}

/// What the packet filter does to nginx's SYN to one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum PathVerdict {
    /// This rule stops the packet. It certainly matches; `notes` say what else was uncertain
    /// (e.g. an earlier rule we could not evaluate that might stop it first).
    Blocked {
        rule: RuleRef,
        action: Action,
        hook: Hook,
        notes: Vec<String>,
    },
    /// Every rule on the path was evaluated (or could not change the outcome).
    Passed { notes: Vec<String> },
    /// We could not tell: a source was unreadable, or a rule we could not evaluate decides.
    Unknown {
        reasons: Vec<String>,
        /// Rules that could decide but could not be evaluated (may be empty).
        rules: Vec<RuleRef>,
    },
}
