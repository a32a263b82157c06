//! The README cannot drift from the program. Every `mailsetup …` line in its
//! shell blocks must be a command line the CLI accepts (flags and commands
//! as they are now). The blocks marked `<!-- readme-test: run -->` run for
//! real, in order, in one temporary directory (with a copy of examples/) and
//! one temporary `--root`, each command exiting 0 — or the code its comment
//! names (`# exit 1`); `spec=FILE` in the marker runs them with FILE for
//! `mailsetup.yaml`. A block marked `<!-- readme-test: output -->` must be
//! what the command before it printed (whitespace aside, `…` for any text).

use std::path::Path;

use clap::{CommandFactory, Parser};
use mailsetup::cli::Cli;

use crate::support::path_str;

/// A fenced block of the README: its language, marker and lines.
struct Block {
    line: usize,
    lang: String,
    marker: Option<String>,
    lines: Vec<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut marker = None;
    let mut open: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.starts_with("```") {
                out.push(open.take().expect("open"));
            } else {
                block.lines.push(line.to_string());
            }
            continue;
        }
        if let Some(fence) = line.strip_prefix("```") {
            open = Some(Block {
                line: i + 1,
                lang: fence.trim().to_string(),
                marker: marker.take(),
                lines: Vec::new(),
            });
        } else if let Some(m) = line
            .strip_prefix("<!-- readme-test:")
            .and_then(|m| m.strip_suffix("-->"))
        {
            marker = Some(m.trim().to_string());
        } else if !line.trim().is_empty() {
            marker = None;
        }
    }
    out
}

/// A command of a shell block: its README line, words after `mailsetup`,
/// and the exit code its comment names.
struct Command {
    line: usize,
    words: Vec<String>,
    exit: i32,
}

/// The `mailsetup` lines of a shell block: `sudo` dropped, continuation
/// lines joined, comments cut, shell variables and `$(…)` as a stand-in word.
fn commands(block: &Block) -> Vec<Command> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for (i, raw) in block.lines.iter().enumerate() {
        if let Some(start) = raw.strip_suffix('\\') {
            pending += start;
            continue;
        }
        let line = std::mem::take(&mut pending) + raw;
        let line = line.trim();
        let line = line.strip_prefix("sudo ").unwrap_or(line);
        // The README's first command runs the binary through cargo.
        let line = line
            .strip_prefix("cargo run --release -- ")
            .map(|l| format!("mailsetup {l}"))
            .unwrap_or_else(|| line.to_string());
        let Some(rest) = line.strip_prefix("mailsetup ") else {
            continue;
        };
        let (code, comment) = match rest.split_once(" #") {
            Some((code, comment)) => (code, comment),
            None => (rest, ""),
        };
        let exit = comment
            .split_once("exit ")
            .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push(Command {
            line: block.line + i + 1,
            words: words(code),
            exit,
        });
    }
    out
}

/// Shell words: quotes removed, `$VAR`, `${VAR}` and `$(…)` as `X`.
fn words(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('$', _) => {
                match chars.peek() {
                    Some('(') => {
                        let mut depth = 0;
                        for c in chars.by_ref() {
                            match c {
                                '(' => depth += 1,
                                ')' if depth == 1 => break,
                                ')' => depth -= 1,
                                _ => {}
                            }
                        }
                    }
                    Some('{') => while chars.next().is_some_and(|c| c != '}') {},
                    _ => {
                        while chars
                            .next_if(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .is_some()
                        {}
                    }
                }
                word.push('X');
            }
            (' ' | '\t', None) => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            (c, _) => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

#[test]
fn every_command_in_the_readme_is_one_the_cli_accepts() {
    let mut seen = 0;
    for block in blocks(&readme()).iter().filter(|b| b.lang == "sh") {
        for cmd in commands(block) {
            seen += 1;
            let argv = std::iter::once("mailsetup".to_string()).chain(cmd.words.clone());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!(
                    "README.md:{}: `mailsetup {}` is not accepted:\n{e}",
                    cmd.line,
                    cmd.words.join(" ")
                );
            }
        }
    }
    assert!(seen > 30, "only {seen} commands found in the README");
}

/// Whether `words` (a subcommand and its arguments) name a command that
/// takes `--root`.
fn takes_root(words: &[String]) -> bool {
    let mut cmd = Cli::command();
    for w in words {
        match cmd.find_subcommand(w) {
            Some(sub) => cmd = sub.clone(),
            None => break,
        }
    }
    cmd.get_arguments().any(|a| a.get_id() == "root")
}

/// What the README's runnable blocks do, as the README says.
#[test]
fn the_readme_runs_as_written() {
    let work = tempfile::tempdir().unwrap();
    let root = crate::support::root();
    let r = path_str(root.path()).to_string();
    let examples = work.path().join("examples");
    std::fs::create_dir(&examples).unwrap();
    for name in crate::support::examples() {
        std::fs::copy(crate::support::example(&name), examples.join(&name)).unwrap();
    }
    let mut last = String::new();
    let mut ran = 0;
    for block in blocks(&readme()) {
        let Some(marker) = &block.marker else {
            continue;
        };
        if marker == "output" {
            let said = last.replace(&format!(" --root {r}"), "");
            assert!(
                matches(&block.lines.join("\n"), &said),
                "README.md:{}: the README shows\n{}\nbut the command printed\n{said}",
                block.line,
                block.lines.join("\n")
            );
            continue;
        }
        let spec = marker
            .split(", ")
            .find_map(|o| o.strip_prefix("spec="))
            .unwrap_or("mailsetup.yaml");
        for cmd in commands(&block) {
            let mut words: Vec<String> = cmd
                .words
                .iter()
                .map(|w| {
                    if w == "mailsetup.yaml" {
                        spec.to_string()
                    } else {
                        w.clone()
                    }
                })
                .collect();
            // `check` asks DNS servers: only parsed (above), never run here.
            if words[0] == "check" {
                continue;
            }
            if takes_root(&words) && !words.iter().any(|w| w == "--root") {
                words.extend(["--root".to_string(), r.clone()]);
            }
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailsetup"))
                .args(&words)
                .current_dir(work.path())
                .env("NO_COLOR", "1")
                .env("SOURCE_DATE_EPOCH", "1764590400")
                .output()
                .unwrap();
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                out.status.code(),
                Some(cmd.exit),
                "README.md:{}: `mailsetup {}`:\n{last}",
                cmd.line,
                words.join(" ")
            );
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} README commands ran");
}

/// Whether `said` holds `shown` (the README's text): whitespace runs are
/// one space, `…` stands for any text.
fn matches(shown: &str, said: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = norm(said);
    let mut at = 0;
    for part in norm(shown).split('…') {
        let part = part.trim();
        match said[at..].find(part) {
            Some(i) => at += i + part.len(),
            None => return false,
        }
    }
    true
}

/// The README's exit-code table says what the program's own list says.
#[test]
fn the_readme_lists_every_exit_code() {
    let readme = readme();
    for (code, meaning) in mailsetup::exit::Exit::MEANINGS {
        let row = format!("| {code} | {meaning} |");
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
}
