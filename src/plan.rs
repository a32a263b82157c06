//! The plan: desired vs actual state → the steps that make the host match.
//! A plan is a value; the text diff and the JSON are two views of it, and apply
//! executes exactly its steps.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::actual::Actual;
use crate::desired::{Desired, Effect, Owner, Service, effects_of, paths};
use crate::host::{FileState, Ids, Meta, ServiceAction};

/// A file's content, mode and owner to be written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileWrite {
    pub path: String,
    #[serde(with = "octal")]
    pub mode: u32,
    pub owner: Owner,
    /// Resolved owner; `None` when ownership is not managed here (see the notes).
    pub ids: Option<Ids>,
    pub secret: bool,
    /// The content now on disk, if any (for the diff; not kept in saved plans).
    #[serde(skip)]
    pub old: Option<Vec<u8>>,
    /// Empty for credential files outside the host (`Plan::redacted`).
    #[serde(rename = "content")]
    pub new: String,
    /// Digests of the old and new content; `None` for credential files, whose
    /// digest would let anyone test password guesses offline.
    pub old_sha256: Option<String>,
    pub new_sha256: Option<String>,
}

impl FileWrite {
    /// `new` for the file at `path` that holds `old` now; credentials get no digest.
    pub fn new(
        path: String,
        (owner, mode, secret): (Owner, u32, bool),
        ids: Option<Ids>,
        old: Option<Vec<u8>>,
        new: String,
    ) -> FileWrite {
        FileWrite {
            old_sha256: old.as_deref().filter(|_| !secret).map(sha256_hex),
            new_sha256: (!secret).then(|| sha256_hex(new.as_bytes())),
            path,
            mode,
            owner,
            ids,
            secret,
            old,
            new,
        }
    }

    /// The step that writes it: create, update, or none when the file already
    /// holds `new`.
    pub fn step(self) -> Option<Step> {
        match &self.old {
            None => Some(Step::CreateFile(self)),
            Some(old) if *old != self.new.as_bytes() => Some(Step::UpdateFile(self)),
            Some(_) => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Install missing Debian packages (apt-get, non-interactive), first of all.
    InstallPackages {
        packages: Vec<String>,
    },
    CreateDir {
        path: String,
        #[serde(with = "octal")]
        mode: u32,
        owner: Owner,
        ids: Option<Ids>,
    },
    /// Mode or owner of an existing file or directory.
    FixMeta {
        path: String,
        #[serde(with = "octal")]
        from_mode: u32,
        #[serde(with = "octal")]
        mode: u32,
        owner: Owner,
        ids: Option<Ids>,
        owner_changes: bool,
    },
    GenerateKey {
        set: String,
        selector: String,
        bits: usize,
        domain: String,
        private_path: String,
        txt_path: String,
        ids: Option<Ids>,
    },
    CreateFile(FileWrite),
    UpdateFile(FileWrite),
    /// A file mailsetup wrote before that the spec no longer asks for (with the
    /// .db a map tool built from it). It is backed up like any replaced file.
    RemoveFile {
        path: String,
    },
    /// Move a revoked selector's private key and record into its set's
    /// archive (`rotate finish`); a rollback moves them back.
    ArchiveKey {
        set: String,
        selector: String,
    },
    /// Move a key set's rotation state (this host's) and archive out of its
    /// key directory, where mailsetup 0.1 kept them, into the state directory
    /// (root's alone). Not undone by a rollback: the old place was unsafe,
    /// and both are read.
    MoveKeySetState {
        set: String,
        host: Option<String>,
    },
    /// Append a user to a group, keeping its other groups (`usermod -aG`).
    AddToGroup {
        user: String,
        group: String,
    },
    #[serde(untagged)]
    FollowUp(FollowUp),
}

impl Step {
    /// The step in a few words, for messages.
    pub fn label(&self) -> String {
        match self {
            Step::InstallPackages { packages } => format!("install {}", packages.join(" ")),
            Step::CreateDir { path, .. } => format!("create directory {path}"),
            Step::FixMeta { path, .. } => format!("fix mode/owner of {path}"),
            Step::GenerateKey { set, selector, .. } => {
                format!("generate DKIM key {set}/{selector}")
            }
            Step::CreateFile(f) => format!("create {}", f.path),
            Step::UpdateFile(f) => format!("update {}", f.path),
            Step::RemoveFile { path } => format!("remove {path}"),
            Step::ArchiveKey { set, selector } => format!("archive DKIM key {set}/{selector}"),
            Step::MoveKeySetState { set, .. } => format!("move the state of key set {set}"),
            Step::AddToGroup { user, group } => format!("add {user} to group {group}"),
            Step::FollowUp(FollowUp::Newaliases) => "run newaliases".into(),
            Step::FollowUp(FollowUp::Postmap { path }) => format!("run postmap {path}"),
            Step::FollowUp(FollowUp::Service { service, action }) => {
                format!("{action:?} {service:?}").to_lowercase()
            }
        }
    }
}

/// What makes changed files take effect. Kept with each backup, so a rollback
/// runs the same ones for the files it puts back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum FollowUp {
    Newaliases,
    Postmap {
        path: String,
    },
    Service {
        service: Service,
        action: ServiceAction,
    },
}

/// What the plan saw of one managed path: a saved plan is applied only while
/// the host still looks like this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub path: String,
    pub seen: Seen,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seen {
    Absent,
    File {
        sha256: String,
    },
    /// A credential file exists; its digest is not recorded (it would let anyone
    /// test password guesses offline) and apply renders it anew anyway.
    Credentials,
}

/// Written into saved plans, so an incompatible one is refused by name.
pub const FORMAT: &str = "mailsetup-plan/2";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub root: String,
    pub steps: Vec<Step>,
    /// Every managed file as the plan found it.
    pub observed: Vec<Observed>,
    /// The private keys that existed (only existence: key bytes are never read).
    pub keys_present: Vec<String>,
    /// What mailsetup leaves alone here and why (no root, not the live system…).
    pub notes: Vec<String>,
    /// Packages this apply installed before planning again (`after_install`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<String>,
    /// The spec file the plan was made from, when one was named (not a
    /// bundle's): backups keep it, so a rollback can say what to plan again.
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// A spec file on the host and the fleet host it was applied for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub spec: std::path::PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Plan {
    /// A plan of just these steps, on `/` (tests of what executes plans).
    #[cfg(test)]
    pub fn of_steps(steps: Vec<Step>) -> Plan {
        Plan::of("/".into(), steps)
    }

    /// A plan of just these steps at `root`: the steps of `rotate`, which
    /// observe no managed file.
    pub fn of(root: String, steps: Vec<Step>) -> Plan {
        Plan {
            format: FORMAT.into(),
            root,
            steps,
            observed: vec![],
            keys_present: vec![],
            notes: vec![],
            installed: vec![],
            origin: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Adds `steps` after the changes and before the follow-ups, which run
    /// once every file is in place.
    pub fn add(&mut self, steps: Vec<Step>) {
        let at = self
            .steps
            .iter()
            .position(|s| matches!(s, Step::FollowUp(_)))
            .unwrap_or(self.steps.len());
        self.steps.splice(at..at, steps);
    }

    /// Puts `steps` first, after a package install (housekeeping the rest
    /// builds on).
    pub fn add_first(&mut self, steps: Vec<Step>) {
        let at = usize::from(matches!(
            self.steps.first(),
            Some(Step::InstallPackages { .. })
        ));
        self.steps.splice(at..at, steps);
    }

    /// The plan made again just after `packages` were installed: the services
    /// the packages brought are enabled and started (restarted if the package
    /// started one with its own configuration) instead of reloaded.
    pub fn after_install(&mut self, packages: Vec<String>) {
        self.installed = packages;
        self.steps
            .retain(|s| !matches!(s, Step::FollowUp(FollowUp::Service { .. })));
        for service in [Service::Postfix, Service::Opendkim] {
            self.steps.push(Step::FollowUp(FollowUp::Service {
                service,
                action: ServiceAction::Start,
            }));
        }
    }

    /// The plan without credentials, for showing (`plan --format json`).
    pub fn redacted(&self) -> Plan {
        let mut plan = self.clone();
        for step in &mut plan.steps {
            if let Step::CreateFile(f) | Step::UpdateFile(f) = step
                && f.secret
            {
                f.new = String::new();
                f.old = None;
            }
        }
        plan
    }
}

/// Modes read as in `ls` and `chmod`: "0644".
pub(crate) mod octal {
    pub fn serialize<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        u32::from_str_radix(&text, 8).map_err(serde::de::Error::custom)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const SALTED: &str = "salted-sha256:";

/// How the state directory remembers a file mailsetup wrote: its sha256, or for
/// a credential file a salted one. That record stays on the host (0600, in a
/// 0700 directory) and, salted, matches no digest anyone could have computed
/// elsewhere; plans, saved plans and bundles never carry a credential digest.
pub fn applied_digest(content: &[u8], secret: bool) -> anyhow::Result<String> {
    if !secret {
        return Ok(sha256_hex(content));
    }
    let salt = crate::keys::random_bytes::<16>()?;
    Ok(salted(&hex(&salt), content))
}

fn salted(salt: &str, content: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(salt.as_bytes());
    hash.update(content);
    format!("{SALTED}{salt}:{}", hex(&hash.finalize()))
}

/// Whether `content` is what a digest from `applied_digest` was made of.
pub fn digest_matches(digest: &str, content: &[u8]) -> bool {
    match digest.strip_prefix(SALTED).and_then(|r| r.split_once(':')) {
        Some((salt, _)) => salted(salt, content) == digest,
        None => sha256_hex(content) == digest,
    }
}

/// Computes the steps that turn `actual` into `desired`.
pub fn plan(root: &str, desired: Desired, mut actual: Actual) -> Plan {
    let mut steps = Vec::new();
    let mut notes = BTreeSet::new();
    let mut effects = BTreeSet::new();

    // What a package install answers (users, groups, tools): said only when
    // no install comes first; after one, the plan made again says what is
    // still true.
    let mut until_install = BTreeSet::new();
    let resolve = |owner: Owner,
                   notes: &mut BTreeSet<String>,
                   until_install: &mut BTreeSet<String>|
     -> Option<Ids> {
        if !actual.can_chown {
            notes.insert("not running as root: owners are not set (modes are)".to_string());
            return None;
        }
        let ids = actual.accounts.ids(owner.user, owner.group);
        if ids.is_none() {
            until_install.insert(format!(
                "user {} or group {} does not exist on the target: install postfix and opendkim; files meant for it keep their current owner",
                owner.user, owner.group
            ));
        }
        ids
    };
    let fix_meta = |path: &str, have: Meta, mode: u32, owner: Owner, ids: Option<Ids>| {
        let owner_changes = ids.is_some_and(|i| i.uid != have.uid || i.gid != have.gid);
        (have.mode != mode || owner_changes).then(|| Step::FixMeta {
            path: path.to_string(),
            from_mode: have.mode,
            mode,
            owner,
            ids,
            owner_changes,
        })
    };

    let seen = |path: &str, state: Option<&FileState>| Observed {
        path: path.to_string(),
        seen: match state {
            None => Seen::Absent,
            Some(_) if crate::desired::managed_file(path).is_some_and(|f| f.secret) => {
                Seen::Credentials
            }
            Some(s) => Seen::File {
                sha256: sha256_hex(&s.content),
            },
        },
    };
    let mut observed: Vec<Observed> = actual
        .files
        .iter()
        .map(|(path, state)| seen(path, state.as_ref()))
        .chain(
            actual
                .dropped
                .iter()
                .map(|(path, state)| seen(path, Some(state))),
        )
        .collect();
    observed.sort_by(|a, b| a.path.cmp(&b.path));
    let mut keys_present: Vec<String> = actual
        .keys
        .iter()
        .filter(|(_, exists)| **exists)
        .map(|(path, _)| path.clone())
        .collect();
    keys_present.sort();

    // Packages first: the daemons' users, tools and checks come with them.
    let installing = !actual.missing_packages.is_empty() && actual.live;
    if installing {
        steps.push(Step::InstallPackages {
            packages: actual
                .missing_packages
                .iter()
                .map(|p| p.to_string())
                .collect(),
        });
    } else if !actual.missing_packages.is_empty() {
        notes.insert(format!(
            "not the live system (--root): missing packages are listed, not installed: {}",
            actual.missing_packages.join(" ")
        ));
    }

    for dir in &desired.dirs {
        let ids = resolve(dir.owner, &mut notes, &mut until_install);
        match actual.dirs.get(&dir.path).copied().flatten() {
            None => steps.push(Step::CreateDir {
                path: dir.path.clone(),
                mode: dir.mode,
                owner: dir.owner,
                ids,
            }),
            Some(have) => steps.extend(fix_meta(&dir.path, have, dir.mode, dir.owner, ids)),
        }
    }

    for key in &desired.keys {
        if actual.keys.get(&key.private_path).copied().unwrap_or(false) {
            continue;
        }
        steps.push(Step::GenerateKey {
            set: key.set.clone(),
            selector: key.selector.clone(),
            bits: key.bits,
            domain: key.domain.to_string(),
            private_path: key.private_path.clone(),
            txt_path: key.txt_path.clone(),
            ids: resolve(crate::desired::OPENDKIM, &mut notes, &mut until_install),
        });
        effects.insert(Effect::Reload(Service::Opendkim));
    }

    // Contents move from the desired and actual states into the steps: at
    // 100,000 domains a copy of each would double the memory.
    for file in desired.files {
        let ids = resolve(file.owner, &mut notes, &mut until_install);
        let have = actual.files.remove(&file.path).flatten();
        let write = |file: crate::desired::File, old: Option<Vec<u8>>| {
            let table = (file.owner, file.mode, file.secret);
            FileWrite::new(file.path, table, ids, old, file.content)
        };
        match have {
            None => {
                effects.extend(effects_of(&file.path).iter().copied());
                steps.push(Step::CreateFile(write(file, None)));
            }
            Some(state) if state.content != file.content.as_bytes() => {
                if file.path == paths::MAIN_CF && needs_restart(&state.content, &file.content) {
                    effects.insert(Effect::Restart(Service::Postfix));
                }
                let written = actual.applied.get(&file.path);
                if written.is_some_and(|digest| !digest_matches(digest, &state.content)) {
                    notes.insert(format!(
                        "{} was edited by hand since mailsetup wrote it: apply replaces the edit \
                         (the backup keeps it); put the change in the spec or a --templates override",
                        file.path
                    ));
                }
                effects.extend(effects_of(&file.path).iter().copied());
                steps.push(Step::UpdateFile(write(file, Some(state.content))));
            }
            Some(state) => {
                steps.extend(fix_meta(&file.path, state.meta, file.mode, file.owner, ids));
            }
        }
    }

    for path in actual.dropped.keys() {
        steps.push(Step::RemoveFile { path: path.clone() });
    }

    for member in &desired.group_members {
        if !actual.live {
            continue;
        }
        match actual.accounts.is_member(member.user, member.group) {
            Some(true) => {}
            Some(false) if actual.can_chown => {
                steps.push(Step::AddToGroup {
                    user: member.user.to_string(),
                    group: member.group.to_string(),
                });
                effects.insert(Effect::Reload(Service::Postfix));
            }
            Some(false) => {
                notes.insert(format!(
                    "{} is not in group {} and only root can add it",
                    member.user, member.group
                ));
            }
            None => {
                until_install.insert(format!(
                    "user {} or group {} does not exist: install postfix and opendkim",
                    member.user, member.group
                ));
            }
        }
    }
    if !actual.live {
        notes.insert(
            "not the live system (--root): group membership and services are left alone"
                .to_string(),
        );
    }

    for effect in &effects {
        match *effect {
            Effect::Newaliases if actual.has_postalias => {
                steps.push(Step::FollowUp(FollowUp::Newaliases))
            }
            Effect::Postmap if actual.has_postmap => {
                steps.push(Step::FollowUp(FollowUp::Postmap {
                    path: paths::SASL_PASSWD.to_string(),
                }))
            }
            Effect::Newaliases | Effect::Postmap => {
                until_install.insert(
                    "postfix is not installed here: the .db files of aliases and sasl_passwd are not built"
                        .to_string(),
                );
            }
            Effect::Reload(service) | Effect::Restart(service) if actual.live => {
                let action = if installing {
                    // Enabled and started on a fresh install, restarted if the
                    // package started it with its own configuration.
                    ServiceAction::Start
                } else if effects.contains(&Effect::Restart(service)) {
                    ServiceAction::Restart
                } else {
                    ServiceAction::Reload
                };
                let step = Step::FollowUp(FollowUp::Service { service, action });
                if !steps
                    .iter()
                    .any(|s| matches!(s, Step::FollowUp(FollowUp::Service { service: s, .. }) if *s == service))
                {
                    steps.push(step);
                }
            }
            Effect::Reload(_) | Effect::Restart(_) => {}
        }
    }

    if !installing {
        notes.append(&mut until_install);
    }
    Plan {
        format: FORMAT.to_string(),
        root: root.to_string(),
        steps,
        observed,
        keys_present,
        notes: notes.into_iter().collect(),
        installed: Vec::new(),
        origin: None,
    }
}

/// Postfix reads inet_interfaces and inet_protocols only at start.
fn needs_restart(old: &[u8], new: &str) -> bool {
    let value = crate::desired::main_cf_setting;
    let old = String::from_utf8_lossy(old);
    ["inet_interfaces", "inet_protocols"]
        .iter()
        .any(|k| value(&old, k) != value(new, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_changes_need_a_restart() {
        assert!(needs_restart(
            b"inet_interfaces = loopback-only\n",
            "inet_interfaces = all\n"
        ));
        assert!(!needs_restart(
            b"inet_interfaces = all\nmyhostname = a\n",
            "inet_interfaces = all\nmyhostname = b\n"
        ));
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
