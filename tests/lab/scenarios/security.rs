//! Step `security`: packet-filter rules in the scenario's namespace, SELinux and AppArmor
//! through fixture trees (being written).
