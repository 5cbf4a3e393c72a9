//! No crate of the workspace has modules that import each other in a circle.
//!
//! Reads each crate's sources and builds the graph of its modules (one per file): an edge
//! `a → b` for every `crate::…`, `super::…`, `self::…` or `child::…` path in `a` (in `use`
//! items, groups expanded, and inline), resolved to the longest module prefix it names.
//! Comments, string literals and `#[cfg(test)] mod tests` are left out: tests may reach
//! anywhere. A parent that declares a child is not an edge by itself, but a parent using its
//! child's items is, so a `mod.rs` that holds items its children use is a circle: such items
//! belong in a sibling.
//!
//! This is a textual reading of Rust, not the compiler's: it knows the path forms this crate
//! writes (no `extern crate` aliases, no `#[path]`), and a path it cannot resolve to a module
//! file counts as an edge to the closest module it names. An inline `mod x { … }` other than
//! tests is read as part of its file (so its `super::` is taken to mean the file's parent).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments and string contents blanked, cut where its test module begins.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|&b| b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if rest.starts_with("'\"'") {
            i += 3;
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    // `#[cfg(test)]`, any further attributes, then `mod tests`.
    let mut from = 0;
    while let Some(pos) = out[from..].find("#[cfg(test)]") {
        let at = from + pos;
        let mut rest = out[at + "#[cfg(test)]".len()..].trim_start();
        while rest.starts_with("#[") {
            rest = rest[rest.find(']').map_or(rest.len(), |e| e + 1)..].trim_start();
        }
        if rest.starts_with("mod tests") {
            out.truncate(at);
            break;
        }
        from = at + 1;
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every path starting at `at` (just after `crate::`, `super::` or `self::`), groups expanded.
fn paths_at(code: &str, mut at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let bytes = code.as_bytes();
    let mut path = prefix;
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return at + 1;
                }
                at = paths_at(code, at, path.clone(), out);
            }
        }
        let start = at;
        while at < bytes.len() && is_ident(bytes[at]) {
            at += 1;
        }
        if at > start {
            let ident = &code[start..at];
            if ident != "self" {
                path.push(ident.to_owned());
            }
        }
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            out.push(path);
            return at;
        }
    }
}

fn edges_of(module: &Module, code: &str, modules: &BTreeSet<Module>) -> BTreeSet<Module> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (root, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
        ("self::", module.clone()),
    ] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(root) {
            let at = from + pos;
            from = at + root.len();
            if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            // `super::super::x`
            let mut base = base.clone();
            let mut after = from;
            while root == "super::" && code[after..].starts_with("super::") {
                base.pop();
                after += "super::".len();
            }
            paths_at(code, after, base, &mut found);
        }
    }
    // A child named by its bare name (`mod jobs;` … `jobs::Service`).
    for child in modules
        .iter()
        .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
    {
        let name = format!("{}::", child[module.len()]);
        let mut from = 0;
        while let Some(pos) = code[from..].find(&name) {
            let at = from + pos;
            from = at + name.len();
            if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            paths_at(code, at, module.clone(), &mut found);
        }
    }
    let mut edges = BTreeSet::new();
    for path in found {
        let target = (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
            .unwrap_or_default();
        if &target != module {
            edges.insert(target);
        }
    }
    edges
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let Some((w, _)) = graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[w].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.index[w].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn graph_of(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| f.file_name().is_none_or(|n| n != "tests.rs"));
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    files
        .iter()
        .map(|f| {
            let module = module_of(src, f);
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let edges = edges_of(&module, &code_only(&text), &modules);
            (module, edges)
        })
        .collect()
}

fn show(m: &Module) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = Vec::new();
    // The node is held to the strict rule. The other crates still let a child use what its
    // parent module defines (a `mod.rs` holding a protocol's shared error and types, the usual
    // Rust layout); any other circle fails there too.
    for (krate, strict) in [
        ("proto", false),
        ("mpc", false),
        ("dp", false),
        ("node", true),
        ("cli", false),
    ] {
        let src = root.join(krate).join("src");
        let mut graph = graph_of(&src);
        if !strict {
            for (module, edges) in &mut graph {
                edges.retain(|target| !module.starts_with(target));
            }
        }
        assert!(
            graph.len() >= 2,
            "found only {} modules in {src:?}",
            graph.len()
        );
        for c in circles(&graph) {
            let inside: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("  {} → {}", show(a), show(b)))
                })
                .collect();
            let names: Vec<String> = c.iter().map(show).collect();
            text.push(format!(
                "{krate}: {}\n{}",
                names.join(" ⇄ "),
                inside.join("\n")
            ));
        }
    }
    assert!(text.is_empty(), "import circles:\n{}", text.join("\n"));
}

#[test]
fn the_reader_finds_a_circle_where_there_is_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c;\n").expect("write");
    std::fs::write(
        src.join("a/mod.rs"),
        "mod inner;\npub(crate) struct A; // crate::c::C is a comment\n",
    )
    .expect("write");
    std::fs::write(
        src.join("a/inner.rs"),
        "use super::super::{b::{self, B}};\nconst S: &str = \"crate::c\";\n",
    )
    .expect("write");
    std::fs::write(src.join("b.rs"), "fn f() -> crate::a::A { crate::a::A }\n").expect("write");
    std::fs::write(src.join("c.rs"), "use crate::b::B;\n").expect("write");
    let graph = graph_of(src);
    let a_inner = vec!["a".to_owned(), "inner".to_owned()];
    assert_eq!(
        graph[&a_inner],
        BTreeSet::from([vec!["b".to_owned()]]),
        "a comment or a string is not an import"
    );
    // a::inner → b → a is no circle: `a` declares `inner` but does not use it.
    assert!(circles(&graph).is_empty(), "{:?}", circles(&graph));
    std::fs::write(src.join("a/mod.rs"), "mod inner;\nuse self::inner::X;\n").expect("write");
    std::fs::write(src.join("b.rs"), "fn f() -> crate::a::A { crate::a::A }\n").expect("write");
    let graph = graph_of(src);
    let found = circles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].len(), 3, "a → a::inner → b → a: {found:?}");
    // The same through the child's bare name.
    std::fs::write(src.join("a/mod.rs"), "mod inner;\nfn f() { inner::g() }\n").expect("write");
    assert_eq!(circles(&graph_of(src)).len(), 1);
}
