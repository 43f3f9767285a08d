//! The runtime's floors, checked on its source: a module's imports only
//! point down (engines, then the exchange, then serving, clients and the
//! runtime), the engines never name `Runtime`, and no two top-level modules
//! import each other, directly or through others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Floor of each top-level module: 0 beneath everything, 1 the engines,
/// 2 the exchange, 3 the top.
fn floor(module: &str) -> u8 {
    match module {
        "error" | "guard" | "instance" => 0,
        "engine" => 1,
        "exchange" => 2,
        _ => 3,
    }
}

/// The module that defines a name the crate root re-exports.
fn home_of_root_item(item: &str) -> Option<&'static str> {
    Some(match item {
        "Error" | "CallError" | "TransportError" | "ErrorKind" => "error",
        "Guard" => "guard",
        "InstanceId" => "instance",
        "config" | "discovery" | "metrics" | "transport" | "stats" | "Config" | "EndpointStats"
        | "ServiceSet" | "ServiceStats" => "engine",
        "codec" | "wire" | "ResponseStream" => "exchange",
        "ClientCore" | "ClientStats" | "Router" | "FanOut" | "Answers" => "client",
        "Handler" => "handler",
        "Endpoints" => "component",
        "Context" => "context",
        "ComponentDescriptor" | "EndpointDescriptor" | "check_registry" | "components" => "registry",
        "Mode" | "Runtime" | "RuntimeBuilder" => "runtime",
        "ServeHandle" | "ShutdownReport" => "serve",
        "shutdown_signal" => "signal",
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `engine/transport/nats.rs` is in
/// `engine`, `runtime.rs` in `runtime`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Every top-level module or root item named after `crate::` in `code`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for name in group[..end].split(',') {
                let name = name.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    found.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.insert(name);
        }
    }
    found
}

/// The code of a file without its comments, so that docs may name anything.
fn code_of(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("//") || l.starts_with("#[doc"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn imports_only_point_down_and_never_go_round() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).expect("read a source file"));
        if floor(&module) == 1 && code.contains("Runtime") {
            wrong.push(format!("{} (an engine) names `Runtime`", file.display()));
        }
        for name in references(&code) {
            let target = home_of_root_item(&name).map(str::to_string).unwrap_or(name.clone());
            if target == module || target == "__private_0_1" {
                continue;
            }
            if floor(&target) > floor(&module) {
                wrong.push(format!(
                    "{} (module {module}) imports `crate::{name}`, which is above it",
                    file.display()
                ));
            }
            graph.entry(module.clone()).or_default().insert(target);
        }
    }
    assert!(wrong.is_empty(), "imports that point up:\n{}", wrong.join("\n"));

    // No cycle among the top-level modules: a depth-first search that meets
    // a module on its own path has found one.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            return Some(format!("{} -> {node}", path[at..].join(" -> ")));
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {cycle}");
        }
    }
}
