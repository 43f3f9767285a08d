//! Incremental build time of one component with 50 endpoints written with
//! Rotor's macros (M), against the same component written by hand on the
//! runtime API (H): the same endpoints, types, subjects and descriptor, a
//! hand-written `rotor::Endpoints` impl dispatching to `rotor::__private_0_1`, and
//! a hand-written typed client — the code `#[component]` expands to.
//!
//! Both crates are generated into a temporary directory and share one target
//! directory, so their dependencies are built once (the untimed warm-up, a
//! few minutes). Each crate also has a small `main` that serves the component
//! in embedded mode and calls every endpoint through the typed client; the
//! two must print the same descriptor and the same replies. Then the
//! component's source is edited (comment lines at the top, so that every
//! item below moves) and `cargo build --lib` is timed, interleaved M, H, M, H.
//! Prints median and min for both and the ratio M/H.
//!
//! `cargo bench --bench compile` (add `-- --quick` for 2 builds each
//! instead of 5). Set `ROTOR_COMPILE_BENCH_DIR` to a directory to generate
//! the crates there instead of a temporary one and keep them, with their
//! target directory: a rerun then skips the dependency build, and the
//! generated code can be read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ENDPOINTS: usize = 50;
const TARGET: f64 = 1.3;

/// The shapes an endpoint takes, in turn, so the component looks like a real
/// one: struct, string, scalar and unit requests, errors or none, context
/// arguments, a non-idempotent endpoint, a renamed one and both stream forms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lookup,
    Echo,
    Count,
    Sum,
    Check,
    Put,
    Describe,
    Scale,
    Ticks,
    Search,
}

const KINDS: [Kind; 10] = [
    Kind::Lookup,
    Kind::Echo,
    Kind::Count,
    Kind::Sum,
    Kind::Check,
    Kind::Put,
    Kind::Describe,
    Kind::Scale,
    Kind::Ticks,
    Kind::Search,
];

struct Endpoint {
    index: usize,
    kind: Kind,
}

impl Endpoint {
    fn all() -> Vec<Endpoint> {
        (0..ENDPOINTS).map(|index| Endpoint { index, kind: KINDS[index % KINDS.len()] }).collect()
    }

    fn method(&self) -> String {
        let stem = match self.kind {
            Kind::Lookup => "lookup",
            Kind::Echo => "echo",
            Kind::Count => "count",
            Kind::Sum => "sum",
            Kind::Check => "check",
            Kind::Put => "put",
            Kind::Describe => "describe",
            Kind::Scale => "scale",
            Kind::Ticks => "ticks",
            Kind::Search => "search",
        };
        format!("{stem}_{:02}", self.index)
    }

    fn wire(&self) -> String {
        match self.kind {
            // Renamed on the wire, and not ending in '-' and hex digits
            // (the shape the name rules keep for instance subjects).
            Kind::Search => format!("lookup-{:02}-by-name", self.index),
            _ => self.method(),
        }
    }

    fn subject_const(&self) -> String {
        format!("{}_SUBJECT", self.method().to_uppercase())
    }

    fn request(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Lookup | Kind::Check => Some("LookupRequest"),
            Kind::Echo => Some("String"),
            Kind::Count | Kind::Describe => None,
            Kind::Sum => Some("Vec<u32>"),
            Kind::Put => Some("PutRequest"),
            Kind::Scale => Some("f64"),
            Kind::Ticks => Some("u32"),
            Kind::Search => Some("SearchRequest"),
        }
    }

    /// The response type, or for a stream the item type.
    fn ok(&self) -> &'static str {
        match self.kind {
            Kind::Lookup => "LookupResponse",
            Kind::Echo | Kind::Describe | Kind::Search => "String",
            Kind::Count | Kind::Sum => "u64",
            Kind::Check => "bool",
            Kind::Put => "()",
            Kind::Scale => "f64",
            Kind::Ticks => "u32",
        }
    }

    fn err(&self) -> &'static str {
        match self.kind {
            Kind::Lookup | Kind::Check | Kind::Search => "LookupError",
            Kind::Put => "PutError",
            Kind::Scale => "ScaleError",
            Kind::Echo | Kind::Count | Kind::Sum | Kind::Describe | Kind::Ticks => "Never",
        }
    }

    fn streaming(&self) -> bool {
        matches!(self.kind, Kind::Ticks | Kind::Search)
    }

    fn idempotent(&self) -> bool {
        self.kind != Kind::Put
    }

    fn attribute(&self) -> String {
        match self.kind {
            Kind::Put => "#[endpoint(idempotent = false)]".to_string(),
            Kind::Search => format!("#[endpoint(name = \"{}\")]", self.wire()),
            _ => "#[endpoint]".to_string(),
        }
    }

    /// The user's method, the same in both versions.
    fn user_method(&self) -> String {
        let (m, i, ok, err) = (self.method(), self.index, self.ok(), self.err());
        match self.kind {
            Kind::Lookup => format!(
                "    async fn {m}(&self, req: LookupRequest) -> Result<{ok}, {err}> {{
        if req.key.is_empty() {{
            return Err(LookupError::Empty);
        }}
        if req.limit == 0 {{
            return Err(LookupError::NotFound(req.key));
        }}
        let tags = (0..req.limit.min(3)).map(|i| format!(\"{{}}-{{i}}\", req.key)).collect();
        Ok(LookupResponse {{ value: self.base + {i} + req.key.len() as u64, key: req.key, tags }})
    }}
"
            ),
            Kind::Echo => format!(
                "    async fn {m}(&self, req: String) -> Result<{ok}, {err}> {{
        Ok(format!(\"{i}:{{req}}\"))
    }}
"
            ),
            Kind::Count => format!(
                "    async fn {m}(&self) -> Result<{ok}, {err}> {{
        Ok(self.base * {i})
    }}
"
            ),
            Kind::Sum => format!(
                "    async fn {m}(&self, req: Vec<u32>) -> Result<{ok}, {err}> {{
        Ok(req.iter().map(|&v| u64::from(v)).sum::<u64>() + {i})
    }}
"
            ),
            Kind::Check => format!(
                "    async fn {m}(&self, ctx: &Context, req: LookupRequest) -> Result<{ok}, {err}> {{
        if req.key.is_empty() {{
            return Err(LookupError::Empty);
        }}
        Ok(ctx.endpoint() == \"{m}\" && req.limit > 0)
    }}
"
            ),
            Kind::Put => format!(
                "    async fn {m}(&self, req: PutRequest) -> Result<{ok}, {err}> {{
        let limit = self.base + {i};
        if req.value > limit {{
            return Err(PutError::TooLarge {{ value: req.value, limit }});
        }}
        Ok(())
    }}
"
            ),
            Kind::Describe => format!(
                "    async fn {m}(&self, ctx: Context) -> Result<{ok}, {err}> {{
        Ok(format!(\"{{}}/{{}}/{{}}\", ctx.namespace(), ctx.component(), ctx.endpoint()))
    }}
"
            ),
            Kind::Scale => format!(
                "    async fn {m}(&self, req: f64) -> Result<{ok}, {err}> {{
        if req < 0.0 {{
            return Err(ScaleError(req));
        }}
        Ok(req * {i}.0)
    }}
"
            ),
            Kind::Ticks => format!(
                "    async fn {m}(&self, req: u32) -> impl Stream<Item = Result<{ok}, {err}>> {{
        futures::stream::iter((0..req).map(|t| Ok(t + {i})))
    }}
"
            ),
            Kind::Search => format!(
                "    async fn {m}(
        &self,
        req: SearchRequest,
    ) -> Result<impl Stream<Item = Result<{ok}, {err}>> + Send, {err}> {{
        if req.prefix.is_empty() {{
            return Err(LookupError::Empty);
        }}
        let base = self.base + {i};
        Ok(futures::stream::iter((0..req.max).map(move |n| Ok(format!(\"{{}}{{}}\", req.prefix, base + u64::from(n))))))
    }}
"
            ),
        }
    }

    fn codecs(&self) -> String {
        format!(
            "(request_codec::<{}>(Format::Json), response_codec::<{}>(Format::Json), error_codec::<{}>())",
            self.request().unwrap_or("()"),
            self.ok(),
            self.err()
        )
    }

    /// The hand-written `handle` arm: what the macro's `dispatch_arm` emits.
    fn dispatch_arm(&self) -> String {
        let (m, i, codecs) = (self.method(), self.index, self.codecs());
        let req_ty = self.request().unwrap_or("()");
        let (ctx, req, args) = match self.kind {
            Kind::Count => ("_ctx", "_req", String::new()),
            Kind::Describe => ("ctx", "_req", "ctx".to_string()),
            Kind::Check => ("ctx", "req", "&ctx, req".to_string()),
            _ => ("_ctx", "req", "req".to_string()),
        };
        let call = format!("self.{m}({args}).await");
        match self.kind {
            Kind::Ticks => format!(
                "            {i} => streaming(request, {codecs}, move |{ctx}: Context, {req}: {req_ty}, sink| async move {{
                sink.send({call}).await
            }}),
"
            ),
            Kind::Search => format!(
                "            {i} => streaming(request, {codecs}, move |{ctx}: Context, {req}: {req_ty}, sink| async move {{
                match {call} {{
                    Ok(stream) => sink.send(stream).await,
                    Err(error) => sink.early_error(error),
                }}
            }}),
"
            ),
            _ => format!(
                "            {i} => unary(request, {codecs}, move |{ctx}: Context, {req}: {req_ty}| async move {{
                {call}
            }}),
"
            ),
        }
    }

    /// The hand-written client method: what the macro's `client_method` emits.
    fn client_method(&self) -> String {
        let (m, i, ok, err, codecs) = (self.method(), self.index, self.ok(), self.err(), self.codecs());
        let (param, arg) = match self.request() {
            Some(ty) => (format!(", req: {ty}"), "&req"),
            None => (String::new(), "&()"),
        };
        if self.streaming() {
            format!(
                "    pub async fn {m}(&self{param}) -> Result<ResponseStream<{ok}, {err}>, CallError<{err}>> {{
        call_stream(&self.core, {i}, {arg}, {codecs}).await
    }}

"
            )
        } else {
            format!(
                "    pub async fn {m}(&self{param}) -> Result<{ok}, CallError<{err}>> {{
        call(&self.core, {i}, {arg}, {codecs}).await
    }}

"
            )
        }
    }

    fn descriptor(&self) -> String {
        format!(
            "    EndpointDescriptor {{
        name: \"{}\",
        method: \"{}\",
        subject: Catalog::{},
        request: \"{}\",
        response: \"{}\",
        error: \"{}\",
        idempotent: {},
        streaming: {},
        max_request: None,
    }},
",
            self.wire(),
            self.method(),
            self.subject_const(),
            self.request().unwrap_or("()"),
            self.ok(),
            self.err(),
            self.idempotent(),
            self.streaming()
        )
    }

    /// Calls through the typed client for the check binary: one that
    /// succeeds and, where the endpoint has one, one that fails.
    fn calls(&self) -> String {
        let m = self.method();
        let calls: Vec<String> = match self.kind {
            Kind::Lookup => vec![
                format!("describe(client.{m}(LookupRequest {{ key: \"k\".into(), limit: 2 }}).await)"),
                format!("describe(client.{m}(LookupRequest {{ key: \"k\".into(), limit: 0 }}).await)"),
                format!("describe(client.{m}(LookupRequest {{ key: String::new(), limit: 1 }}).await)"),
            ],
            Kind::Echo => vec![format!(
                "describe(client.with_timeout(Duration::from_secs(5)).{m}(\"hi\".into()).await)"
            )],
            Kind::Count => vec![format!("describe(client.{m}().await)")],
            Kind::Sum => vec![format!("describe(client.{m}(vec![1, 2, 3]).await)")],
            Kind::Check => vec![
                format!("describe(client.{m}(LookupRequest {{ key: \"k\".into(), limit: 1 }}).await)"),
                format!("describe(client.{m}(LookupRequest {{ key: String::new(), limit: 1 }}).await)"),
            ],
            Kind::Put => vec![
                format!("describe(client.{m}(PutRequest {{ key: \"k\".into(), value: 1 }}).await)"),
                format!(
                    "describe(client.with_retries(1).{m}(PutRequest {{ key: \"k\".into(), value: 1000 }}).await)"
                ),
            ],
            Kind::Describe => vec![format!("describe(client.with_router(Router::Random).{m}().await)")],
            Kind::Scale => {
                vec![format!("describe(client.{m}(1.5).await)"), format!("describe(client.{m}(-1.0).await)")]
            }
            Kind::Ticks => vec![format!("stream_of(client.{m}(3).await).await")],
            Kind::Search => vec![
                format!(
                    "stream_of(client.{m}(SearchRequest {{ prefix: \"p\".into(), max: 2 }}).await).await"
                ),
                format!(
                    "stream_of(client.{m}(SearchRequest {{ prefix: String::new(), max: 2 }}).await).await"
                ),
            ],
        };
        calls.iter().map(|c| format!("    replies.push(format!(\"{m} {{}}\", {c}));\n")).collect()
    }
}

/// The wire types and the component's struct, the same in both versions.
const TYPES: &str = r#"use serde::{Deserialize, Serialize};

pub struct Catalog {
    pub base: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LookupRequest {
    pub key: String,
    pub limit: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LookupResponse {
    pub key: String,
    pub value: u64,
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
pub enum LookupError {
    #[error("empty key")]
    Empty,
    #[error("key {0} not found")]
    NotFound(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: String,
    pub value: u64,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
pub enum PutError {
    #[error("value {value} is over the limit {limit}")]
    TooLarge { value: u64, limit: u64 },
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("cannot scale by {0}")]
pub struct ScaleError(pub f64);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchRequest {
    pub prefix: String,
    pub max: u32,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("never")]
pub struct Never;
"#;

/// The edited line(s) at the top of the component's source. One line or
/// two in turn, so that every item below moves as it does after a real
/// edit; a same-length change would let rustc's incremental cache reuse
/// nearly everything and time little more than parsing and expansion.
fn edit_header(revision: usize) -> String {
    if revision % 2 == 0 {
        format!("// revision {revision}\n")
    } else {
        format!("// revision {revision},\n// with one more line\n")
    }
}

fn macro_source(endpoints: &[Endpoint]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "//! A component with {ENDPOINTS} endpoints, written with Rotor's macros.\n");
    s.push_str("use futures::Stream;\nuse rotor::prelude::*;\n");
    s.push_str(TYPES);
    s.push_str("\n#[component(namespace = \"bench\")]\nimpl Catalog {\n");
    for (n, ep) in endpoints.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        let _ = writeln!(s, "    {}", ep.attribute());
        s.push_str(&ep.user_method());
    }
    s.push_str("}\n");
    s
}

fn hand_source(endpoints: &[Endpoint]) -> String {
    let mut s = String::new();
    s.push_str("//! The same component, written by hand on the runtime API.\n\n");
    s.push_str(
        "use std::time::Duration;

use futures::Stream;
use rotor::__private_0_1::{
    Arc, BoxFuture, ClientCore, Format, Outcome, Registered, Request, call, call_stream, error_codec, request_codec,
    response_codec, streaming, unary, unknown_endpoint,
};
use rotor::{
    CallError, ComponentDescriptor, Context, EndpointDescriptor, InstanceId, ResponseStream, Router, Runtime,
    Endpoints,
};
",
    );
    s.push_str(TYPES);

    s.push_str("\nimpl Catalog {\n");
    for (n, ep) in endpoints.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        s.push_str(&ep.user_method());
    }
    s.push_str("}\n");

    s.push_str(
        "
impl Catalog {
    /// Namespace of this component: `bench`.
    pub const NAMESPACE: &'static str = \"bench\";
    /// Name of this component: `catalog`.
    pub const COMPONENT: &'static str = \"catalog\";
    /// NATS micro service name of this component: `bench_catalog`.
    pub const SERVICE: &'static str = \"bench_catalog\";
",
    );
    for ep in endpoints {
        let _ = write!(
            s,
            "    /// Queue-group subject of endpoint `{wire}`: `bench_catalog.{wire}`.
    pub const {name}: &'static str = \"bench_catalog.{wire}\";
",
            wire = ep.wire(),
            name = ep.subject_const()
        );
    }
    s.push_str(
        "
    /// A typed client of this component, routed through `rt`'s discovery
    /// and transport.
    pub async fn client(rt: &Runtime) -> Result<CatalogClient, rotor::Error> {
        rotor::__private_0_1::client::<Self>(rt).await
    }
}
",
    );

    let _ = writeln!(s, "\nstatic CATALOG_ENDPOINTS: [EndpointDescriptor; {}] = [", endpoints.len());
    for ep in endpoints {
        s.push_str(&ep.descriptor());
    }
    s.push_str(
        "];

static CATALOG: ComponentDescriptor = ComponentDescriptor {
    namespace: Catalog::NAMESPACE,
    name: Catalog::COMPONENT,
    service: Catalog::SERVICE,
    version: env!(\"CARGO_PKG_VERSION\"),
    type_name: \"Catalog\",
    labels: &[],
    is_static: false,
    endpoints: &CATALOG_ENDPOINTS,
    codec: Format::Json,
};

impl Endpoints for Catalog {
    type Client = CatalogClient;
    const DESCRIPTOR: &'static ComponentDescriptor = &CATALOG;

    fn handle(self: Arc<Self>, endpoint: usize, request: Request) -> BoxFuture<'static, Outcome> {
        match endpoint {
",
    );
    for ep in endpoints {
        s.push_str(&ep.dispatch_arm());
    }
    s.push_str(
        "            _ => unknown_endpoint(&request),
        }
    }

    fn client(core: ClientCore) -> CatalogClient {
        CatalogClient { core }
    }
}

rotor::__private_0_1::inventory::submit! {
    Registered(&CATALOG)
}

/// Typed client of the `bench/catalog` component ([`Catalog`]). Cheap to
/// clone; clones share the instance cache.
#[derive(Clone, Debug)]
pub struct CatalogClient {
    core: ClientCore,
}

impl CatalogClient {
",
    );
    for ep in endpoints {
        s.push_str(&ep.client_method());
    }
    s.push_str(
        "    /// The same client, sending every call to one instance.
    pub fn direct(&self, instance: InstanceId) -> Self {
        Self { core: self.core.direct(instance) }
    }

    /// The same client, choosing instances with `router`.
    pub fn with_router(&self, router: Router) -> Self {
        Self { core: self.core.with_router(router) }
    }

    /// The same client, with `timeout` for every call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self { core: self.core.with_timeout(timeout) }
    }

    /// The same client, retrying an idempotent call on another instance up
    /// to `retries` times when its instance is gone.
    pub fn with_retries(&self, retries: u32) -> Self {
        Self { core: self.core.with_retries(retries) }
    }

    /// The untyped client underneath, for instance lists and waits.
    pub fn core(&self) -> &ClientCore {
        &self.core
    }
}
",
    );
    s
}

/// The check binary, the same in both crates but for the library's name.
fn check_source(lib: &str, endpoints: &[Endpoint]) -> String {
    let mut s = format!(
        "//! Serves the component in embedded mode, calls every endpoint through
//! the typed client and prints what it declares and what it answers.

use std::fmt::{{Debug, Display}};
use std::hash::{{DefaultHasher, Hash, Hasher}};
use std::time::Duration;

use futures::StreamExt;
use rotor::{{CallError, ResponseStream, Router, Endpoints}};
use {lib}::*;
"
    );
    s.push_str(
        r#"
fn describe<T: Debug, E: Display + Debug>(reply: Result<T, CallError<E>>) -> String {
    match reply {
        Ok(value) => format!("ok {value:?}"),
        Err(e) => match e.app() {
            Some(app) => format!("app error: {app}"),
            None => format!("failed: {e:?}"),
        },
    }
}

async fn stream_of<T: Debug, E: Display + Debug>(reply: Result<ResponseStream<T, E>, CallError<E>>) -> String {
    match reply {
        Ok(stream) => format!("stream {:?}", stream.map(describe).collect::<Vec<_>>().await),
        Err(e) => describe::<(), E>(Err(e)),
    }
}

fn hash(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = rotor::Runtime::embedded().await?;
    let _server = rt.serve(Catalog { base: 7 }).await?;
    let client = Catalog::client(&rt).await?;
    let mut replies: Vec<String> = Vec::new();
"#,
    );
    for ep in endpoints {
        s.push_str(&ep.calls());
    }
    s.push_str("    let subjects = [\n");
    for ep in endpoints {
        let _ = writeln!(s, "        Catalog::{},", ep.subject_const());
    }
    s.push_str(
        r#"    ];
    let descriptor = <Catalog as Endpoints>::DESCRIPTOR;
    println!(
        "service {} endpoints {} registered {} descriptor {:016x} subjects {:016x} replies {} {:016x}",
        Catalog::SERVICE,
        descriptor.endpoints.len(),
        rotor::components().len(),
        hash(&format!("{descriptor:?}")),
        hash(&subjects),
        replies.len(),
        hash(&replies),
    );
    println!("{descriptor:#?}");
    for reply in &replies {
        println!("{reply}");
    }
    Ok(())
}
"#,
    );
    s
}

fn manifest(package: &str, repo: &Path) -> String {
    format!(
        r#"[package]
name = "{package}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
rotor = {{ path = {repo:?} }}
serde = {{ version = "1", features = ["derive"] }}
thiserror = "2"
futures = {{ version = "0.3", default-features = false, features = ["std", "async-await"] }}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros"] }}

[workspace]
"#,
        repo = repo.display().to_string()
    )
}

struct Crate {
    label: &'static str,
    dir: PathBuf,
    package: &'static str,
    /// The component's source without the edited header.
    body: String,
}

impl Crate {
    fn lib_rs(&self) -> PathBuf {
        self.dir.join("src/lib.rs")
    }

    fn write(&self, repo: &Path, endpoints: &[Endpoint]) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir.join("src"))?;
        std::fs::write(self.dir.join("Cargo.toml"), manifest(self.package, repo))?;
        // The repository's lock file pins the dependency versions it is
        // tested with, and lets `--offline` resolve without the index.
        let lock = repo.join("Cargo.lock");
        if lock.exists() {
            std::fs::copy(&lock, self.dir.join("Cargo.lock"))?;
        }
        let lib = self.package.replace('-', "_");
        std::fs::write(self.dir.join("src/main.rs"), check_source(&lib, endpoints))?;
        self.edit(0)
    }

    fn edit(&self, revision: usize) -> std::io::Result<()> {
        std::fs::write(self.lib_rs(), format!("{}{}", edit_header(revision), self.body))
    }
}

struct Cargo {
    target_dir: PathBuf,
    offline: bool,
}

impl Cargo {
    fn build(&self, krate: &Crate, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build").args(args);
        if self.offline {
            cmd.arg("--offline");
        }
        cmd.current_dir(&krate.dir)
            .env("CARGO_TARGET_DIR", &self.target_dir)
            .env("RUST_BACKTRACE", "0")
            .env("CARGO_TERM_COLOR", "never")
            // A jobserver inherited from an outer cargo would cap the
            // build's parallelism differently from run to run.
            .env_remove("CARGO_MAKEFLAGS")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS");
        cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", env!("CARGO")))
    }

    fn build_ok(&self, krate: &Crate, args: &[&str]) -> Duration {
        let start = Instant::now();
        let out = self.build(krate, args);
        let took = start.elapsed();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            panic!("`cargo build {}` of the {} crate failed", args.join(" "), krate.label);
        }
        took
    }
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2 }
}

fn size(text: &str) -> String {
    format!("{} lines, {:.1} KiB", text.lines().count(), text.len() as f64 / 1024.0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 2 } else { 5 };
    let started = Instant::now();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let endpoints = Endpoint::all();

    let mut tmp = None;
    let root = match std::env::var_os("ROTOR_COMPILE_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir =
                tempfile::Builder::new().prefix("rotor-compile-bench").tempdir().expect("temporary dir");
            tmp.insert(dir).path().to_path_buf()
        }
    };
    let crates = [
        Crate {
            label: "macro",
            dir: root.join("bench-macro"),
            package: "bench-macro",
            body: macro_source(&endpoints),
        },
        Crate {
            label: "hand",
            dir: root.join("bench-hand"),
            package: "bench-hand",
            body: hand_source(&endpoints),
        },
    ];
    for krate in &crates {
        krate.write(&repo, &endpoints).expect("write the generated crate");
    }

    println!("one component, {ENDPOINTS} endpoints: Rotor's macros (M) against the same code by hand (H)");
    println!("crates and target directory in {}", root.display());
    for krate in &crates {
        println!("  {:<5} src/lib.rs: {}", krate.label, size(&krate.body));
    }

    let mut cargo = Cargo { target_dir: root.join("target"), offline: true };
    println!("warm-up: building both crates and their dependencies (not timed, a few minutes)");
    let warm = Instant::now();
    let first = cargo.build(&crates[0], &[]);
    if !first.status.success() {
        println!("  `--offline` failed; building online");
        cargo.offline = false;
        cargo.build_ok(&crates[0], &[]);
    }
    cargo.build_ok(&crates[1], &[]);
    println!("  done in {:.1} s", warm.elapsed().as_secs_f64());

    let mut checks = Vec::new();
    for krate in &crates {
        let bin = cargo.target_dir.join("debug").join(krate.package);
        let out = Command::new(&bin).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
            panic!("the {} crate's check binary failed", krate.label);
        }
        println!("  {:<5} {}", krate.label, text.lines().next().unwrap_or_default());
        checks.push(text);
    }
    if checks[0] != checks[1] {
        for (line, (m, h)) in checks[0].lines().zip(checks[1].lines()).enumerate() {
            if m != h {
                eprintln!("line {}:\n  macro: {m}\n  hand:  {h}", line + 1);
            }
        }
        panic!("the two versions disagree on their descriptor or their replies");
    }
    println!("  both versions declare the same descriptor and give the same replies");

    // One untimed edit and build of each, so that the first timed build does
    // not also pay for cold caches left by the warm-up.
    for krate in &crates {
        krate.edit(1).expect("edit");
        cargo.build_ok(krate, &["--lib"]);
    }

    // Only the library is timed: the check binary is the same text in both
    // crates and would add the same time to both, hiding the difference.
    println!("{runs} incremental `cargo build --lib` runs each after an edit, interleaved:");
    let mut samples = [Vec::new(), Vec::new()];
    for run in 0..runs {
        let mut line = format!("  run {}:", run + 1);
        for (krate, times) in crates.iter().zip(&mut samples) {
            krate.edit(run + 2).expect("edit");
            let took = cargo.build_ok(krate, &["--lib"]);
            let _ = write!(line, "  {} {:.3} s", krate.label, took.as_secs_f64());
            times.push(took);
        }
        println!("{line}");
    }
    for times in &mut samples {
        times.sort();
    }

    println!("         median      min");
    for (krate, times) in crates.iter().zip(&samples) {
        println!(
            "  {:<5} {:>7.3} s  {:>7.3} s",
            krate.label,
            median(times).as_secs_f64(),
            times[0].as_secs_f64()
        );
    }
    let ratio = median(&samples[0]).as_secs_f64() / median(&samples[1]).as_secs_f64();
    let ratio_min = samples[0][0].as_secs_f64() / samples[1][0].as_secs_f64();
    println!("  ratio M/H: {ratio:.2}x median, {ratio_min:.2}x min (target: <= {TARGET:.1}x)");
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
