//! The `rotor` binary against real etcd and nats-server processes, with the
//! `hello_server` and `streaming` examples as the components it looks at.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Etcd, Servers};

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(30);

/// A served example; killed when dropped.
struct Server {
    child: Child,
    /// Kept open: an example that prints as it stops must not meet a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// The instance id, in hex, from its first line.
    id: String,
}

impl Server {
    fn hello(servers: &Servers) -> Server {
        Server::start(servers, "hello_server", &[], "serving hello_greeter as instance ")
    }

    fn streaming(servers: &Servers) -> Server {
        Server::start(servers, "streaming", &["serve"], "serving llm_generator as instance ")
    }

    fn start(servers: &Servers, name: &str, args: &[&str], first: &str) -> Server {
        let mut child = Command::new(support::example(name))
            .args(args)
            .envs(servers.env())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        // Its first line comes once it is registered: the wait for it to serve.
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let rest = line.strip_prefix(first).unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let id = rest.split_whitespace().next().expect("an instance id").to_string();
        Server { child, _stdout: stdout, id }
    }

    /// SIGTERM, as a process manager stops it: it leaves discovery at once.
    fn stop(&mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        wait_for_exit(&mut self.child);
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("a child process did not exit within {WAIT:?}");
        }
        // A child offers nothing to wait on with a bound but its state: poll it.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What one run of `rotor` printed, and how it ended.
struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    #[track_caller]
    fn succeeded(self) -> Run {
        assert_eq!(self.code, Some(0), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

/// `rotor` with only the given variables: nothing from the test's own
/// environment leaks in.
fn rotor_command(env: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rotor"));
    command.args(args).env_clear().env("RUST_BACKTRACE", "0").envs(env.iter().map(|(k, v)| (k, v)));
    command
}

fn rotor_in(env: &[(&str, String)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = rotor_command(env, args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rotor");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes()).unwrap();
    }
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let status = wait_for_exit(&mut child);
    Run { stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap(), code: status.code() }
}

fn rotor(servers: &Servers, args: &[&str]) -> Run {
    rotor_in(&servers.env(), args, None)
}

/// The lines a long-running `rotor` prints, as they come.
struct Lines {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Lines {
    fn start(servers: &Servers, args: &[&str]) -> Lines {
        let mut child = rotor_command(&servers.env(), args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotor");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines }
    }

    fn next(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a line within the wait")
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An instance id as JSON carries it: a hex string (a number from a
/// runtime before ids went out as hex).
fn hex(value: &Value) -> String {
    match value {
        Value::String(hex) => hex.clone(),
        Value::Number(n) => format!("{:x}", n.as_i64().expect("an i64")),
        other => panic!("not an instance id: {other}"),
    }
}

fn tokens(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn ids(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|i| i["instance"].as_str().unwrap()).collect()
}

#[test]
fn ls_lists_hello_greeter_with_its_endpoints_and_each_instance_up() {
    let servers = Servers::start();
    let (a, b) = (Server::hello(&servers), Server::hello(&servers));

    let run = rotor(&servers, &["ls"]).succeeded();
    let lines: Vec<Vec<&str>> = run.stdout.lines().map(tokens).collect();
    assert_eq!(lines[0], ["NAMESPACE", "COMPONENT", "INSTANCE", "HEALTH", "ENDPOINTS"]);
    for server in [&a, &b] {
        let row = ["hello", "greeter", &server.id, "up", "greeted,", "hello,", "ping"];
        assert!(lines.contains(&row.to_vec()), "no row {row:?} in\n{}", run.stdout);
    }
    assert_eq!(lines.len(), 3, "{}", run.stdout);

    let json = rotor(&servers, &["ls", "--json"]).succeeded().json();
    let greeter = &json["namespaces"][0]["components"][0];
    assert_eq!(json["namespaces"][0]["name"], "hello");
    assert_eq!(greeter["name"], "greeter");
    assert_eq!(greeter["service"], "hello_greeter");
    assert_eq!(greeter["endpoints"], serde_json::json!(["greeted", "hello", "ping"]));
    let mut expected = vec![a.id.as_str(), b.id.as_str()];
    expected.sort();
    assert_eq!(ids(&greeter["instances"]), expected);
    assert!(greeter["instances"].as_array().unwrap().iter().all(|i| i["health"] == "up"), "{json}");
}

#[test]
fn ls_of_a_namespace_lists_only_that_namespace() {
    let servers = Servers::start();
    let _hello = Server::hello(&servers);
    let generator = Server::streaming(&servers);

    let everything = rotor(&servers, &["ls"]).succeeded();
    assert!(everything.stdout.contains("greeter") && everything.stdout.contains("generator"));
    let json = rotor(&servers, &["ls", "llm", "--json"]).succeeded().json();
    let namespaces = json["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 1, "{json}");
    assert_eq!(namespaces[0]["name"], "llm");
    assert_eq!(namespaces[0]["components"][0]["name"], "generator");
    assert_eq!(ids(&namespaces[0]["components"][0]["instances"]), [generator.id.as_str()]);
}

#[test]
fn ls_shows_no_answer_for_a_registered_instance_that_does_not_answer_ping() {
    let servers = Servers::start();
    let up = Server::hello(&servers);
    let stopped = Server::hello(&servers);
    // A stopped process keeps its registration until its 3 s lease runs
    // out, and answers nothing meanwhile.
    stopped.signal("-STOP");
    let json = rotor(&servers, &["ls", "--json", "--timeout", "500ms"]).succeeded().json();
    stopped.signal("-CONT");
    let instances = json["namespaces"][0]["components"][0]["instances"].as_array().unwrap().clone();
    let health = |id: &str| instances.iter().find(|i| i["instance"] == id).map(|i| i["health"].clone());
    assert_eq!(health(&up.id), Some("up".into()), "{json}");
    assert_eq!(health(&stopped.id), Some("no answer".into()), "{json}");
}

#[test]
fn describe_shows_the_three_endpoints_with_their_subjects_and_types() {
    let servers = Servers::start();
    let server = Server::hello(&servers);

    let run = rotor(&servers, &["describe", "hello/greeter"]).succeeded();
    let text = &run.stdout;
    assert!(
        text.starts_with(&format!("hello/greeter  instance {}  version 0.1.0  wire 1", server.id)),
        "{text}"
    );
    let lines: Vec<Vec<&str>> = text.lines().map(tokens).collect();
    assert_eq!(lines[1], ["ENDPOINT", "SUBJECT", "QUEUE", "GROUP", "REQUEST", "RESPONSE"]);
    let own: Vec<String> =
        ["hello", "ping", "greeted"].iter().map(|e| format!("hello_greeter.{e}-{}", server.id)).collect();
    let rows = [
        vec!["hello", "hello_greeter.hello", "q", "HelloRequest", "HelloReply"],
        vec![&own[0], "q"],
        vec!["ping", "hello_greeter.ping", "q", "()", "InstanceId"],
        vec![&own[1], "q"],
        vec!["greeted", "hello_greeter.greeted", "q", "()", "u64"],
        vec![&own[2], "q"],
    ];
    assert_eq!(lines[2..], rows, "{text}");

    let json = rotor(&servers, &["describe", "hello/greeter", "--json"]).succeeded().json();
    assert_eq!(json["service"], "hello_greeter");
    let instance = &json["instances"][0];
    assert_eq!(instance["instance"], server.id.as_str());
    assert_eq!(instance["version"], "0.1.0");
    let endpoints = instance["endpoints"].as_array().unwrap();
    let names: Vec<&str> = endpoints.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello", "ping", "greeted"]);
    assert_eq!(endpoints[0]["request"], "HelloRequest");
    assert_eq!(endpoints[0]["response"], "HelloReply");
    let subjects: Vec<&str> =
        endpoints[0]["subjects"].as_array().unwrap().iter().map(|s| s["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["hello_greeter.hello".to_string(), format!("hello_greeter.hello-{}", server.id)]);
}

#[test]
fn describe_of_a_component_nobody_serves_fails_and_says_so() {
    let servers = Servers::start();
    let run = rotor(&servers, &["describe", "hello/nobody", "--timeout", "300ms"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no instance of hello/nobody (service hello_nobody) answered $SRV.INFO"),
        "{}",
        run.stderr
    );
}

#[test]
fn call_of_hello_prints_the_greeting_from_an_argument_or_stdin() {
    let servers = Servers::start();
    let server = Server::hello(&servers);

    let run = rotor(&servers, &["call", "hello/greeter/hello", r#"{"name": "Ada"}"#]).succeeded();
    let reply = run.json();
    assert_eq!(reply["text"], "Hello, Ada!");
    assert_eq!(hex(&reply["served_by"]), server.id);
    assert!(run.stdout.contains("\n  \"text\": \"Hello, Ada!\""), "pretty-printed: {}", run.stdout);

    let run =
        rotor_in(&servers.env(), &["call", "hello/greeter/hello", "-", "--json"], Some(r#"{"name":"Bo"}"#));
    let run = run.succeeded();
    assert_eq!(run.stdout.lines().count(), 1, "one line with --json: {}", run.stdout);
    assert_eq!(run.json()["text"], "Hello, Bo!");

    // No argument and an empty stdin: the request is null, which is `()`.
    let run = rotor_in(&servers.env(), &["call", "hello/greeter/ping"], Some("")).succeeded();
    assert_eq!(hex(&run.json()), server.id);

    // A blank --etcd-endpoints leaves etcd out: the call goes to the queue group.
    let run = rotor(&servers, &["call", "hello/greeter/ping", "null", "--etcd-endpoints", ""]).succeeded();
    assert_eq!(hex(&run.json()), server.id);
}

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum Refused {
    #[error("nothing to scale")]
    Empty,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Scale {
    values: Vec<f32>,
    by: f32,
}

pub struct Scaler;

#[rotor::component(namespace = "test.cli", codec = "msgpack")]
impl Scaler {
    #[endpoint]
    async fn scale(&self, req: Scale) -> Result<Vec<f32>, Refused> {
        if req.values.is_empty() {
            return Err(Refused::Empty);
        }
        Ok(req.values.iter().map(|v| v * req.by).collect())
    }
}

#[test]
fn call_of_a_message_pack_endpoint_takes_json_sends_message_pack_and_prints_json() {
    let servers = Servers::start();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _served = tokio.block_on(async {
        let rt = servers.runtime().await;
        let handle = rt.serve(Scaler).await.unwrap();
        (rt, handle)
    });

    let run =
        rotor(&servers, &["call", "test.cli/scaler/scale", r#"{"values": [1, 2.5], "by": 2}"#, "--json"]);
    assert_eq!(run.succeeded().json(), serde_json::json!([2.0, 5.0]));
    // The typed error is JSON in its header whatever the payload codec.
    let run = rotor(&servers, &["call", "test.cli/scaler/scale", r#"{"values": [], "by": 2}"#]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("code 422") && run.stderr.contains(r#""Empty""#), "{}", run.stderr);
}

#[test]
fn call_with_an_empty_name_prints_the_application_error_with_code_422_and_exits_1() {
    let servers = Servers::start();
    let server = Server::hello(&servers);

    let run = rotor(&servers, &["call", "hello/greeter/hello", r#"{"name": ""}"#]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr.trim(), format!(r#"error (code 422) from instance {}: "EmptyName""#, server.id));
    assert_eq!(run.stdout, "");

    let run = rotor(&servers, &["call", "hello/greeter/hello", r#"{"name": ""}"#, "--json"]);
    assert_eq!(run.code, Some(1));
    let error = &run.json()["error"];
    assert_eq!(error["code"], 422);
    assert_eq!(error["kind"], "application");
    assert_eq!(error["instance"], server.id.as_str());
    assert_eq!(error["body"], "EmptyName");
}

#[test]
fn call_with_instance_goes_to_that_instance() {
    let servers = Servers::start();
    let _a = Server::hello(&servers);
    let b = Server::hello(&servers);
    for _ in 0..4 {
        let run = rotor_in(&servers.env(), &["call", "hello/greeter/ping", "--instance", &b.id], Some(""));
        assert_eq!(hex(&run.succeeded().json()), b.id);
    }
}

#[test]
fn call_that_fails_in_transport_prints_the_message_and_code_and_exits_1() {
    let servers = Servers::start();
    let _server = Server::hello(&servers);

    let run = rotor(&servers, &["call", "hello/greeter/hello", r#"{"name":"x"}"#, "--instance", "abc"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with(
            "error (code 404, unknown_instance): instance abc does not serve hello/greeter/hello"
        ),
        "{}",
        run.stderr
    );

    let run = rotor(&servers, &["call", "hello/greeter/hello", r#"{"nom":"x"}"#, "--json"]);
    assert_eq!(run.code, Some(1));
    let error = &run.json()["error"];
    assert_eq!((error["code"].as_u64(), error["kind"].as_str()), (Some(400), Some("bad_request")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("missing field `name`"), "{error}");
}

#[test]
fn call_to_an_instance_that_does_not_answer_times_out_with_code_408() {
    let servers = Servers::start();
    let server = Server::hello(&servers);
    // Stopped, it stays registered until its 3 s lease runs out, and
    // answers nothing meanwhile.
    server.signal("-STOP");
    let args = ["call", "hello/greeter/ping", "null", "--instance", &server.id, "--timeout", "300ms"];
    let run = rotor(&servers, &args);
    server.signal("-CONT");
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.starts_with("error (code 408, timeout): no reply on "), "{}", run.stderr);
    assert!(run.stderr.contains("hint: allow more time with --timeout"), "{}", run.stderr);
}

#[test]
fn call_of_a_streaming_endpoint_prints_each_item_in_order() {
    let servers = Servers::start();
    let _server = Server::streaming(&servers);
    let prompt = r#"{"text": "the quick brown fox", "repeat": 2, "pause_ms": 1}"#;
    let words = ["the", "quick", "brown", "fox", "the", "quick", "brown", "fox"];

    // Found out by the plain call's answer, then with --stream at once.
    for args in [
        vec!["call", "llm/generator/generate", prompt],
        vec!["call", "--stream", "llm/generator/generate", prompt],
    ] {
        let items = rotor(&servers, &args).succeeded().json_lines();
        let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
        assert_eq!(texts, words);
        let indexes: Vec<u64> = items.iter().map(|i| i["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, (0..8).collect::<Vec<_>>());
    }

    // An error mid-stream comes after the items before it, and fails the run.
    let run = rotor(
        &servers,
        &["call", "llm/generator/generate", r#"{"text":"a b forbidden","repeat":1,"pause_ms":0}"#],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(run.json_lines().len(), 2, "{}", run.stdout);
    assert!(run.stderr.starts_with("error (code 422) from instance "), "{}", run.stderr);
    assert!(run.stderr.trim().ends_with(r#": {"Forbidden":2}"#), "{}", run.stderr);
}

#[test]
fn stats_after_some_calls_shows_their_counts_per_endpoint() {
    let servers = Servers::start();
    let server = Server::hello(&servers);
    for name in ["a", "b", "c", ""] {
        rotor(&servers, &["call", "hello/greeter/hello", &format!(r#"{{"name":"{name}"}}"#)]);
    }

    let run = rotor(&servers, &["stats", "hello/greeter"]).succeeded();
    let row = |endpoint: &str| -> Vec<String> {
        let line = run.stdout.lines().find(|l| l.split_whitespace().nth(2) == Some(endpoint)).unwrap();
        line.split_whitespace().map(String::from).collect()
    };
    let hello = row("hello");
    assert_eq!(hello[..5], ["hello_greeter", &server.id, "hello", "4", "1"], "{}", run.stdout);
    assert_eq!(hello[6..].join(" "), "422:a name is required");
    assert_eq!(row("ping")[3..5], ["0", "0"]);

    let json = rotor(&servers, &["stats", "hello/greeter", "--json"]).succeeded().json();
    let service = &json["services"][0];
    assert_eq!(service["service"], "hello_greeter");
    assert_eq!(service["instance"], server.id.as_str());
    let hello = &service["endpoints"][0];
    assert_eq!(
        (hello["name"].as_str(), hello["requests"].as_u64(), hello["errors"].as_u64()),
        (Some("hello"), Some(4), Some(1))
    );
    assert_eq!(hello["rotor"]["requests"], 4, "Rotor's own figures ride along: {hello}");

    // Without a component: every service on this NATS, this one among them.
    let all = rotor(&servers, &["stats", "--json", "--timeout", "500ms"]).succeeded().json();
    assert!(all["services"].as_array().unwrap().iter().any(|s| s["service"] == "hello_greeter"), "{all}");
}

#[test]
fn stats_watch_refreshes_until_count() {
    let servers = Servers::start();
    let _server = Server::hello(&servers);
    let run =
        rotor(&servers, &["stats", "hello/greeter", "--watch", "0.1", "--count", "3", "--json"]).succeeded();
    let refreshes = run.json_lines();
    assert_eq!(refreshes.len(), 3, "{}", run.stdout);
    assert!(refreshes.iter().all(|r| r["services"][0]["service"] == "hello_greeter"));
}

#[test]
fn watch_sees_an_instance_join_and_then_leave_when_it_stops() {
    let servers = Servers::start();
    let first = Server::hello(&servers);
    let text = Lines::start(&servers, &["watch", "hello/greeter", "--count", "3"]);
    let json = Lines::start(&servers, &["watch", "hello/greeter", "--count", "3", "--json"]);
    // The instance present at the start is the first line; once both have
    // printed it, both watches are established.
    assert_eq!(text.next(), format!("+ {}  hello/greeter", first.id));
    let event = |line: String| serde_json::from_str::<Value>(&line).unwrap();
    let expected = |kind: &str, id: &str| serde_json::json!({ "event": kind, "instance": id, "namespace": "hello", "component": "greeter" });
    assert_eq!(event(json.next()), expected("join", &first.id));

    let mut second = Server::hello(&servers);
    assert_eq!(text.next(), format!("+ {}  hello/greeter", second.id));
    assert_eq!(event(json.next()), expected("join", &second.id));
    second.stop();
    assert_eq!(text.next(), format!("- {}  hello/greeter", second.id));
    assert_eq!(event(json.next()), expected("leave", &second.id));

    for mut watch in [text, json] {
        assert!(wait_for_exit(&mut watch.child).success(), "--count 3 ends the watch");
    }
}

#[test]
fn a_down_nats_gives_an_error_naming_the_address_and_a_non_zero_exit() {
    let etcd = Etcd::start();
    let dead = format!("nats://127.0.0.1:{}", support::free_port());
    let env = [("ROTOR_NATS_URL", dead.clone()), ("ROTOR_ETCD_ENDPOINTS", etcd.endpoint())];
    for args in
        [&["ls"][..], &["describe", "hello/greeter"], &["call", "hello/greeter/ping", "null"], &["stats"]]
    {
        let run = rotor_in(&env, args, None);
        assert_eq!(run.code, Some(1), "{args:?}");
        let expected = format!("error: cannot reach NATS at {dead} (set by ROTOR_NATS_URL): ");
        assert!(run.stderr.starts_with(&expected), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("is the server running"), "{}", run.stderr);
    }
    // A flag overrides the variable, and the error names the flag.
    let env = [("ROTOR_NATS_URL", "nats://127.0.0.1:1".to_string())];
    let run = rotor_in(&env, &["describe", "hello/greeter", "--nats-url", &dead], None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!("cannot reach NATS at {dead} (set by --nats-url)")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_down_etcd_gives_an_error_naming_the_address_and_a_non_zero_exit() {
    let servers = Servers::start();
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    for args in [&["ls"][..], &["watch", "hello/greeter"]] {
        let run = rotor(&servers, &[args, &["--etcd-endpoints", dead.as_str()][..]].concat());
        assert_eq!(run.code, Some(1), "{args:?}");
        let expected = format!("error: cannot reach etcd at {dead} (set by --etcd-endpoints): ");
        assert!(run.stderr.starts_with(&expected), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn without_configuration_the_error_names_the_variable_to_set() {
    let run = rotor_in(&[], &["ls"], None);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr.trim(), "error: NATS is not configured: set ROTOR_NATS_URL or pass --nats-url");
    let run = rotor_in(&[("ROTOR_NATS_URL", "nats://127.0.0.1:1".into())], &["watch", "a/b"], None);
    assert_eq!(
        run.stderr.trim(),
        "error: etcd is not configured: set ROTOR_ETCD_ENDPOINTS or pass --etcd-endpoints"
    );
}

#[test]
fn malformed_names_and_requests_are_usage_errors_with_exit_code_2() {
    let env = [("ROTOR_NATS_URL", "nats://127.0.0.1:1".to_string())];
    for (args, message) in [
        (&["describe", "greeter"][..], r#"error: "greeter" is not NAMESPACE/COMPONENT"#),
        (&["call", "hello/greeter", "{}"], r#"error: "hello/greeter" is not NAMESPACE/COMPONENT/ENDPOINT"#),
        (&["call", "hello/greeter/hello", "{"], "error: the request is not JSON"),
        (&["call", "hello/greeter/hello", "{}", "--instance", "xyz"], r#"error: --instance "xyz" is not"#),
        (&["ls", "--timeout", "soon"], "error: invalid value 'soon' for '--timeout <TIME>'"),
    ] {
        let run = rotor_in(&env, args, None);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with(message), "{args:?}: {}", run.stderr);
    }
}
