//! The plain HTTP backend: `python3 -m http.server`, serving the lab's www/.

use std::time::Duration;

use super::lab::{tcp_addr, Lab};
use super::process::{read_log, tail};
use super::wait::poll_until;

const START_TIMEOUT: Duration = Duration::from_secs(5);

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
        let ready = poll_until(START_TIMEOUT, || {
            if let Some(status) = self.process_mut(label).and_then(|proc| proc.poll_exit()) {
                return Some(Err(format!("{label} exited during startup ({status})")));
            }
            (self.curl_status(url) == 200).then_some(Ok(()))
        });
        let problem = match ready {
            Some(Ok(())) => return,
            Some(Err(problem)) => problem,
            None => format!("{label} did not answer 200 on {url} within {START_TIMEOUT:?}"),
        };
        let stderr = self
            .process_mut(label)
            .map(|proc| read_log(proc.stderr_path()))
            .unwrap_or_default();
        panic!(
            "lab {}: {problem}\n{label} stderr:\n{}",
            self.scenario(),
            tail(&stderr, 4000)
        );
    }

    pub fn stop_http_backend(&mut self, bind: &str, port: u16) {
        if let Err(problem) = self.stop_process(&label(bind, port)) {
            panic!("lab {}: {problem}", self.scenario());
        }
    }
}
