//! The layout ARCHITECTURE.md describes, checked on the source itself, so it
//! stays true: only `host/` touches files, processes and the system calls,
//! and no module imports one that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of src/ (a file, or a directory's files together) with its
/// code: comments and the unit tests (from `#[cfg(test)]` on) left out.
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
            // The crate root declares every module and runs the commands.
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
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
    const HOST_ACCESS: &[&str] = &[
        "std::fs",
        "std::os::unix::fs",
        "std::process::Command",
        "Command::new",
        "nix::",
        "tempfile::",
        "OpenOptions",
    ];
    let found = found_outside("host", HOST_ACCESS);
    assert!(found.is_empty(), "host access outside src/host/: {found:?}");
    assert!(
        modules()["host"].contains("std::fs"),
        "the check looks at the wrong tree"
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules();
    let imports: BTreeMap<&str, BTreeSet<&str>> = modules
        .iter()
        .map(|(module, code)| {
            let mut used = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                if rest.starts_with('{') {
                    // `use crate::{a, b::c, …}`
                    let group = &rest[1..rest.find('}').unwrap()];
                    used.extend(
                        group
                            .split(',')
                            .map(|p| p.trim().split("::").next().unwrap()),
                    );
                } else {
                    let end = rest
                        .find(|c: char| !c.is_alphanumeric() && c != '_')
                        .unwrap_or(rest.len());
                    used.insert(&rest[..end]);
                }
            }
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
        found.is_empty(),
        "terminal output outside src/ui.rs: {found:?}"
    );
}
