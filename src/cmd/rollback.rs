//! `rollback`: put back what the last apply replaced, and remove what it created.

use std::path::Path;

use anyhow::{Result, bail};

use crate::exit::Exit;
use crate::host::{Host, System};
use crate::state;
use crate::ui::Ui;
use crate::{apply, backup, desired, plan};

pub fn run(root: &Path, ui: &mut Ui) -> Result<Exit> {
    let system = System::new(root)?;
    if system.read_dir_meta(state::STATE_DIR)?.is_none() {
        bail!(
            "nothing to roll back: {} has no mailsetup backups",
            system.root().display()
        );
    }
    let lock = state::lock(&system)?;
    let Some(dir) = backup::latest(&system)? else {
        bail!(
            "nothing to roll back: no backup left under {}",
            state::STATE_DIR
        );
    };
    let manifest = backup::restore(&system, &lock, &dir)?;
    backup::mark_rolled_back(&system, &dir)?;
    let mut text = format!("Restored from {dir}:\n");
    for entry in &manifest.entries {
        let how = if entry.before.is_some() {
            "restored"
        } else {
            "removed"
        };
        text += &format!("  {how} {}\n", entry.path);
    }
    for key in &manifest.archived {
        text += &format!(
            "  moved back {}\n",
            desired::KeyPath::new(&key.set, &key.selector).private
        );
    }
    // The apply's own follow-ups, and the maps of every restored file (a table the
    // apply had removed has no follow-up of its own there).
    let mut follow_ups = manifest.follow_ups.clone();
    for entry in manifest.entries.iter().filter(|e| e.before.is_some()) {
        for effect in desired::effects_of(&entry.path) {
            let map = match effect {
                desired::Effect::Newaliases => plan::FollowUp::Newaliases,
                desired::Effect::Postmap => plan::FollowUp::Postmap {
                    path: entry.path.clone(),
                },
                desired::Effect::Reload(_) | desired::Effect::Restart(_) => continue,
            };
            if !follow_ups.contains(&map) {
                follow_ups.insert(0, map);
            }
        }
    }
    let mut report = apply::Report::default();
    apply::run_follow_ups(&system, &follow_ups, &mut report)?;
    for line in report.done {
        text += &format!("  {line}\n");
    }
    for note in report.notes {
        text += &format!("note: {note}\n");
    }
    text += "`mailsetup plan` shows how the system now differs from the spec.\n";
    ui.out(&text)?;
    Ok(Exit::Ok)
}
