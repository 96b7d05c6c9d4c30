//! Backends for the TLS and DNS scenarios: an HTTPS backend with a self-signed certificate
//! (python's `ssl` around `http.server`; certificates from the `openssl` CLI), and a tiny DNS
//! server that answers A records for the names it is given and NXDOMAIN for every other.
//! Both run inside the scenario's namespace like every other backend.

use std::path::PathBuf;
use std::process::Command;

use super::lab::{make_dir, set_mode, write_file, Lab};

const HTTPS_PY: &str = r#"
import http.server, ssl, sys
bind, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
httpd = http.server.HTTPServer((bind, port), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print("ready https %s:%d" % (bind, port), flush=True)
httpd.serve_forever()
"#;

/// Answers `A` for the names in argv (`name=ip`), NXDOMAIN for the others, an empty NOERROR
/// for other record types of a known name (as real servers do for AAAA without one).
const DNS_PY: &str = r#"
import socket, struct, sys
bind, port = sys.argv[1], int(sys.argv[2])
known = dict(a.split("=", 1) for a in sys.argv[3:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind, port))
print("ready dns %s:%d" % (bind, port), flush=True)
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    qid, flags, qd = struct.unpack(">HHH", q[:6])
    labels, i = [], 12
    while i < len(q) and q[i] != 0:
        n = q[i]
        labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, qclass = struct.unpack(">HH", q[i + 1:i + 5])
    question = q[12:i + 5]
    name = ".".join(labels).lower()
    rd = flags & 0x0100
    if name not in known:
        s.sendto(struct.pack(">HHHHHH", qid, 0x8080 | rd | 3, 1, 0, 0, 0) + question, peer)
    elif qtype == 1:
        rr = struct.pack(">HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton(known[name])
        s.sendto(struct.pack(">HHHHHH", qid, 0x8480 | rd, 1, 1, 0, 0) + question + rr, peer)
    else:
        s.sendto(struct.pack(">HHHHHH", qid, 0x8480 | rd, 1, 0, 0, 0) + question, peer)
"#;

/// A certificate and its key, made by the openssl CLI.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Lab {
    /// A self-signed certificate for `name` (CN and subjectAltName), valid from now.
    pub fn make_self_signed_cert(&self, file_stem: &str, name: &str) -> TestCert {
        let dir = self.path("tls");
        make_dir(&dir, 0o755);
        let cert = dir.join(format!("{file_stem}.crt"));
        let key = dir.join(format!("{file_stem}.key"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={name}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap_or_else(|e| panic!("lab {}: cannot run openssl: {e}", self.scenario()));
        assert!(
            out.status.success(),
            "lab {}: openssl req failed: {}",
            self.scenario(),
            String::from_utf8_lossy(&out.stderr)
        );
        set_mode(&key, 0o644);
        TestCert { cert, key }
    }

    /// An HTTPS backend on `bind:port` serving the lab's www/ with `cert`.
    pub fn start_https_backend(&mut self, bind: &str, port: u16, cert: &TestCert) {
        let script = self.path("bin/https_backend.py");
        make_dir(&self.path("bin"), 0o755);
        write_file(&script, HTTPS_PY);
        let label = format!("python-https-{bind}-{port}");
        let args = vec![
            script.display().to_string(),
            bind.to_string(),
            port.to_string(),
            cert.cert.display().to_string(),
            cert.key.display().to_string(),
        ];
        let python = self.tools.python3.clone();
        self.spawn(&label, &python, &args, libc::SIGTERM);
        self.wait_for_ready_line(&label);
    }

    /// A DNS server on `bind:port` (UDP) knowing only `names` (`("app.lab", "127.0.0.1")`).
    pub fn start_dns_server(&mut self, bind: &str, port: u16, names: &[(&str, &str)]) {
        let script = self.path("bin/dns_server.py");
        make_dir(&self.path("bin"), 0o755);
        write_file(&script, DNS_PY);
        let label = format!("python-dns-{bind}-{port}");
        let mut args = vec![
            script.display().to_string(),
            bind.to_string(),
            port.to_string(),
        ];
        args.extend(names.iter().map(|(n, ip)| format!("{n}={ip}")));
        let python = self.tools.python3.clone();
        self.spawn(&label, &python, &args, libc::SIGTERM);
        self.wait_for_ready_line(&label);
    }
}
