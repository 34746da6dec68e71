//! The layout's rules (ARCHITECTURE.md), read from the source itself:
//!
//! - `session/` never reaches into `output` or `kernel`; `kernel/` never
//!   into `output` or `session`.
//! - Only `kernel/` writes `unsafe` or calls `libc`.
//! - No circle: between the rooms and top-level modules of `src/`, nor
//!   between the files of one room.
//!
//! A module's dependencies are the `crate::` and `super::` paths its code
//! names (in `use` trees and inline), tests included.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Module path (`kernel::loader`, `session`, `event`) → its source.
fn modules() -> BTreeMap<Vec<String>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = module_of(&root, &path);
                let text = std::fs::read_to_string(&path).expect("source is readable");
                found.insert(module, text);
            }
        }
    }
    found
}

fn module_of(root: &Path, path: &Path) -> Vec<String> {
    let relative: PathBuf = path
        .strip_prefix(root)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a source file without comments and string literals, and the
/// line (0-based) where its `#[cfg(test)] mod tests` begins, if any.
fn code_of(text: &str) -> (String, Option<usize>) {
    let mut code = String::new();
    let mut tests_at = None;
    for (n, line) in text.lines().enumerate() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        // Strings may hold `crate::` in messages; they are not paths.
        let mut kept = String::new();
        let mut in_string = false;
        let mut previous = ' ';
        for c in line.chars() {
            if c == '"' && previous != '\\' && previous != '\'' {
                in_string = !in_string;
            } else if !in_string {
                kept.push(c);
            }
            previous = c;
        }
        if tests_at.is_none() && kept.trim_start().starts_with("mod tests") {
            tests_at = Some(n);
        }
        code.push_str(&kept);
        code.push('\n');
    }
    (code, tests_at)
}

/// Every path the code names from the crate root: `use` trees expanded,
/// inline `crate::`/`super::` paths, `super::` resolved against `module`
/// (one level deeper inside the test module). Each with whether the test
/// module names it.
fn paths(module: &[String], is_mod_rs: bool, text: &str) -> Vec<(Vec<String>, bool)> {
    let (code, tests_at) = code_of(text);
    // Where the test module starts, as a byte offset into `code`.
    let tests_from = tests_at.map(|line| {
        code.split_inclusive('\n')
            .take(line + 1)
            .map(str::len)
            .sum::<usize>()
    });
    let in_tests = |offset: usize| tests_from.is_some_and(|t| offset >= t);
    let base_at = |offset: usize| {
        let mut base: Vec<String> = module.to_vec();
        if in_tests(offset) {
            base.push("tests".into());
        } else if is_mod_rs {
            base.push("mod".into());
        }
        base
    };
    let mut found = Vec::new();
    let tokens = tokenize(&code);
    let mut i = 0;
    while i < tokens.len() {
        let (offset, token) = &tokens[i];
        if token == "use" {
            let end = tokens[i..]
                .iter()
                .position(|(_, t)| t == ";")
                .map_or(tokens.len(), |n| i + n);
            let tree: Vec<&str> = tokens[i + 1..end].iter().map(|(_, t)| t.as_str()).collect();
            for path in expand(&tree) {
                if let Some(resolved) = resolve(&base_at(*offset), &path) {
                    found.push((resolved, in_tests(*offset)));
                }
            }
            i = end + 1;
            continue;
        }
        let follows_path = i > 0 && tokens[i - 1].1 == "::";
        if (token == "crate" || token == "super") && !follows_path {
            // An inline path: segments joined by `::`.
            let mut path = vec![token.clone()];
            let mut j = i + 1;
            while j + 1 < tokens.len() && tokens[j].1 == "::" && is_ident(&tokens[j + 1].1) {
                path.push(tokens[j + 1].1.clone());
                j += 2;
            }
            if let Some(resolved) = resolve(&base_at(*offset), &path) {
                found.push((resolved, in_tests(*offset)));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found
}

fn is_ident(token: &str) -> bool {
    token.chars().all(|c| c.is_alphanumeric() || c == '_') && !token.is_empty()
}

/// Identifiers and the punctuation of paths, with their byte offsets.
fn tokenize(code: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = String::from(c);
            while let Some(&(_, next)) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    word.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push((at, word));
        } else if c == ':' && chars.peek().is_some_and(|&(_, n)| n == ':') {
            chars.next();
            tokens.push((at, "::".into()));
        } else if !c.is_whitespace() {
            tokens.push((at, c.to_string()));
        }
    }
    tokens
}

/// The leaf paths of a `use` tree: `crate::a::{b, c::{d, e}}` gives
/// `crate::a::b`, `crate::a::c::d`, `crate::a::c::e` (`self` names the
/// prefix, `*` and `as x` are dropped).
fn expand(tree: &[&str]) -> Vec<Vec<String>> {
    fn parse(tree: &[&str], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        while *at < tree.len() {
            match tree[*at] {
                "::" => *at += 1,
                "{" => {
                    *at += 1;
                    loop {
                        parse(tree, at, &path, out);
                        match tree.get(*at) {
                            Some(&",") => *at += 1,
                            Some(&"}") => {
                                *at += 1;
                                return;
                            }
                            _ => return,
                        }
                        if tree.get(*at) == Some(&"}") {
                            *at += 1;
                            return;
                        }
                    }
                }
                "," | "}" => break,
                "as" => *at += 2,
                "*" => *at += 1,
                "self" => *at += 1,
                word => {
                    path.push(word.to_owned());
                    *at += 1;
                }
            }
        }
        out.push(path);
    }
    let mut out = Vec::new();
    let mut at = 0;
    let tree = tree.strip_prefix(&["pub"][..]).unwrap_or(tree);
    parse(tree, &mut at, &[], &mut out);
    out
}

/// An absolute module path for `path` as seen from `base` (`base` is the
/// module a `super` is relative to, with a last element to drop).
fn resolve(base: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut segments = path.iter().peekable();
    let mut at: Vec<String> = match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("super") => base.to_vec(),
        _ => return None,
    };
    while segments.peek().is_some_and(|s| *s == "super") {
        segments.next();
        at.pop()?;
    }
    at.extend(segments.cloned());
    Some(at)
}

/// The longest module that is a prefix of `path`.
fn target(modules: &BTreeMap<Vec<String>, String>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// Which module each module uses (itself left out).
fn edges(modules: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = BTreeMap::new();
    for (module, text) in modules {
        let is_mod_rs = root.join(module.join("/")).join("mod.rs").exists();
        for (path, in_tests) in paths(module, is_mod_rs, text) {
            // A file's test module is a module of its own: a test helper
            // that uses the module it helps to test makes no circle.
            let from = match in_tests {
                true => [module.as_slice(), &["tests".to_owned()]].concat(),
                false => module.clone(),
            };
            let used: &mut BTreeSet<Vec<String>> = edges.entry(from).or_default();
            if let Some(target) = target(modules, &path)
                && &target != module
            {
                used.insert(target);
            }
        }
        edges.entry(module.clone()).or_default();
    }
    edges
}

fn room(module: &[String]) -> String {
    module.first().cloned().unwrap_or_else(|| "(crate)".into())
}

/// A circle in `graph`, if there is one, as the nodes along it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut found = stack[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(found) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(found);
        }
    }
    None
}

#[test]
fn session_and_kernel_keep_to_their_side() {
    let modules = modules();
    let edges = edges(&modules);
    let forbidden = [
        ("session", ["output", "kernel"]),
        ("kernel", ["output", "session"]),
    ];
    let mut broken = Vec::new();
    for (module, used) in &edges {
        for (from, never) in &forbidden {
            if room(module) != *from {
                continue;
            }
            for target in used {
                if never.contains(&room(target).as_str()) {
                    broken.push(format!("{} uses {}", module.join("::"), target.join("::")));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the rules of ARCHITECTURE.md are broken: {broken:#?}"
    );
    // The checker sees what it should: the pipeline uses all three rooms.
    let pipeline = &edges[&vec!["pipeline".to_owned()]];
    for expected in ["kernel", "session", "output"] {
        assert!(
            pipeline.iter().any(|m| room(m) == expected),
            "pipeline seems not to use {expected}: {pipeline:?}"
        );
    }
}

#[test]
fn no_circles_between_rooms_or_between_the_files_of_a_room() {
    let modules = modules();
    let edges = edges(&modules);
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, used) in &edges {
        // The crate root and main declare everything; they are the top.
        if module.is_empty() || module == &["main".to_owned()] {
            continue;
        }
        let from = room(module);
        rooms.entry(from.clone()).or_default();
        for target in used {
            let to = room(target);
            if target.is_empty() || to == "main" {
                continue;
            }
            if to != from {
                rooms.entry(from.clone()).or_default().insert(to);
            } else if module.len() > 1 && target.len() > 1 {
                // Between two files of the room (its mod.rs only declares).
                files
                    .entry(from.clone())
                    .or_default()
                    .entry(module.join("::"))
                    .or_default()
                    .insert(target.join("::"));
            }
        }
    }
    assert!(rooms.len() > 8, "too few rooms found: {rooms:?}");
    if let Some(found) = circle(&rooms) {
        panic!("a circle between rooms: {}", found.join(" -> "));
    }
    for (room, graph) in &files {
        if let Some(found) = circle(graph) {
            panic!("a circle in {room}/: {}", found.join(" -> "));
        }
    }
}

#[test]
fn only_the_kernel_room_writes_unsafe_or_calls_libc() {
    let mut broken = Vec::new();
    for (module, text) in modules() {
        if room(&module) == "kernel" {
            continue;
        }
        let (code, _) = code_of(&text);
        for (n, line) in code.lines().enumerate() {
            if line.contains("unsafe ") || line.contains("unsafe{") || line.contains("libc::") {
                broken.push(format!("{}:{}: {}", module.join("/"), n + 1, line.trim()));
            }
        }
    }
    assert!(broken.is_empty(), "outside kernel/: {broken:#?}");
}

#[test]
fn the_checker_finds_a_circle_and_a_broken_rule() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circle(&graph).unwrap().len(), 4);
    let base: Vec<String> = vec!["session".into(), "cause".into()];
    let path = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(
        resolve(&base, &path("super::model::Session")),
        Some(path("session::model::Session"))
    );
    assert_eq!(
        resolve(&base, &path("crate::output::Output")),
        Some(path("output::Output"))
    );
    let module = vec!["session".to_owned(), "x".to_owned()];
    let text = "use crate::{\n    event::X,\n    kernel::{\n        clock::W,\n        decode::{self, D},\n    },\n};\nuse super::model::{A, B as C};\nfn f() { crate::kernel::decode::used_len(&[]); }\n// crate::lines in a comment\nlet s = \"crate::strings\";\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::script::S;\n}\n";
    let found: Vec<Vec<String>> = paths(&module, false, text)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        found,
        [
            path("event::X"),
            path("kernel::clock::W"),
            path("kernel::decode"),
            path("kernel::decode::D"),
            path("session::model::A"),
            path("session::model::B"),
            path("kernel::decode::used_len"),
            path("session::x"),
            path("session::script::S"),
        ]
    );
}
