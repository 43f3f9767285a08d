//! How fast a server process goes when it is told to. Alone in its test
//! binary, so that nothing else loads the machine while it is timed.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Servers;

#[test]
fn an_idle_server_exits_within_200_ms_of_sigint() {
    let servers = Servers::start();
    let mut child = Command::new(support::example("hello_server"))
        .envs(servers.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hello_server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving"), "{line}");

    let signalled = Instant::now();
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("drained: true"), "{rest}");
    assert!(took < Duration::from_millis(200), "the idle server took {took:?} to exit after SIGINT");
}
