//! Executes a plan: check the staged configuration with the daemons' own tools,
//! back up, create directories and keys, write files atomically, fix owners,
//! rebuild maps, reload what changed. A failure while changing files puts the
//! backup back.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};

use crate::backup;
use crate::desired::{
    ARCHIVE_DIR_MODE, KeyPath, Service, archive_dir, keyset_state_dir, legacy, paths,
};
use crate::host::{Host, HostMut, Lock, ServiceAction, System};
use crate::keys::DkimKey;
use crate::plan::{FollowUp, Plan, Seen, Step, applied_digest};
use crate::state;

/// What apply did, line by line, for the operator.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<String>,
    pub notes: Vec<String>,
}

/// The configuration files the daemons' own checks read.
const CHECKED: &[&str] = &[
    paths::MAIN_CF,
    paths::MASTER_CF,
    paths::OPENDKIM_CONF,
    paths::KEY_TABLE,
    paths::SIGNING_TABLE,
    paths::TRUSTED_HOSTS,
];

/// Removes what a killed apply left (we hold the lock: no other runs):
/// scratch directories and temporary files in the state directory, and
/// temporary files beside the managed files and the keys this plan makes.
fn remove_debris(system: &System, plan: &Plan) -> Result<()> {
    system.remove_debris(state::STATE_DIR, Some("stage"))?;
    let key_dirs = plan.steps.iter().filter_map(|s| match s {
        Step::GenerateKey { set, .. } => Some(crate::desired::key_dir(set)),
        _ => None,
    });
    let mut dirs: Vec<String> = crate::desired::MANAGED_FILES
        .iter()
        .filter_map(|f| f.path.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .chain(key_dirs)
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        system.remove_debris(&dir, None)?;
    }
    Ok(())
}

/// Checks the configuration the plan leads to with `postconf` and `opendkim -n`,
/// in a staging copy, before any live file changes. Files the plan does not
/// change are taken as they are.
pub fn check_staged(system: &System, _held: &Lock, plan: &Plan) -> Result<Vec<String>> {
    remove_debris(system, plan)?;
    // The maps' databases are checked now, before any file changes.
    for step in &plan.steps {
        match step {
            Step::FollowUp(FollowUp::Newaliases) => {
                check_map_database(system, paths::ALIASES)?;
            }
            Step::FollowUp(FollowUp::Postmap { path }) => {
                check_map_database(system, path)?;
            }
            _ => {}
        }
    }
    // Removed when dropped, so a failure (a full disk, a refused check) leaves nothing.
    let stage = system.scratch(state::STATE_DIR, "stage-")?;
    let stage_str = stage.path().to_string_lossy().into_owned();
    for path in CHECKED {
        let planned = plan.steps.iter().find_map(|s| match s {
            Step::CreateFile(f) | Step::UpdateFile(f) if f.path == *path => Some(f.new.clone()),
            _ => None,
        });
        let content = match planned {
            Some(c) => c,
            None => match system.read_file(path)? {
                Some(f) => String::from_utf8_lossy(&f.content).into_owned(),
                None => continue,
            },
        };
        // The staged opendkim.conf must read the staged tables, not the live ones.
        let content = content.replace(
            &format!("file:{}/", paths::OPENDKIM_DIR),
            &format!("file:{stage_str}{}/", paths::OPENDKIM_DIR),
        );
        stage.put(path, content.as_bytes())?;
    }
    let mut notes = Vec::new();
    let postfix_dir = stage
        .path()
        .join("etc/postfix")
        .to_string_lossy()
        .into_owned();
    if system.find_program("postconf").is_some() {
        let out = system.run("postconf", &["-c", &postfix_dir, "-n"])?;
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("warning"))
            .collect();
        if !warnings.is_empty() {
            bail!(
                "postconf finds problems in the new main.cf:\n{}",
                warnings.join("\n")
            );
        }
    } else {
        notes.push("postconf is not installed: the new main.cf was not checked by Postfix".into());
    }
    let conf = stage
        .path()
        .join("etc/opendkim.conf")
        .to_string_lossy()
        .into_owned();
    if system.find_program("opendkim").is_some() {
        system
            .run("opendkim", &["-n", "-x", &conf])
            .context("opendkim -n rejects the new opendkim.conf")?;
    } else {
        notes.push(
            "opendkim is not installed: the new opendkim.conf was not checked by OpenDKIM".into(),
        );
    }
    Ok(notes)
}

/// Executes every step of `plan`; `keys` are its new DKIM keys (`generate_keys`).
pub fn apply(
    system: &System,
    held: &Lock,
    plan: &Plan,
    keys: &HashMap<String, DkimKey>,
) -> Result<Report> {
    let mut report = Report::default();
    let replaced: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::CreateFile(f) | Step::UpdateFile(f) => Some(f.path.as_str()),
            Step::RemoveFile { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    let follow_ups: Vec<FollowUp> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::FollowUp(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    let archived: Vec<backup::Archived> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::ArchiveKey { set, selector } => Some(backup::Archived {
                set: set.clone(),
                selector: selector.clone(),
            }),
            _ => None,
        })
        .collect();
    let backup_dir = backup::save(
        system,
        &replaced,
        &archived,
        &follow_ups,
        plan.origin.as_ref(),
    )
    .context(
        "back up the files to be replaced; nothing was changed, the live files are untouched",
    )?;

    for step in &plan.steps {
        if let Err(e) = change(system, step, keys, &mut report) {
            // Marked used once restored, so a later rollback goes to the
            // apply before this one, not to this one that changed nothing.
            let how = match backup::restore(system, held, &backup_dir)
                .and_then(|m| backup::mark_rolled_back(system, &backup_dir).map(|()| m))
            {
                Ok(m) => format!(
                    "what it had changed was put back ({} files, {} archived keys)",
                    m.entries.len(),
                    m.archived.len()
                ),
                Err(r) => format!("restoring the backup {backup_dir} failed too: {r:#}"),
            };
            return Err(e.context(format!("apply stopped; {how}")));
        }
    }
    let applied = applied_after(state::read_applied(system)?, plan)?;
    state::write_applied(system, &applied)?;
    run_follow_ups(system, &follow_ups, &mut report)?;
    report.done.push(format!(
        "backup of the replaced files: {}",
        system.path(&backup_dir).display()
    ));
    Ok(report)
}

/// The new DKIM keys of a plan, made on every core at once (a spec with a key
/// per domain needs many), by private key path.
pub fn generate_keys(plan: &Plan) -> Result<HashMap<String, DkimKey>> {
    let wanted: Vec<(&str, usize)> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::GenerateKey {
                private_path, bits, ..
            } => Some((private_path.as_str(), *bits)),
            _ => None,
        })
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = wanted.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(path, bits)| {
                            let key = DkimKey::generate(bits)
                                .with_context(|| format!("generate the key {path}"))?;
                            Ok((path.to_string(), key))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut keys = HashMap::with_capacity(wanted.len());
        for handle in handles {
            keys.extend(handle.join().expect("key generation does not panic")?);
        }
        Ok(keys)
    })
}

fn change(
    system: &System,
    step: &Step,
    keys: &HashMap<String, DkimKey>,
    report: &mut Report,
) -> Result<()> {
    match step {
        Step::CreateDir {
            path, mode, ids, ..
        } => {
            system.create_dir(path, *mode, *ids)?;
            report.done.push(format!("created directory {path}"));
        }
        Step::FixMeta {
            path, mode, ids, ..
        } => {
            system.set_meta(path, *mode, *ids)?;
            report.done.push(format!("fixed mode/owner of {path}"));
        }
        Step::GenerateKey {
            set,
            selector,
            bits,
            domain,
            private_path,
            txt_path,
            ids,
        } => {
            let key = keys
                .get(private_path)
                .with_context(|| format!("no key was made for {private_path}"))?;
            system.create_private_file(
                private_path,
                key.private_pem().as_bytes(),
                *ids,
                state::STATE_DIR,
            )?;
            let txt = key.public().genkey_txt(selector, domain);
            system.write_file(txt_path, txt.as_bytes(), 0o644, *ids)?;
            report
                .done
                .push(format!("generated DKIM key {set}/{selector} ({bits} bits)"));
        }
        Step::CreateFile(f) | Step::UpdateFile(f) => {
            if crate::boundary::is_rotation_state(&f.path) {
                let (dir, _) = f.path.rsplit_once('/').expect("an absolute path");
                ensure_private_dir(system, dir)?;
            }
            system.write_file(&f.path, f.new.as_bytes(), f.mode, f.ids)?;
            report.done.push(format!("wrote {}", f.path));
        }
        Step::RemoveFile { path, .. } => {
            system.remove_file(path)?;
            system.remove_file(&format!("{path}.db"))?;
            report.done.push(format!("removed {path}"));
        }
        Step::MoveKeySetState { set, host } => {
            move_key_set_state(system, set, host.as_deref())?;
            report.done.push(format!(
                "moved the state of key set {set} to {}",
                keyset_state_dir(set)
            ));
        }
        Step::ArchiveKey { set, selector } => {
            let archive = archive_dir(set);
            ensure_private_dir(system, &keyset_state_dir(set))?;
            ensure_private_dir(system, &archive)?;
            for (from, to) in KeyPath::archived(set, selector) {
                if system.exists(&from)? {
                    system.rename_noreplace(&from, &to)?;
                }
            }
            report
                .done
                .push(format!("archived DKIM key {set}/{selector} in {archive}"));
        }
        Step::AddToGroup { user, group } => {
            system.run("usermod", &["-a", "-G", group, user])?;
            report.done.push(format!("added {user} to group {group}"));
        }
        // Run once every file is in place.
        Step::FollowUp(_) => {}
        // Done before the staged checks, which need the packages' tools.
        Step::InstallPackages { .. } => {}
    }
    Ok(())
}

/// A directory of mailsetup's state, root's alone (0700), made when missing.
fn ensure_private_dir(system: &System, dir: &str) -> Result<()> {
    if system.read_dir_meta(dir)?.is_none() {
        system.create_dir(dir, ARCHIVE_DIR_MODE, None)?;
    }
    Ok(())
}

/// Moves a key set's rotation state (this host's) and archived keys from the
/// key directory, where mailsetup 0.1 kept them, to the state directory. Each
/// file is moved through its directories' handles, never replacing one.
fn move_key_set_state(system: &System, set: &str, host: Option<&str>) -> Result<()> {
    ensure_private_dir(system, &keyset_state_dir(set))?;
    let (old, new) = (
        legacy::rotation_state(set, host),
        crate::desired::rotation_state(set, host),
    );
    if system.exists(&old)? {
        if system.exists(&new)? {
            bail!(
                "{} and {} both exist: remove the one that is out of date (mailsetup rotate \
                 status shows what each says), then apply again",
                system.path(&old).display(),
                system.path(&new).display()
            );
        }
        system.rename_noreplace(&old, &new)?;
    }
    let old_archive = legacy::archive_dir(set);
    let entries = system.list_dir(&old_archive)?;
    if system.read_dir_meta(&old_archive)?.is_none() {
        return Ok(());
    }
    let archive = archive_dir(set);
    ensure_private_dir(system, &archive)?;
    for entry in entries {
        if entry.is_dir || !crate::keysets::is_key_file_name(&entry.name) {
            bail!(
                "{}: not an archived key; move it out of {} by hand, then apply again",
                system
                    .path(&format!("{old_archive}/{}", entry.name))
                    .display(),
                system.path(&old_archive).display()
            );
        }
        system.rename_noreplace(
            &format!("{old_archive}/{}", entry.name),
            &format!("{archive}/{}", entry.name),
        )?;
    }
    system.remove_tree(&old_archive)
}

/// What mailsetup has written once `plan` is applied: what it knew of the files
/// it left alone, the new content of those it wrote, without those it removed.
fn applied_after(
    before: BTreeMap<String, String>,
    plan: &Plan,
) -> Result<BTreeMap<String, String>> {
    let mut applied = BTreeMap::new();
    for o in &plan.observed {
        let digest = match &o.seen {
            Seen::Absent => None,
            Seen::File { sha256 } => Some(sha256.clone()),
            Seen::Credentials => before.get(&o.path).cloned(),
        };
        if let Some(digest) = digest {
            applied.insert(o.path.clone(), digest);
        }
    }
    for step in &plan.steps {
        match step {
            // Only the table's files: others (a rotation state) are not the
            // spec's to remove when it stops asking for them.
            Step::CreateFile(f) | Step::UpdateFile(f)
                if crate::desired::is_managed_file(&f.path) =>
            {
                // The plan's digest where it has one; a credential file's is salted here.
                let digest = match &f.new_sha256 {
                    Some(sha) => sha.clone(),
                    None => applied_digest(f.new.as_bytes(), f.secret)?,
                };
                applied.insert(f.path.clone(), digest);
            }
            Step::RemoveFile { path, .. } => {
                applied.remove(path);
            }
            _ => {}
        }
    }
    Ok(applied)
}

/// Rebuilds maps and reloads services after files changed (by apply or rollback).
pub fn run_follow_ups(system: &System, follow_ups: &[FollowUp], report: &mut Report) -> Result<()> {
    for follow_up in follow_ups {
        run_follow_up(system, follow_up, report)?;
    }
    Ok(())
}

fn run_follow_up(system: &System, follow_up: &FollowUp, report: &mut Report) -> Result<()> {
    match follow_up {
        FollowUp::Newaliases => {
            if rebuild_map(system, "postalias", paths::ALIASES, 0o644)? {
                report
                    .done
                    .push("rebuilt the aliases database (newaliases)".into());
            }
        }
        FollowUp::Postmap { path } => {
            // The .db holds the password too.
            if rebuild_map(system, "postmap", path, 0o600)? {
                report.done.push(format!("rebuilt {path}.db (postmap)"));
            }
        }
        FollowUp::Service { service, action } => service_step(system, *service, *action, report)?,
    }
    Ok(())
}

/// The `.db` beside a table, refused when it is not root's (mailsetup's
/// user's under --root): a symlink, anything but a plain file, or another
/// user's file could have been placed to be written through or given away.
fn check_map_database(system: &impl Host, path: &str) -> Result<String> {
    let db = format!("{path}.db");
    if let Some(meta) = system.file_meta(&db)?
        && meta.uid != system.own_uid()
    {
        bail!(
            "{} belongs to uid {}, not {}: mailsetup will not replace a database another \
             user could have placed there; remove it, then apply again",
            system.path(&db).display(),
            meta.uid,
            if system.can_chown() {
                "root"
            } else {
                "this user"
            }
        );
    }
    Ok(db)
}

/// Rebuilds the `.db` of a Postfix table (postalias, postmap) without the
/// tool ever opening the live files: it runs on a copy in a scratch
/// directory root's alone, and the database it makes is moved in beside its
/// source through the directory's handle, with its mode and owner. An
/// existing `.db` that is a symlink, or not root's, is refused: another user
/// could have aimed it (the relay password's database would land wherever it
/// pointed). `false` when the source does not exist.
fn rebuild_map(system: &System, tool: &str, path: &str, mode: u32) -> Result<bool> {
    let Some(source) = system.read_file(path)? else {
        return Ok(false);
    };
    let db = check_map_database(system, path)?;
    let scratch = system.scratch(state::STATE_DIR, "stage-map")?;
    // On the live system the tool reads its main.cf (a copy); a tree under
    // --root gets an empty one, since its main.cf names files of the system it
    // is meant for. Copies are dated back: Postfix's tools wait until main.cf
    // is a second old — the difference between 1.5 s and 10 ms.
    let config = match system.is_live() {
        true => system.read_file(paths::MAIN_CF)?.map(|f| f.content),
        false => None,
    };
    scratch.put("main.cf", &config.unwrap_or_default())?;
    let name = path.rsplit_once('/').map_or(path, |(_, name)| name);
    scratch.put(name, &source.content)?;
    let dir = scratch.path().to_string_lossy().into_owned();
    system.run(tool, &["-c", &dir, &format!("hash:{dir}/{name}")])?;
    let built = scratch
        .read(&format!("{name}.db"))?
        .with_context(|| format!("{tool} made no {name}.db"))?;
    system.write_file(&db, &built, mode, None)?;
    Ok(true)
}

fn service_step(
    system: &System,
    service: Service,
    action: ServiceAction,
    report: &mut Report,
) -> Result<()> {
    let name = service.name();
    let running = system.service_running(service);
    // A fresh install's services are started (and enabled); otherwise only a
    // running service is touched.
    let action = match action {
        ServiceAction::Start if running => ServiceAction::Restart,
        other => other,
    };
    if action == ServiceAction::Stop {
        if running {
            stop_service(system, service, report)?;
        }
        return Ok(());
    }
    if !running && action != ServiceAction::Start {
        report.notes.push(format!(
            "{name} is not running: not reloaded; start it to use the new configuration"
        ));
        return Ok(());
    }
    let verb = match action {
        ServiceAction::Reload => "reloaded",
        ServiceAction::Restart => "restarted",
        ServiceAction::Start | ServiceAction::Stop => "enabled and started",
    };
    system
        .service(service, action)
        .with_context(|| format!("{action:?} {name}").to_lowercase())?;
    // Said only once it runs: a unit can "succeed" without starting (Debian
    // 13's postfix.service skips itself when main.cf is missing).
    if !settles(|| system.service_running(service)) {
        bail!(
            "{name} was {verb}, but it is not running now; `systemctl status {name}` (or the \
             mail log) says why"
        );
    }
    report.done.push(format!("{verb} {name}"));
    Ok(())
}

/// Stops a service and checks that it stopped.
pub fn stop_service(system: &System, service: Service, report: &mut Report) -> Result<()> {
    let name = service.name();
    system
        .service(service, ServiceAction::Stop)
        .with_context(|| format!("stop {name}"))?;
    if !settles(|| !system.service_running(service)) {
        bail!("{name} was told to stop, but it still runs");
    }
    report.done.push(format!("stopped {name}"));
    Ok(())
}

/// Whether `done` holds now or within ten seconds (a daemon forking, a unit
/// activating): asked at once, then every 50 ms while it does not hold.
fn settles(done: impl Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_new_key_of_a_plan_is_made_once_and_apart() {
        let steps = (0..5)
            .map(|i| Step::GenerateKey {
                set: format!("d{i}.example.com"),
                selector: "mail".into(),
                bits: 1024,
                domain: format!("d{i}.example.com"),
                private_path: format!("/etc/opendkim/keys/d{i}.example.com/mail.private"),
                txt_path: format!("/etc/opendkim/keys/d{i}.example.com/mail.txt"),
                ids: None,
            })
            .collect();
        let plan = Plan::of_steps(steps);
        let keys = generate_keys(&plan).unwrap();
        assert_eq!(keys.len(), 5);
        let publics: std::collections::BTreeSet<String> =
            keys.values().map(|k| k.public().dns_value()).collect();
        assert_eq!(publics.len(), 5, "two domains got the same key");
    }
}
