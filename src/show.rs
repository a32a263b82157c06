//! Views of a plan for people: a unified diff per file and a list of actions,
//! colored with ANSI codes (stripped by the caller's stream when not a terminal).

use std::fmt::Write;

use anstyle::{AnsiColor, Style};
use similar::{ChangeTag, TextDiff};

use crate::plan::{FileWrite, FollowUp, Plan, Step};

const ADD: Style = AnsiColor::Green.on_default();
const DEL: Style = AnsiColor::Red.on_default();
const CHG: Style = AnsiColor::Yellow.on_default();
const RUN: Style = AnsiColor::Cyan.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

fn owner(o: crate::desired::Owner) -> String {
    format!("{}:{}", o.user, o.group)
}

/// The whole plan as text.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "{BOLD}No changes.{BOLD:#} {} matches the spec.",
            plan.root
        );
    } else {
        let _ = writeln!(out, "{BOLD}mailsetup will change {}:{BOLD:#}\n", plan.root);
    }
    let (mut created, mut updated, mut actions) = (0, 0, 0);
    for step in &plan.steps {
        match step {
            Step::InstallPackages { packages } => {
                actions += 1;
                let _ = writeln!(
                    out,
                    "{RUN}! install {}{RUN:#} (apt-get, non-interactive, no recommends; \
                     Postfix's question answered \"No configuration\")",
                    packages.join(" ")
                );
            }
            Step::CreateDir {
                path,
                mode,
                owner: o,
                ..
            } => {
                created += 1;
                let _ = writeln!(
                    out,
                    "{ADD}+ create directory {path}{ADD:#} ({mode:04o} {})",
                    owner(*o)
                );
            }
            Step::FixMeta {
                path,
                from_mode,
                mode,
                owner: o,
                owner_changes,
                ..
            } => {
                updated += 1;
                let _ = write!(out, "{CHG}~ fix {path}{CHG:#}:");
                if from_mode != mode {
                    let _ = write!(out, " mode {from_mode:04o} → {mode:04o}");
                }
                if *owner_changes {
                    let _ = write!(out, " owner → {}", owner(*o));
                }
                out.push('\n');
            }
            Step::GenerateKey {
                set,
                selector,
                bits,
                private_path,
                ..
            } => {
                created += 1;
                let _ = writeln!(
                    out,
                    "{ADD}+ generate DKIM key {set}/{selector}{ADD:#} (RSA {bits}) at {private_path} (0600 opendkim:opendkim)"
                );
            }
            Step::CreateFile(f) => {
                created += 1;
                let _ = writeln!(
                    out,
                    "{ADD}+ create {}{ADD:#} ({:04o} {})",
                    f.path,
                    f.mode,
                    owner(f.owner)
                );
                diff(&mut out, f);
            }
            Step::UpdateFile(f) => {
                updated += 1;
                let _ = writeln!(
                    out,
                    "{CHG}~ update {}{CHG:#} ({:04o} {})",
                    f.path,
                    f.mode,
                    owner(f.owner)
                );
                diff(&mut out, f);
            }
            Step::RemoveFile { path, .. } => {
                updated += 1;
                let _ = writeln!(
                    out,
                    "{DEL}- remove {path}{DEL:#} (mailsetup wrote it; the spec no longer asks for it; backed up)"
                );
            }
            Step::ArchiveKey { set, selector } => {
                updated += 1;
                let _ = writeln!(
                    out,
                    "{DEL}- archive DKIM key {set}/{selector}{DEL:#} (its private key and record move to {}, 0700; rollback moves them back)",
                    crate::desired::archive_dir(set)
                );
            }
            Step::MoveKeySetState { set, .. } => {
                updated += 1;
                let _ = writeln!(
                    out,
                    "{CHG}~ move the state of key set {set}{CHG:#} (its rotation state and archived \
                     keys, from {} to {}: root's alone, where opendkim cannot write)",
                    crate::desired::key_dir(set),
                    crate::desired::keyset_state_dir(set)
                );
            }
            Step::AddToGroup { user, group } => {
                updated += 1;
                let _ = writeln!(
                    out,
                    "{CHG}~ add {user} to group {group}{CHG:#} (usermod -aG: its other groups are kept)"
                );
            }
            Step::FollowUp(FollowUp::Newaliases) => {
                actions += 1;
                let _ = writeln!(out, "{RUN}! run newaliases{RUN:#}");
            }
            Step::FollowUp(FollowUp::Postmap { path }) => {
                actions += 1;
                let _ = writeln!(out, "{RUN}! run postmap {path}{RUN:#}");
            }
            Step::FollowUp(FollowUp::Service { service, action }) => {
                actions += 1;
                let _ = writeln!(
                    out,
                    "{RUN}! {} {}{RUN:#} (if running)",
                    serde_json::to_value(action)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?"),
                    serde_json::to_value(service)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?"),
                );
            }
        }
    }
    if !plan.is_empty() {
        let _ = writeln!(
            out,
            "\n{BOLD}Plan:{BOLD:#} {created} to create, {updated} to change, {actions} to run."
        );
    }
    for note in &plan.notes {
        let _ = writeln!(out, "{DIM}note: {note}{DIM:#}");
    }
    out
}

/// A unified diff of one file, indented; credentials are never shown.
fn diff(out: &mut String, f: &FileWrite) {
    if f.secret {
        // Compared on the host, where both versions are; only the verdict shows.
        let what = if f.old.is_some() {
            "credentials changed; content hidden"
        } else {
            "content hidden: it holds credentials"
        };
        let _ = writeln!(out, "    {DIM}({what}){DIM:#}");
        return;
    }
    let old = f
        .old
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let text = TextDiff::from_lines(old.as_ref(), f.new.as_str());
    let _ = writeln!(out, "    {DEL}--- {} (now){DEL:#}", f.path);
    let _ = writeln!(out, "    {ADD}+++ {} (planned){ADD:#}", f.path);
    for hunk in text.unified_diff().context_radius(3).iter_hunks() {
        let _ = writeln!(out, "    {RUN}{}{RUN:#}", hunk.header());
        for change in hunk.iter_changes() {
            let (sign, style) = match change.tag() {
                ChangeTag::Delete => ('-', DEL),
                ChangeTag::Insert => ('+', ADD),
                ChangeTag::Equal => (' ', Style::new()),
            };
            let line = change.value();
            let _ = write!(
                out,
                "    {style}{sign}{}{style:#}",
                line.trim_end_matches('\n')
            );
            out.push('\n');
            if change.missing_newline() {
                let _ = writeln!(out, "    \\ No newline at end of file");
            }
        }
    }
}
