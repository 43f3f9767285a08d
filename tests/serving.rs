//! Several components in one binary, served and stopped together, as the
//! `two_components` example does on real servers.

mod support;

use std::io::Read;

use support::Servers;

#[test]
fn two_components_served_together_stop_together_on_sigterm() {
    let servers = Servers::start();
    let (mut child, mut out, line) = support::start_example("two_components", &["serve"], &servers);
    assert_eq!(line.trim(), "serving 2 components; Ctrl-C stops them");

    support::signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.trim(), "stopped; drained: true");
}
