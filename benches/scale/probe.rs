//! What the scale benchmark reads without asking Rotor: this process's CPU
//! time, and the figures etcd and nats-server publish on their own
//! monitoring endpoints. Also the bench's own children, driven line by line
//! over their stdin and stdout. Memory and sockets: `support::process`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
}

/// Linux's `CLOCK_PROCESS_CPUTIME_ID`.
const PROCESS_CPU_CLOCK: i32 = 2;

/// CPU time (user + system) of this process so far, to the nanosecond.
/// `/proc/<pid>/stat` counts in 10 ms ticks, too coarse for a figure whose
/// target is 30 ms; the process clock counts every thread, exited ones too.
pub fn own_cpu() -> Duration {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec (two 64-bit fields on every
    // 64-bit Linux), and the clock id is one Linux defines.
    let rc = unsafe { clock_gettime(PROCESS_CPU_CLOCK, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(t.sec as u64, t.nsec as u32)
}

/// A gauge or counter from etcd's Prometheus `/metrics`, on its client port.
pub fn etcd_metric(client_port: u16, name: &str) -> Option<f64> {
    let (_, body) = crate::support::http_get(client_port, "/metrics")?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A number from nats-server's monitoring endpoint, such as `/varz`
/// `subscriptions` or `/connz` `num_connections`.
pub fn nats_figure(monitor_port: u16, path: &str, field: &str) -> u64 {
    let (_, body) = crate::support::http_get(monitor_port, path).expect("nats-server monitoring answers");
    let json: serde_json::Value = serde_json::from_str(&body).expect("nats-server monitoring gives JSON");
    json[field].as_u64().unwrap_or_else(|| panic!("{path} has no number {field}"))
}

/// The `key=value` words of a line a child printed, after its first word.
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn num(&self, key: &str) -> f64 {
        let value = self.0.get(key).unwrap_or_else(|| panic!("a child's line has no {key}="));
        value.parse().unwrap_or_else(|_| panic!("{key}={value} is not a number"))
    }
}

/// How long a child may take to print what it was asked for: registering
/// 3,000 instances one after another takes seconds, not minutes.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// This benchmark's binary again, in a child mode, driven over stdin and
/// stdout; killed if dropped before it exits.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The `error ...` lines the child printed, in order.
    pub errors: Vec<String>,
}

impl Proc {
    pub fn start(mode: &str, args: &[String], env: &[(&'static str, String)]) -> Proc {
        let exe = std::env::current_exe().expect("this benchmark's path");
        let mut child = Command::new(exe)
            .arg(mode)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_BACKTRACE", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start the {mode} child: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Proc { child, stdin, stdout, errors: Vec::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the child runs")
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write to a child");
        stdin.flush().await.expect("flush a child's stdin");
    }

    /// Reads lines until one starts with `word`; its `key=value` fields.
    pub async fn expect(&mut self, word: &str) -> Fields {
        let read = async {
            loop {
                let line = self.stdout.next_line().await.expect("read a child's stdout");
                let line = line.unwrap_or_else(|| panic!("a child exited before it printed {word:?}"));
                let mut words = line.split_whitespace();
                match words.next() {
                    Some(w) if w == word => {
                        let pairs = words.filter_map(|w| w.split_once('='));
                        return Fields(pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect());
                    }
                    Some("error") => self.errors.push(line["error ".len()..].to_string()),
                    _ => println!("  (child) {line}"),
                }
            }
        };
        tokio::time::timeout(CHILD_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("a child did not print {word:?} within {CHILD_TIMEOUT:?}"))
    }

    /// Closes its stdin, which ends every child mode, and waits for it.
    pub async fn finish(mut self) {
        self.stdin.take();
        let status = tokio::time::timeout(CHILD_TIMEOUT, self.child.wait()).await;
        let status = status.expect("a child exits once its stdin closes").expect("wait for a child");
        assert!(status.success(), "a child failed: {status}");
    }
}
