//! Running the web SDK's and the web app's JavaScript tests from Rust
//! integration tests (tools/tests/web_sdk.rs, tools/tests/web_app.rs)
//! against a real `courierd`.
//!
//! - [`web_dir`] installs the npm packages of `tools/web` on first use
//!   (`scripts/install-web-deps`: `npm ci` from the committed lock files,
//!   then the SDK compiled with `tsc`), once per test process, and reports
//!   the script's output if that fails. Node 18+ and npm must be installed;
//!   a test never skips for want of them.
//! - [`chromium_bin`] finds Chromium, installing Debian's `chromium` once
//!   if needed (`scripts/install-chromium`), as [`super::etcd`] does for etcd.
//! - [`Control`] serves a tiny HTTP endpoint on loopback through which a
//!   node script kills (`POST /kill`, `kill -9`), starts (`POST /start`) or
//!   restarts (`POST /restart`) the daemon, so that a JavaScript test can
//!   take the server down at the moment it chooses.
//! - [`run_node`] runs a node command with a deadline and returns what it
//!   printed; a script that outlives the deadline is killed and reported.

use super::{workspace_root, ServerProcess, TestkitError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request head the control endpoint reads.
const CONTROL_HEAD_BYTES_MAX: usize = 4096;

fn run_script(name: &str) -> Result<String, String> {
    let script = workspace_root().join("scripts").join(name);
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} could not run: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `tools/web`, with its npm packages installed and the SDK compiled (see
/// the module docs).
pub fn web_dir() -> Result<PathBuf, TestkitError> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let line = run_script("install-web-deps")?;
            eprintln!("{line}");
            Ok(workspace_root().join("tools/web"))
        })
        .clone()
        .map_err(TestkitError::Web)
}

fn chromium_on_path() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("COURIER_CHROMIUM_BIN") {
        return Some(PathBuf::from(bin)).filter(|b| b.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|candidate| candidate.is_file())
}

/// The Chromium binary, installing Debian's `chromium` once if needed.
pub fn chromium_bin() -> Result<PathBuf, TestkitError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = chromium_on_path() {
            return Ok(bin);
        }
        let line = run_script("install-chromium")?;
        eprintln!("{line}");
        chromium_on_path()
            .ok_or_else(|| "scripts/install-chromium succeeded but found no chromium".to_owned())
    })
    .clone()
    .map_err(TestkitError::Web)
}

/// What a node run printed, and how it ended.
#[derive(Debug)]
pub struct NodeRun {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its stdout and stderr, interleaved as far as the pipes allow.
    pub output: String,
    /// Wall time.
    pub took: Duration,
}

/// Runs `node ARGS` in `dir` with `env`, for at most `deadline` (then it is
/// killed and the run fails with what it printed so far).
pub fn run_node(
    dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
    deadline: Duration,
) -> Result<NodeRun, TestkitError> {
    let started = Instant::now();
    let log = tempfile::NamedTempFile::new().map_err(|e| TestkitError::Web(e.to_string()))?;
    let file =
        |f: &tempfile::NamedTempFile| f.reopen().map_err(|e| TestkitError::Web(e.to_string()));
    let mut child = Command::new("node")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file(&log)?)
        .stderr(file(&log)?)
        .spawn()
        .map_err(|e| TestkitError::Web(format!("cannot run node: {e}")))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(TestkitError::Web(format!("waiting for node: {e}"))),
        }
    };
    let mut output = std::fs::read_to_string(log.path()).unwrap_or_default();
    if status.is_none() {
        output.push_str(&format!("\n[killed: still running after {deadline:?}]\n"));
    }
    Ok(NodeRun {
        success: status.is_some_and(|s| s.success()),
        output,
        took: started.elapsed(),
    })
}

/// The control endpoint (see the module docs); stops when dropped.
#[derive(Debug)]
pub struct Control {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    /// Serves the control endpoint for `server` on an ephemeral loopback port.
    pub fn start(server: Arc<Mutex<ServerProcess>>) -> Result<Control, TestkitError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| TestkitError::Web(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::Web(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| TestkitError::Web(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve_control(stream, &server),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Control {
            url: format!("http://{addr}"),
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_control(mut stream: TcpStream, server: &Mutex<ServerProcess>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < CONTROL_HEAD_BYTES_MAX {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let result = match server.lock() {
        Err(_) => Err("the server's lock is poisoned".to_owned()),
        Ok(mut s) => match path {
            "/kill" => {
                s.kill9();
                Ok(())
            }
            "/start" | "/restart" => s.restart().map_err(|e| e.to_string()),
            other => Err(format!("unknown control {other:?}")),
        },
    };
    let (code, body) = match result {
        Ok(()) => (200, "ok".to_owned()),
        Err(e) => (500, e),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
