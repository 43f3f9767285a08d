//! A `soak serve` process (the soak example's server mode) for the tests
//! that kill, stop or signal real server processes. Included by the test
//! files that use it (`#[path = "support/soak_server.rs"] mod soak_server;`).

#![allow(dead_code)]

use std::process::Child;

use rotor::InstanceId;

use crate::support;

/// A `soak serve` process; killed when dropped.
pub struct Server {
    pub child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    pub id: InstanceId,
}

impl Server {
    pub fn start(servers: &support::Servers) -> Server {
        Server::start_with(&servers.env())
    }

    /// A server that also listens on the direct plane, on a free loopback port.
    pub fn start_direct(servers: &support::Servers) -> Server {
        let mut env = servers.env();
        env.push(("ROTOR_TCP_ADDR", "127.0.0.1:0".to_string()));
        Server::start_with(&env)
    }

    fn start_with(env: &[(&str, String)]) -> Server {
        let (child, out, line) = support::start_example_with_env("soak", &["serve"], env);
        let id = line
            .strip_prefix("serving soak_worker as instance ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|hex| i64::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Server { child, out, id: InstanceId(id) }
    }

    /// Reads the process's output until it says a `hold` call started.
    pub fn wait_for_a_held_call(&mut self) {
        use std::io::BufRead;
        let mut line = String::new();
        while !line.starts_with("holding") {
            line.clear();
            let read = self.out.read_line(&mut line).expect("read the server's output");
            assert!(read > 0, "the server exited before a call was held");
        }
    }

    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = support::signal_quiet(&self.child, "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
