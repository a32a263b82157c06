//! `rollback`: put back what the last apply replaced, and remove what it created.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::exit::Exit;
use crate::hint::Again;
use crate::host::{Host, System};
use crate::state;
use crate::ui::Ui;
use crate::{apply, backup, desired, plan};

/// The files whose creation means an apply first configured the daemons.
const CONFIGURES: &[&str] = &[desired::paths::MAIN_CF, desired::paths::OPENDKIM_CONF];

pub fn run(root: &Path, unconfigure: bool, ui: &mut Ui) -> Result<Exit> {
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
            system.path(state::BACKUPS).display()
        );
    };
    // The apply that first configured the daemons created their main files:
    // rolling it back leaves them none (and Debian 13's postfix unit then
    // skips itself without an error), so only on request, stopping them.
    let creates = backup::manifest(&system, &dir)?
        .entries
        .iter()
        .filter(|e| e.before.is_none() && CONFIGURES.contains(&e.path.as_str()))
        .map(|e| e.path.clone())
        .collect::<Vec<_>>();
    if !creates.is_empty() && !unconfigure {
        bail!(
            "the apply to roll back ({}) is the one that first configured the mail \
             services: it created {}, and rolling it back leaves Postfix and OpenDKIM without \
             a configuration. Nothing was changed. To do it all the same (the services are \
             then stopped): {}",
            system.path(&dir).display(),
            creates.join(" and "),
            Again::new(None, None, root).cmd_with("rollback", &["--unconfigure"])
        );
    }
    // Stopped while they still have their configuration (postfix's own tools
    // need main.cf to stop it).
    let mut report = apply::Report::default();
    if !creates.is_empty() && system.is_live() {
        for service in [desired::Service::Postfix, desired::Service::Opendkim] {
            if system.service_running(service) {
                apply::stop_service(&system, service, &mut report)?;
            }
        }
    }
    let manifest =
        backup::restore(&system, &lock, &dir).map_err(|e| match report.done.is_empty() {
            true => e,
            false => e.context(format!(
                "{} first; start them again (systemctl start postfix opendkim)",
                report.done.join(", ")
            )),
        })?;
    backup::mark_rolled_back(&system, &dir)?;
    let mut text = format!("Restored from {}:\n", system.path(&dir).display());
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
    if !creates.is_empty() {
        // Nothing to reload: the services lose their configuration and stop.
        follow_ups.retain(|f| !matches!(f, plan::FollowUp::Service { .. }));
    }
    apply::run_follow_ups(&system, &follow_ups, &mut report).with_context(|| {
        format!(
            "every file was put back from {}, but what follows failed: the map databases \
             or the running services may not match them yet (mailsetup plan shows the files; \
             run newaliases, postmap or the reload by hand once the cause is fixed)",
            system.path(&dir).display()
        )
    })?;
    if !creates.is_empty() && system.is_live() {
        text += "Postfix and OpenDKIM have no configuration from mailsetup now and are stopped.\n";
    }
    for line in report.done {
        text += &format!("  {line}\n");
    }
    for note in report.notes {
        text += &format!("note: {note}\n");
    }
    text += &match &manifest.origin {
        Some(origin) => format!(
            "{} shows how the system now differs from the spec.\n",
            Again::new(Some(&origin.spec), origin.host.as_deref(), root).cmd("plan")
        ),
        None => "A plan of the spec the bundle or saved plan was made from shows how the \
                 system now differs from it.\n"
            .to_string(),
    };
    ui.out(&text)?;
    Ok(Exit::Ok)
}
