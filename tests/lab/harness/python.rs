//! The plain HTTP backend: `python3 -m http.server`, serving the lab's www/.

use super::lab::{tcp_addr, Lab};

fn label(bind: &str, port: u16) -> String {
    format!("python-http-{bind}-{port}")
}

impl Lab {
    /// Starts `python3 -m http.server --bind <bind> <port>` in the namespace
    /// and waits until it answers 200 on `/` (the directory listing).
    pub fn start_http_backend(&mut self, bind: &str, port: u16) {
        let label = label(bind, port);
        let www = self.path("www").display().to_string();
        let args: Vec<String> = [
            "-m",
            "http.server",
            "--bind",
            bind,
            &port.to_string(),
            "--directory",
            &www,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        let python = self.tools.python3.clone();
        self.spawn(&label, &python, &args, libc::SIGTERM);
        self.wait_for_http_backend(&label, &format!("http://{}/", tcp_addr(bind, port)));
    }

    fn wait_for_http_backend(&mut self, label: &str, url: &str) {
        self.await_ready(
            label,
            &format!("no 200 on {url}"),
            |lab| lab.curl_status(url) == 200,
            |_| String::new(),
        );
    }

    pub fn stop_http_backend(&mut self, bind: &str, port: u16) {
        if let Err(problem) = self.stop_process(&label(bind, port)) {
            panic!("lab {}: {problem}", self.scenario());
        }
    }
}
