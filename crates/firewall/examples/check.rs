//! Evaluate this host's packet filter for one backend, read-only:
//! `cargo run -p why502-firewall --example check -- 127.0.0.1 8080 [local|remote]`

use std::net::IpAddr;
use std::time::Duration;

use why502_firewall::{suggest_fix, FirewallSnapshot, Packet};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let daddr: IpAddr = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or([127, 0, 0, 1].into());
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(8080);
    let local = args.get(2).map_or(daddr.is_loopback(), |m| m == "local");
    let saddr = if local {
        daddr
    } else {
        IpAddr::from([0, 0, 0, 0])
    };
    let packet = Packet::tcp(saddr, daddr, port, local);
    let snapshot = FirewallSnapshot::gather(Duration::from_secs(5)).await;
    let verdict = snapshot.evaluate(&packet);
    match serde_json::to_string_pretty(&verdict) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("{e}"),
    }
    if let Some(fix) = suggest_fix(&verdict, &packet) {
        println!("fix: {fix}");
    }
}
