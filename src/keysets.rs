//! A host's DKIM key sets as the host has them: their keys and their rotation
//! state (which selector is staged, signs, retires, was revoked). Read only:
//! `apply` asks which selector signs, `dns` and `check` what to publish, and
//! `rotate` what is due; the state machine itself is `rotation.rs`, and the
//! changes `rotate` makes are plan steps.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use jiff::civil::Date;

use crate::desired::{self, KeyPath, Owner, ROOT, ROTATION_STATE_MODE, key_set_of, paths};
use crate::dns;
use crate::host::{Host, Ids};
use crate::keys::DkimPublicKey;
use crate::plan::{FileWrite, Step};
use crate::resolve::Dns;
use crate::rotation::{Entry, Rotation, note, selector_date};
use crate::selector::{self, DkimSelector, DkimValue, Served, State};
use crate::spec::names::{DATE_PLACEHOLDER, check_selector};
use crate::spec::{DomainName, HostSpec};

/// A key set: `shared` or a domain, with the domains it signs for.
#[derive(Clone)]
pub struct KeySet {
    pub name: String,
    pub domains: Vec<DomainName>,
    /// Its rotation state's file.
    state_file: String,
    /// Where mailsetup 0.1 kept it, read until the state is moved.
    legacy_state_file: String,
    /// This host's name in a fleet (its state file is its own).
    host: Option<String>,
}

impl KeySet {
    pub fn private(&self, selector: &str) -> String {
        KeyPath::new(&self.name, selector).private
    }
    /// Zone lines of one TXT value at `SELECTOR._domainkey.DOMAIN` for every domain.
    pub fn zone_lines(&self, selector: &str, value: &str) -> String {
        self.domains
            .iter()
            .map(|d| {
                format!(
                    "  {selector}._domainkey.{d}.\tIN\tTXT\t{}\n",
                    dns::split_txt(value)
                )
            })
            .collect()
    }
}

impl fmt::Display for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

pub fn key_sets(spec: &HostSpec) -> Vec<KeySet> {
    // Hosts of a fleet may share a key directory: each has its own state.
    let host = (!spec.hosts.is_empty()).then(|| spec.hostname().as_str());
    // The domains of each set, in one pass over the domains.
    // Listed sending subdomains publish the same key under their own names.
    let mut domains: std::collections::HashMap<&str, Vec<DomainName>> = Default::default();
    for domain in spec.domains() {
        let names = domains.entry(key_set_of(spec, domain.name)).or_default();
        names.push(domain.name.clone());
        names.extend(domain.subdomains);
    }
    // System mail signed as the mailname publishes the key there too.
    if let crate::spec::SystemMail::Under(domain) = spec.system_mail() {
        domains
            .entry(key_set_of(spec, domain.name))
            .or_default()
            .push(spec.mailname().clone());
    }
    desired::key_sets(spec)
        .into_iter()
        .map(|(name, _)| KeySet {
            domains: domains.remove(name.as_str()).unwrap_or_default(),
            state_file: desired::rotation_state(&name, host),
            legacy_state_file: desired::legacy::rotation_state(&name, host),
            host: host.map(str::to_string),
            name,
        })
        .collect()
}

/// The steps that move the key sets' state out of their key directories,
/// where mailsetup 0.1 kept it (this host's rotation state, the archive).
/// What is there is checked now, before anything is written: a symlink or
/// anything but archived keys is refused, naming it.
pub fn moves(spec: &HostSpec, system: &impl Host) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for set in key_sets(spec) {
        let state = system.file_meta(&set.legacy_state_file)?.is_some();
        let archive = desired::legacy::archive_dir(&set.name);
        let archived = system.read_dir_meta(&archive)?.is_some();
        for entry in system.list_dir(&archive)? {
            if entry.is_dir || !is_key_file_name(&entry.name) {
                bail!(
                    "{}: not an archived key; move it out of {} by hand, then run mailsetup again",
                    system.path(&format!("{archive}/{}", entry.name)).display(),
                    system.path(&archive).display()
                );
            }
        }
        if state || archived {
            out.push(Step::MoveKeySetState {
                set: set.name,
                host: set.host,
            });
        }
    }
    Ok(out)
}

/// `SELECTOR.private` or `SELECTOR.txt`.
pub fn is_key_file_name(name: &str) -> bool {
    name.strip_suffix(".private")
        .or_else(|| name.strip_suffix(".txt"))
        .is_some_and(|s| check_selector(s).is_ok())
}

/// The set's state file as it stands: in the state directory, else (before
/// the move) in the key directory; with its path.
fn state_file(system: &impl Host, set: &KeySet) -> Result<Option<(String, Vec<u8>)>> {
    for path in [&set.state_file, &set.legacy_state_file] {
        if let Some(file) = system.read_file(path)? {
            return Ok(Some((path.clone(), file.content)));
        }
    }
    Ok(None)
}

fn read_state(system: &impl Host, set: &KeySet) -> Result<Option<Rotation>> {
    let Some((path, content)) = state_file(system, set)? else {
        return Ok(None);
    };
    let path = &path;
    let rotation: Rotation = serde_json::from_slice(&content)
        .with_context(|| format!("read the rotation state {path}"))?;
    rotation
        .check()
        .map_err(|e| anyhow!("the rotation state {path} is inconsistent: {e}"))?;
    Ok(Some(rotation))
}

/// Selectors of the private keys present, per key set (`keys/SET/SELECTOR.private`).
pub fn key_selectors(system: &impl Host) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for set in system.list_dir(paths::KEYS_DIR)? {
        if !set.is_dir {
            continue;
        }
        let selectors = system
            .list_dir(&format!("{}/{}", paths::KEYS_DIR, set.name))?
            .into_iter()
            .filter_map(|e| e.name.strip_suffix(".private").map(str::to_string))
            .collect();
        out.insert(set.name, selectors);
    }
    Ok(out)
}

/// The selector each key set signs with according to its rotation state; sets
/// without one are absent (they follow `dkim.selector`).
pub fn signing_selectors(spec: &HostSpec, system: &impl Host) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for set in key_sets(spec) {
        if let Some(active) = read_state(system, &set)?
            .as_ref()
            .and_then(Rotation::active)
        {
            out.insert(set.name.clone(), active.selector.clone());
        }
    }
    Ok(out)
}

/// A rotation state as its file holds it.
pub fn state_json(rotation: &Rotation) -> Result<String> {
    Ok(serde_json::to_string_pretty(rotation)? + "\n")
}

/// The public half of the private key at `path`, if it exists.
pub fn public_key(system: &impl Host, path: &str) -> Result<Option<DkimPublicKey>> {
    let Some(file) = system.read_file(path)? else {
        return Ok(None);
    };
    DkimPublicKey::from_private_pem(&String::from_utf8_lossy(&file.content))
        .with_context(|| format!("read the DKIM key {path}"))
        .map(Some)
}

/// The key sets of one host on one day, as its files say.
pub struct Sets<'a, H> {
    pub spec: &'a HostSpec,
    pub system: &'a H,
    pub today: Date,
    /// Selectors of the private keys present, per key set.
    key_files: BTreeMap<String, Vec<String>>,
    /// The host's accounts, read once when a step first needs an owner.
    accounts: std::cell::OnceCell<Option<crate::host::Accounts>>,
}

impl<'a, H: Host> Sets<'a, H> {
    pub fn new(spec: &'a HostSpec, system: &'a H, today: Date) -> Result<Sets<'a, H>> {
        Ok(Sets {
            spec,
            system,
            today,
            key_files: key_selectors(system)?,
            accounts: Default::default(),
        })
    }

    /// The ids a new file of `owner` gets; none where mailsetup cannot give
    /// files away (not root) or the account does not exist.
    pub fn ids(&self, owner: Owner) -> Result<Option<Ids>> {
        if self.accounts.get().is_none() {
            let accounts = if self.system.can_chown() {
                Some(self.system.accounts()?)
            } else {
                None
            };
            let _ = self.accounts.set(accounts);
        }
        Ok(self
            .accounts
            .get()
            .and_then(|a| a.as_ref()?.ids(owner.user, owner.group)))
    }

    /// The set's rotation and whether it is saved; without a saved one, the key
    /// `dkim.selector` names is the active one (saved by the first step).
    pub fn current(&self, set: &KeySet) -> Result<(Rotation, bool)> {
        if let Some(saved) = read_state(self.system, set)? {
            return Ok((saved, true));
        }
        let pattern = self.spec.dkim.selector.as_str();
        let have = self
            .key_files
            .get(&set.name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let selector = desired::selector_for(pattern, have, self.today);
        let rotation = Rotation {
            selectors: vec![Entry {
                created: selector_date(pattern, &selector),
                selector,
                state: State::Active,
                activated: None,
                retired: None,
                revoked: None,
            }],
        };
        Ok((rotation, false))
    }

    /// The step that saves `rotation` as the set's state over `old` (what its
    /// file holds then), if it differs.
    pub fn save(
        &self,
        set: &KeySet,
        old: Option<Vec<u8>>,
        rotation: &Rotation,
    ) -> Result<Option<Step>> {
        let table = (ROOT, ROTATION_STATE_MODE, false);
        let step = FileWrite::new(
            set.state_file.clone(),
            table,
            self.ids(ROOT)?,
            old,
            state_json(rotation)?,
        );
        Ok(step.step())
    }

    /// What the set's state file holds now (where it stands before the move).
    pub fn saved_bytes(&self, set: &KeySet) -> Result<Option<Vec<u8>>> {
        Ok(state_file(self.system, set)?.map(|(_, content)| content))
    }

    /// Today's selector from `dkim.selector`, with `-2`, `-3`… when it is taken
    /// (listed, or a key file with that name exists or was archived).
    pub fn new_selector(&self, set: &KeySet, rotation: &Rotation) -> Result<String> {
        let pattern = self.spec.dkim.selector.as_str();
        let Some((prefix, suffix)) = pattern.split_once(DATE_PLACEHOLDER) else {
            bail!(
                "dkim.selector is `{pattern}`, without {DATE_PLACEHOLDER}: each new key needs a new \
                 selector; use e.g. `{pattern}-{DATE_PLACEHOLDER}`"
            );
        };
        let date = self.today.strftime("%Y%m%d").to_string();
        for n in 1..100 {
            let stamp = if n == 1 {
                date.clone()
            } else {
                format!("{date}-{n}")
            };
            let selector = check_selector(&format!("{prefix}{stamp}{suffix}"))
                .map_err(|e| anyhow!("dkim.selector: {e}"))?;
            let mut taken = rotation.selectors.iter().any(|e| e.selector == selector);
            let legacy = desired::legacy::archive_dir(&set.name);
            for (key, archived) in KeyPath::archived(&set.name, &selector) {
                let name = archived.rsplit_once('/').expect("a path").1;
                taken = taken
                    || self.system.exists(&key)?
                    || self.system.exists(&archived)?
                    || self.system.exists(&format!("{legacy}/{name}"))?;
            }
            if !taken {
                return Ok(selector);
            }
        }
        bail!("{set}: no free selector for {date}")
    }

    /// Where DNS does not yet serve `public` at `selector` for one of the set's domains.
    fn unserved(
        &self,
        dns: &dyn Dns,
        set: &KeySet,
        selector: &str,
        public: &DkimPublicKey,
    ) -> Vec<String> {
        set.domains
            .iter()
            .filter_map(|d| {
                let name = format!("{selector}._domainkey.{d}");
                let problem = match selector::served(dns, &name) {
                    Ok(Served::Key(key)) if key == *public => return None,
                    Ok(Served::Key(_)) => "serves a different key than the staged one".to_string(),
                    Ok(Served::Missing) => "not published".to_string(),
                    Ok(Served::Revoked) => "published as revoked (empty p=)".to_string(),
                    // The lookup error names the record itself.
                    Err(selector::ServedError::Lookup(e)) => return Some(e.to_string()),
                    Err(e) => e.to_string(),
                };
                Some(format!("{name}: {problem}"))
            })
            .collect()
    }

    /// The staged key of `rotation` and what DNS still lacks for it; `None`
    /// when nothing is staged.
    pub fn check_staged(
        &self,
        dns: &dyn Dns,
        set: &KeySet,
        rotation: &Rotation,
    ) -> Result<Option<(String, Vec<String>)>> {
        let Some(staged) = rotation.staged() else {
            return Ok(None);
        };
        let path = set.private(&staged.selector);
        let public = public_key(self.system, &path)?
            .ok_or_else(|| anyhow!("{set}: the staged key {path} is missing"))?;
        let problems = self.unserved(dns, set, &staged.selector, &public);
        Ok(Some((staged.selector.clone(), problems)))
    }
}

/// Every DKIM selector to publish, for `dns` and `check`: all selectors of the
/// rotation state, or the one `dkim.selector` names for a set without one.
pub fn published(spec: &HostSpec, system: &impl Host, today: Date) -> Result<Vec<DkimSelector>> {
    let sets = Sets::new(spec, system, today)?;
    let keep = spec.dkim.rotation.keep_revoked_days;
    let mut out = Vec::new();
    for set in key_sets(spec) {
        let (rotation, _) = sets.current(&set)?;
        for entry in rotation.listed() {
            if entry.withdrawn(keep, today) {
                continue;
            }
            let value = match entry.state {
                State::Revoked => DkimValue::Revoked,
                state => {
                    let path = set.private(&entry.selector);
                    match public_key(system, &path)? {
                        Some(key) => DkimValue::Key(key),
                        None if state == State::Active => DkimValue::Missing(format!(
                            "the key {path} does not exist yet (apply makes it)"
                        )),
                        None => DkimValue::Missing(format!("the {state} key {path} is missing")),
                    }
                }
            };
            out.push(DkimSelector {
                set: set.name.clone(),
                selector: entry.selector.clone(),
                state: entry.state,
                value,
                note: note(entry, spec.dkim.rotation.grace_days),
            });
        }
    }
    Ok(out)
}

/// The selectors whose revoked record has been published `keep_revoked_days`
/// and is withdrawn now: `(key set, selector)`.
pub fn withdrawn(
    spec: &HostSpec,
    system: &impl Host,
    today: Date,
) -> Result<Vec<(String, String)>> {
    let sets = Sets::new(spec, system, today)?;
    let keep = spec.dkim.rotation.keep_revoked_days;
    let mut out = Vec::new();
    for set in key_sets(spec) {
        let (rotation, _) = sets.current(&set)?;
        for entry in rotation
            .selectors
            .iter()
            .filter(|e| e.withdrawn(keep, today))
        {
            out.push((set.name.clone(), entry.selector.clone()));
        }
    }
    Ok(out)
}

/// The DKIM names of every withdrawn selector: what a push deletes.
pub fn withdrawn_names(spec: &HostSpec, system: &impl Host, today: Date) -> Result<Vec<String>> {
    Ok(withdrawn(spec, system, today)?
        .iter()
        .flat_map(|(set, selector)| dns::dkim_names(spec, set, selector))
        .collect())
}
