//! The state directory, /var/lib/mailsetup: the apply lock, the checksums of
//! what apply last wrote, and the directories backups go to. A leaf: reading
//! the host's state needs nothing of the plan.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::host::{Host, HostMut, Lock};

pub const STATE_DIR: &str = "/var/lib/mailsetup";
pub const LOCK: &str = "/var/lib/mailsetup/lock";
/// The sha256 of every file as mailsetup last wrote it: a file that differs was
/// edited by hand, and one no longer in the spec is removed.
const APPLIED: &str = "/var/lib/mailsetup/applied.json";
pub(crate) const BACKUPS: &str = "/var/lib/mailsetup/backups";
pub(crate) const ORIGINALS: &str = "/var/lib/mailsetup/originals";
/// When the last apply (or rotation step) ran and how it ended, for `status`.
const LAST_APPLY: &str = "/var/lib/mailsetup/last-apply.json";

/// The last apply's time and result.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LastApply {
    pub time: jiff::Timestamp,
    pub ok: bool,
}

/// Records how an apply ended (best effort: its own result is what counts).
pub fn record_apply(system: &impl HostMut, ok: bool) {
    let last = LastApply {
        time: jiff::Timestamp::now(),
        ok,
    };
    if let Ok(json) = serde_json::to_string(&last) {
        let _ = system.write_file(LAST_APPLY, (json + "\n").as_bytes(), 0o644, None);
    }
}

/// The last apply, if one was recorded.
pub fn last_apply(system: &impl Host) -> Result<Option<LastApply>> {
    match system.read_file(LAST_APPLY)? {
        None => Ok(None),
        Some(file) => Ok(serde_json::from_slice(&file.content).ok()),
    }
}

/// Each key set's rotation state and archive (`desired::keyset_state_dir`).
pub const KEYSETS: &str = "/var/lib/mailsetup/keys";

/// Makes sure the state directory exists, root's alone (0700: backups may
/// hold credentials, and root makes keys there). One that others could write
/// is refused (what is in it may be theirs); one only readable by others is
/// closed.
pub fn ensure_state_dir(system: &impl HostMut) -> Result<()> {
    let mut target = String::new();
    for part in STATE_DIR.trim_start_matches('/').split('/') {
        target.push('/');
        target.push_str(part);
        if system.read_dir_meta(&target)?.is_none() {
            let mode = if target == STATE_DIR { 0o700 } else { 0o755 };
            system.create_dir(&target, mode, None)?;
        }
    }
    let meta = system
        .read_dir_meta(STATE_DIR)?
        .context("the state directory vanished")?;
    if meta.uid != system.own_uid() || meta.mode & 0o022 != 0 {
        bail!(
            "{} is {} (uid {}, mode {:04o}): what is in it could be another user's; make sure \
             nothing in it was changed, then chown root and chmod 700 it",
            system.path(STATE_DIR).display(),
            if meta.uid != system.own_uid() {
                "another user's"
            } else {
                "writable by others"
            },
            meta.uid,
            meta.mode
        );
    }
    if meta.mode & 0o077 != 0 {
        system.set_meta(STATE_DIR, 0o700, None)?;
    }
    for dir in [BACKUPS, ORIGINALS, KEYSETS] {
        if system.read_dir_meta(dir)?.is_none() {
            system.create_dir(dir, 0o700, None)?;
        }
    }
    Ok(())
}

/// Takes the apply lock (making the state directory first): a second
/// mailsetup changing this system fails at once.
pub fn lock(system: &impl HostMut) -> Result<Lock> {
    ensure_state_dir(system)?;
    system.lock(LOCK)
}

/// What mailsetup last wrote: path → digest (`plan::applied_digest`).
pub fn read_applied(system: &impl Host) -> Result<BTreeMap<String, String>> {
    match system.read_file(APPLIED)? {
        None => Ok(BTreeMap::new()),
        Some(file) => serde_json::from_slice(&file.content)
            .with_context(|| format!("read {APPLIED} (remove it if it was damaged)")),
    }
}

pub fn write_applied(system: &impl HostMut, applied: &BTreeMap<String, String>) -> Result<()> {
    stage_applied(system, applied)?.commit()
}

/// The new `applied.json`, staged to go in place with other files.
pub fn stage_applied(
    system: &impl HostMut,
    applied: &BTreeMap<String, String>,
) -> Result<crate::host::Staged> {
    ensure_state_dir(system)?;
    let json = serde_json::to_string_pretty(applied)? + "\n";
    system.stage_file(APPLIED, json.as_bytes(), 0o600, None)
}
