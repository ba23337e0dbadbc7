//! The import graph of `src/`, measured: which top-level modules name which
//! (`crate::x` in code, comments left out), and the largest set of files
//! that all reach each other (a strongly connected component: none of them
//! can be understood, tested or replaced alone). The test is a ratchet: the
//! ceiling only comes down as the house is taken apart into layers (issue
//! 12 wants no circle over 4 files), and a change that ties more files into
//! one knot fails here with the knot printed. Reads files only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Today's largest circle; lower it when a change breaks one up.
const CEILING: usize = 3;

/// Module name → the top-level modules its files name.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.is_dir() {
            // A directory module (`config/`, `proto/`): all its files count as it.
            for inner in std::fs::read_dir(&path).expect("read dir") {
                let inner = inner.expect("entry").path();
                if inner.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&inner).expect("read");
                    files.push((stem.to_string(), text));
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") && stem != "lib" && stem != "main" {
            let text = std::fs::read_to_string(&path).expect("read");
            files.push((stem.to_string(), text));
        }
    }
    let names: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &files {
        let targets = edges.entry(module.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for name in crate_paths(code) {
                if names.contains(&name) && name != *module {
                    targets.insert(name);
                }
            }
        }
    }
    edges
}

/// The first path segment after every `crate::` in a line, including the
/// names inside `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(head);
            }
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// Strongly connected components (Tarjan), largest first.
fn knots(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        let empty = BTreeSet::new();
        let next: Vec<&'a str> = w
            .edges
            .get(v)
            .unwrap_or(&empty)
            .iter()
            .filter_map(|t| w.edges.get_key_value(t).map(|(k, _)| k.as_str()))
            .collect();
        for t in next {
            if !w.index.contains_key(t) {
                visit(w, t);
                let low = w.low[v].min(w.low[t]);
                w.low.insert(v, low);
            } else if w.on_stack.contains(t) {
                let low = w.low[v].min(w.index[t]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut knot = Vec::new();
            while let Some(t) = w.stack.pop() {
                w.on_stack.remove(t);
                knot.push(t.to_string());
                if t == v {
                    break;
                }
            }
            knot.sort();
            w.found.push(knot);
        }
    }
    let mut w = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    let mut found = w.found;
    found.sort_by_key(|k| std::cmp::Reverse(k.len()));
    found
}

#[test]
fn no_import_circle_grows_past_the_ceiling() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    let knots = knots(&edges);
    let largest = knots.first().map_or(0, Vec::len);
    let report: Vec<String> = knots
        .iter()
        .filter(|k| k.len() > 1)
        .map(|k| format!("{} files: {}", k.len(), k.join(", ")))
        .collect();
    println!("import circles:\n  {}", report.join("\n  "));
    assert!(
        largest <= CEILING,
        "an import circle of {largest} files (ceiling {CEILING}):\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn the_measure_sees_circles_and_groups() {
    assert_eq!(
        crate_paths("use crate::{engine::Engine, relay}; let x = crate::buf::held();"),
        ["engine", "relay", "buf"]
    );
    let mut edges = BTreeMap::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges
            .entry(from.to_string())
            .or_insert_with(BTreeSet::new)
            .insert(to.to_string());
        edges.entry(to.to_string()).or_insert_with(BTreeSet::new);
    }
    let knots = knots(&edges);
    assert_eq!(knots[0], ["a", "b", "c"]);
    assert!(knots.iter().skip(1).all(|k| k.len() == 1));
}

/// Every module `from` reaches by following imports.
fn reach(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for next in edges.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn the_reactor_and_the_data_below_it_name_no_role() {
    let edges = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The logic: the roles, the relay pump, the program.
    let logic = [
        "app",
        "backend",
        "frontend",
        "local",
        "public",
        "relay",
        "relay_stream",
        "reload",
        "report",
        "webserve",
    ];
    // The reactor, and the data and plumbing every layer above may use.
    let below = [
        "engine",
        "conn",
        "tunnel",
        "stream",
        "reply",
        "status",
        "conns",
        "timer",
        "net",
        "buf",
        "transport",
        "why",
        "tls",
        "proto",
        "config",
    ];
    for m in below {
        assert!(edges.contains_key(m), "no module {m}: update this test");
        let reached = reach(&edges, m);
        let named: Vec<&str> = logic
            .iter()
            .copied()
            .filter(|l| reached.contains(*l))
            .collect();
        assert!(named.is_empty(), "{m} reaches {named:?}");
    }
    // The protocol core stands alone: sans-IO, it names nothing outside it.
    let outside: Vec<&String> = edges["proto"].iter().collect();
    assert!(outside.is_empty(), "proto names {outside:?}");
}
