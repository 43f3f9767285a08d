//! How fast a server process goes when it is told to. Alone in its test
//! binary, so that nothing else loads the machine while it is timed.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::Servers;

#[test]
fn an_idle_server_exits_within_200_ms_of_sigint() {
    let servers = Servers::start();
    let (mut child, mut out, line) = support::start_example("hello_server", &[], &servers);
    assert!(line.starts_with("serving"), "{line}");

    let signalled = Instant::now();
    support::signal(&child, "INT");
    let exit = child.wait().unwrap();
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("drained: true"), "{rest}");
    assert!(took < Duration::from_millis(200), "the idle server took {took:?} to exit after SIGINT");
}
