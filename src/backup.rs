//! Backups: before an apply changes anything, the files it will replace are
//! copied under /var/lib/mailsetup/backups/<time>/, with a manifest saying which
//! files existed. `rollback` puts the newest backup back.
//! The first time mailsetup takes over a file, a copy also goes to
//! /var/lib/mailsetup/originals/, which is never overwritten.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::desired::{Effect, KeyPath};
use crate::host::{Host, HostMut, Ids, Lock, System};
use crate::plan::FollowUp;
use crate::state::{BACKUPS, ORIGINALS, ensure_state_dir, read_applied, stage_applied};

const MANIFEST: &str = "manifest.json";
/// A backup that was rolled back gets this suffix and is not used again.
const DONE: &str = ".rolled-back";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    /// Mode and owner before; `None` when the file did not exist.
    pub before: Option<Before>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Before {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub created: String,
    pub entries: Vec<Entry>,
    /// What the apply ran after writing; a rollback runs it again.
    pub follow_ups: Vec<FollowUp>,
    /// Keys the apply moved into their set's archive (`rotate finish`); a
    /// rollback moves them back. Named by set and selector: the paths are
    /// derived again, never read from the manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archived: Vec<Archived>,
    /// The spec file the apply came from, if one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::plan::Origin>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    pub set: String,
    pub selector: String,
}

/// Saves the current state of `paths` and which keys will be `archived`, and
/// returns the backup's directory.
pub fn save(
    system: &System,
    paths: &[&str],
    archived: &[Archived],
    follow_ups: &[FollowUp],
    origin: Option<&crate::plan::Origin>,
) -> Result<String> {
    ensure_state_dir(system)?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.9fZ")
        .to_string();
    let dir = format!("{BACKUPS}/{stamp}");
    system.create_dir(&dir, 0o700, None)?;
    // A half-made backup (a full disk) is removed: it could not be rolled back to.
    save_into(system, &dir, &stamp, paths, archived, follow_ups, origin).inspect_err(|_| {
        let _ = system.remove_tree(&dir);
    })?;
    Ok(dir)
}

fn save_into(
    system: &System,
    dir: &str,
    stamp: &str,
    paths: &[&str],
    archived: &[Archived],
    follow_ups: &[FollowUp],
    origin: Option<&crate::plan::Origin>,
) -> Result<()> {
    let mut entries = Vec::new();
    for path in paths {
        let state = system.read_file(path)?;
        if let Some(state) = &state {
            let copy = format!("{dir}/files{path}");
            make_parents(system, &copy)?;
            system.write_file(&copy, &state.content, 0o600, None)?;
            let original = format!("{ORIGINALS}{path}");
            if system.read_file(&original)?.is_none() {
                make_parents(system, &original)?;
                system.write_file(&original, &state.content, 0o600, None)?;
            }
        }
        entries.push(Entry {
            path: path.to_string(),
            before: state.map(|s| Before {
                mode: s.meta.mode,
                uid: s.meta.uid,
                gid: s.meta.gid,
            }),
        });
    }
    let manifest = Manifest {
        created: stamp.to_string(),
        entries,
        follow_ups: follow_ups.to_vec(),
        archived: archived.to_vec(),
        origin: origin.cloned(),
    };
    system.write_file(
        &format!("{dir}/{MANIFEST}"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
        0o600,
        None,
    )
}

fn make_parents(system: &System, target: &str) -> Result<()> {
    let (parent, _) = target.rsplit_once('/').expect("an absolute path");
    system.create_dirs(parent)
}

/// Reads a backup's manifest.
pub fn manifest(system: &impl Host, dir: &str) -> Result<Manifest> {
    let manifest_path = format!("{dir}/{MANIFEST}");
    let text = system
        .read_file(&manifest_path)?
        .with_context(|| format!("{manifest_path} is missing"))?;
    serde_json::from_slice(&text.content).with_context(|| format!("read {manifest_path}"))
}

/// Restores the files of one backup, all or nothing: every file is first
/// staged beside its place (with `applied.json`), which is where a full disk
/// stops it with nothing changed; then all are renamed into place and the
/// files the apply created removed. Should a rename fail, the error says
/// which files were put back and which were not. Returns the manifest.
pub fn restore(system: &System, _held: &Lock, dir: &str) -> Result<Manifest> {
    let manifest = manifest(system, dir)?;
    let mut applied = read_applied(system)?;
    let mut staged = Vec::new();
    let mut removed = Vec::new();
    for entry in &manifest.entries {
        // What mailsetup wrote is now what the backup held.
        applied.remove(&entry.path);
        let Some(before) = entry.before else {
            removed.push(entry.path.clone());
            continue;
        };
        let copy = system
            .read_file(&format!("{dir}/files{}", entry.path))?
            .with_context(|| format!("the backup of {} is missing", entry.path))?;
        let ids = system.can_chown().then_some(Ids {
            uid: before.uid,
            gid: before.gid,
        });
        let file = system
            .stage_file(&entry.path, &copy.content, before.mode, ids)
            .with_context(|| {
                format!(
                    "stage {} for the rollback; nothing was restored, every file is as the \
                     last apply left it",
                    entry.path
                )
            })?;
        staged.push((entry.path.clone(), file));
        if let Some(table) = crate::desired::managed_file(&entry.path) {
            applied.insert(
                entry.path.clone(),
                crate::plan::applied_digest(&copy.content, table.secret)?,
            );
        }
    }
    let applied = stage_applied(system, &applied).context(
        "stage the record of applied files; nothing was restored, every file is as the last \
         apply left it",
    )?;
    let all: Vec<String> = staged
        .iter()
        .map(|(path, _)| path.clone())
        .chain(removed.iter().cloned())
        .collect();
    let mut done: Vec<String> = Vec::new();
    let stopped = |e: anyhow::Error, done: &[String]| {
        let rest: Vec<&String> = all.iter().filter(|p| !done.contains(p)).collect();
        e.context(format!(
            "the rollback stopped half way: restored {}; still as the last apply left them: {} \
             (run mailsetup rollback again once the cause is fixed)",
            list(done.iter()),
            list(rest.into_iter())
        ))
    };
    for (path, file) in staged {
        file.commit().map_err(|e| stopped(e, &done))?;
        done.push(path);
    }
    for path in removed {
        // A table's database goes with it (the first apply made both).
        let db = crate::desired::effects_of(&path)
            .iter()
            .any(|e| matches!(e, Effect::Newaliases | Effect::Postmap));
        system
            .remove_file(&path)
            .and_then(|()| match db {
                true => system.remove_file(&format!("{path}.db")),
                false => Ok(()),
            })
            .map_err(|e| stopped(e, &done))?;
        done.push(path);
    }
    applied.commit()?;
    // Moved back unless the file is back already (an apply that stopped
    // before moving it) or something else took its place.
    for key in manifest.archived.iter().rev() {
        for (live, archived) in KeyPath::archived(&key.set, &key.selector) {
            if system.exists(&archived)? && !system.exists(&live)? {
                system.rename_noreplace(&archived, &live)?;
            }
        }
    }
    Ok(manifest)
}

fn list<'a>(paths: impl Iterator<Item = &'a String>) -> String {
    let paths: Vec<&str> = paths.map(String::as_str).collect();
    if paths.is_empty() {
        "none".into()
    } else {
        paths.join(", ")
    }
}

/// The newest backup not yet rolled back.
pub fn latest(system: &impl Host) -> Result<Option<String>> {
    let newest = system
        .list_dir(BACKUPS)?
        .into_iter()
        .map(|e| e.name)
        .rfind(|n| !n.ends_with(DONE) && !n.starts_with('.'));
    Ok(newest.map(|n| format!("{BACKUPS}/{n}")))
}

/// Marks a backup as used, so the next rollback goes one further back.
pub fn mark_rolled_back(system: &System, dir: &str) -> Result<()> {
    system.rename_noreplace(dir, &format!("{dir}{DONE}"))
}
