//! Several components in one binary, served and stopped together, as the
//! `two_components` example does on real servers.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use support::Servers;

#[test]
fn two_components_served_together_stop_together_on_sigterm() {
    let servers = Servers::start();
    let mut child = Command::new(support::example("two_components"))
        .arg("serve")
        .envs(servers.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start two_components");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "serving 2 components; Ctrl-C stops them");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.trim(), "stopped; drained: true");
}
