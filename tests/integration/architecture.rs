//! The layout ARCHITECTURE.md describes, checked on the source itself, so it
//! stays true: only `host/` touches files, processes and the system calls,
//! and no module imports one that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of src/ (a file, or a directory's files together; the crate
/// root as `lib` and `main`) with its code: comments and the unit tests
/// (`mod tests`, at the end of a file) left out.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::<String, String>::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let module = rel.split('/').next().unwrap().trim_end_matches(".rs");
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.entry(module.to_string())
                .or_default()
                .push_str(&code.join("\n"));
        }
    }
    out
}

/// `module: pattern` for each of `patterns` in a module other than `owner`.
fn found_outside(owner: &str, patterns: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (module, code) in modules().into_iter().filter(|(m, _)| m != owner) {
        for pattern in patterns.iter().filter(|p| code.contains(**p)) {
            found.push(format!("{module}: {pattern}"));
        }
    }
    found
}

#[test]
fn only_the_host_module_touches_the_host() {
    let mut found = Vec::new();
    for (module, code) in modules().into_iter().filter(|(m, _)| m != "host") {
        let from_std = uses(&code, "std");
        if from_std.contains("fs") {
            found.push(format!("{module}: std::fs"));
        }
        // A process's exit code is no host access; running one is.
        if from_std.contains("process")
            && code
                .match_indices("process::")
                .any(|(i, _)| !code[i + "process::".len()..].starts_with("ExitCode"))
        {
            found.push(format!("{module}: std::process"));
        }
        for other in ["nix", "tempfile"] {
            if !uses(&code, other).is_empty() {
                found.push(format!("{module}: {other}"));
            }
        }
    }
    assert!(found.is_empty(), "host access outside src/host/: {found:?}");
    assert!(
        uses(&modules()["host"], "std").contains("fs"),
        "the check looks at the wrong tree"
    );
}

/// The first names of the paths a module uses under `root` (`crate`, `std`,
/// a crate's name): `a` of `root::a::b`, and `a`, `d`, `f` of
/// `use root::{a::{b, c}, d as e, f::g}`.
fn uses<'a>(code: &'a str, root: &str) -> BTreeSet<&'a str> {
    let prefix = format!("{root}::");
    let mut used = BTreeSet::new();
    for (i, _) in code.match_indices(&prefix) {
        // A path's start, not the end of a longer name (`mycrate::`).
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            used.extend(group_heads(group));
        } else {
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            used.insert(&rest[..end]);
        }
    }
    used
}

/// The first name of each path in a `use …::{…}` group (`group` starts
/// after its `{`): `a`, `d`, `f` of `a::{b, c}, d as e, f::g}`.
fn group_heads(group: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    heads
        .into_iter()
        .filter_map(|path| path.trim().split(['{', ':', ' ']).next())
        .filter(|head| !head.is_empty())
        .collect()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules();
    let imports: BTreeMap<&str, BTreeSet<&str>> = modules
        .iter()
        .map(|(module, code)| {
            let mut used = uses(code, "crate");
            used.retain(|m| modules.contains_key(*m) && m != module);
            (module.as_str(), used)
        })
        .collect();
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(m) = stack.pop() {
            for next in &imports[m] {
                if *next == to {
                    return true;
                }
                if seen.insert(*next) {
                    stack.push(next);
                }
            }
        }
        false
    };
    let cycles: Vec<String> = imports
        .iter()
        .flat_map(|(m, used)| used.iter().map(move |u| (*m, *u)))
        .filter(|(m, u)| reaches(u, m))
        .map(|(m, u)| format!("{m} -> {u} -> … -> {m}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
    assert!(
        imports["job"].contains("plan"),
        "the check finds no imports"
    );
    assert!(
        imports["ci"].contains("bundle"),
        "`use crate::{{bundle as …}}` is missed"
    );
    assert_eq!(group_heads("a::{b, c}, d as e, f::g};"), ["a", "d", "f"]);
}

#[test]
fn only_the_ui_writes_to_the_terminal() {
    const TERMINAL: &[&str] = &[
        "println!",
        "print!(",
        "eprint",
        "anstream::std",
        "io::stdout",
        "io::stderr",
    ];
    let found = found_outside("ui", TERMINAL);
    assert!(
        modules()["ui"].contains("io::stdout"),
        "the check looks at the wrong tree"
    );
    assert!(
        found.is_empty(),
        "terminal output outside src/ui.rs: {found:?}"
    );
}
