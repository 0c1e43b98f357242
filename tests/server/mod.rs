//! A `medley serve` process for the HTTP tests (`tests/serve.rs`, `tests/search_load.rs`):
//! started on a free loopback port, its log kept (and printed when a test panics), killed
//! when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ServerProcess {
    pub child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Run `serve` (a `medley serve ... --bind 127.0.0.1:0` command) and wait until it says
    /// where it listens; panics with its log when it does not within two minutes.
    pub fn spawn(mut serve: Command) -> Self {
        let mut child = serve.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stderr, log2) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
                }
                log2.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("server did not start:\n{}", log.lock().unwrap())
        });
        Self { child, addr, log }
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!("server log:\n{}", self.log());
            }
        }
    }
}
