//! Packet-filter rules inside a scenario's namespace (being written).
