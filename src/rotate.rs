//! DKIM key rotation without a message failing DKIM (RFC 6376 selectors,
//! M3AAWG's practice). A key set's selectors move through four states:
//!
//! * **staged** (`rotate start`): a new key under a new date-based selector,
//!   published in DNS, not signing yet;
//! * **active** (`rotate activate`, only once DNS serves the staged key):
//!   opendkim signs with it;
//! * **retiring**: the previous active key, still published for the grace
//!   period so mail in flight verifies;
//! * **revoked** (`rotate finish`): its private key is archived and DNS
//!   publishes an empty `p=` in its place.
//!
//! The state of each key set is `rotation.json` next to its keys, replaced
//! atomically, and is the authority on which selector signs (`signing_selectors`
//! feeds the desired state). A set without it signs with the selector
//! `dkim.selector` names, as before rotation existed. The state machine itself
//! is `rotation.rs` (pure); this module reads and writes the state, makes and
//! archives keys, asks DNS, and holds the `rotate` commands.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use jiff::civil::Date;
use serde::Serialize;

use crate::Exit;
use crate::cli::{KeysTarget, ReportFormat, RotateStep, Target};
use crate::desired::{self, OPENDKIM, key_dir, key_set_of, paths};
use crate::host::{Host, HostMut, Lock, ReadOnly, System};
use crate::keys::{DkimKey, DkimPublicKey};
use crate::resolve::{Dns, Every};
use crate::rotation::{Entry, Rotation, after, note, selector_date};
use crate::selector::{self, DkimSelector, DkimValue, Served, State};
use crate::spec::names::{DATE_PLACEHOLDER, check_selector};
use crate::spec::{DomainName, HostSpec, ResolverAddr, Spec};
use crate::state;
use crate::ui::Ui;
use crate::{dns, push};

/// The rotation state of a key set, in its key directory. Hosts of a fleet that
/// share a key directory each have their own: `rotation-HOSTNAME.json`.
pub const STATE_FILE: &str = "rotation.json";
/// Where revoked private keys go, inside the key directory (0700).
const ARCHIVE_DIR: &str = "archive";

/// A key set: `shared` or a domain, with the domains it signs for.
struct KeySet {
    name: String,
    domains: Vec<DomainName>,
    /// Its rotation state's file name.
    state_name: String,
}

impl KeySet {
    fn dir(&self) -> String {
        key_dir(&self.name)
    }
    fn private(&self, selector: &str) -> String {
        desired::KeyPath::new(&self.name, selector).private
    }
    fn txt(&self, selector: &str) -> String {
        desired::KeyPath::new(&self.name, selector).txt
    }
    fn archive(&self) -> String {
        format!("{}/{ARCHIVE_DIR}", self.dir())
    }
    fn state_file(&self) -> String {
        format!("{}/{}", self.dir(), self.state_name)
    }
    /// Zone lines of one TXT value at `SELECTOR._domainkey.DOMAIN` for every domain.
    fn zone_lines(&self, selector: &str, value: &str) -> String {
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

fn key_sets(spec: &HostSpec) -> Vec<KeySet> {
    let state_name = if spec.hosts.is_empty() {
        STATE_FILE.to_string()
    } else {
        format!("rotation-{}.json", spec.hostname())
    };
    // The domains of each set, in one pass over the domains.
    // Listed sending subdomains publish the same key under their own names.
    let mut domains: std::collections::HashMap<&str, Vec<DomainName>> = Default::default();
    for domain in spec.domains() {
        let names = domains.entry(key_set_of(spec, domain.name)).or_default();
        names.push(domain.name.clone());
        names.extend(domain.subdomains);
    }
    desired::key_sets(spec)
        .into_iter()
        .map(|(name, _)| KeySet {
            domains: domains.remove(name.as_str()).unwrap_or_default(),
            name,
            state_name: state_name.clone(),
        })
        .collect()
}

fn read_state(system: &impl Host, set: &KeySet) -> Result<Option<Rotation>> {
    let path = set.state_file();
    let Some(file) = system.read_file(&path)? else {
        return Ok(None);
    };
    let rotation: Rotation = serde_json::from_slice(&file.content)
        .with_context(|| format!("read the rotation state {path}"))?;
    rotation
        .check()
        .map_err(|e| anyhow!("the rotation state {path} is inconsistent: {e}"))?;
    Ok(Some(rotation))
}

/// Replaces `rotation.json` atomically. It holds no secret; 0644 like the .txt files.
fn write_state(system: &impl HostMut, set: &KeySet, rotation: &Rotation) -> Result<()> {
    let json = serde_json::to_string_pretty(rotation)? + "\n";
    system
        .write_file(&set.state_file(), json.as_bytes(), 0o644, None)
        .with_context(|| format!("save the rotation state of {set}"))
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

/// Every DKIM selector to publish, for `dns` and `check`: all selectors of the
/// rotation state, or the one `dkim.selector` names for a set without one.
pub fn published(spec: &HostSpec, system: &impl Host, today: Date) -> Result<Vec<DkimSelector>> {
    let host = Work::new(spec, system, today)?;
    let keep = spec.dkim.rotation.keep_revoked_days;
    let mut out = Vec::new();
    for set in key_sets(spec) {
        let (rotation, _) = host.current(&set)?;
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
                            "the key {path} does not exist yet; run mailsetup apply first"
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
    let host = Work::new(spec, system, today)?;
    let keep = spec.dkim.rotation.keep_revoked_days;
    let mut out = Vec::new();
    for set in key_sets(spec) {
        let (rotation, _) = host.current(&set)?;
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

/// This host's records (`dns`'s, with every selector the rotation keeps
/// published) pushed when the spec names a primary server; `None` otherwise.
/// For `rotate auto`, so keys are published and withdrawn with no human step.
fn push_records(spec: &HostSpec, system: &impl Host, today: Date) -> Result<Option<push::Pushed>> {
    if spec.dns.server.is_none()
        && spec
            .dns
            .zones
            .values()
            .all(|z| z.as_ref().is_none_or(|z| z.server.is_none()))
    {
        return Ok(None);
    }
    let (records, missing) = dns::records_for(spec, &published(spec, system, today)?);
    if !missing.is_empty() {
        bail!("not pushed: {}", missing.join("; "));
    }
    let withdrawn = withdrawn_names(spec, system, today)?;
    let targets = push::Targets {
        server: None,
        tsig_key: None,
    };
    push::run(spec, system, &targets, &records, &withdrawn, true).map(Some)
}

/// The DKIM names of every withdrawn selector: what a push deletes.
pub fn withdrawn_names(spec: &HostSpec, system: &impl Host, today: Date) -> Result<Vec<String>> {
    Ok(withdrawn(spec, system, today)?
        .iter()
        .flat_map(|(set, selector)| dns::dkim_names(spec, set, selector))
        .collect())
}

fn public_key(system: &impl Host, path: &str) -> Result<Option<DkimPublicKey>> {
    let Some(file) = system.read_file(path)? else {
        return Ok(None);
    };
    DkimPublicKey::from_private_pem(&String::from_utf8_lossy(&file.content))
        .with_context(|| format!("read the DKIM key {path}"))
        .map(Some)
}

/// The spec and target system one rotation step works on.
struct Work<'a, H> {
    spec: &'a HostSpec,
    system: &'a H,
    today: Date,
    /// Selectors of the private keys present, per key set.
    key_files: BTreeMap<String, Vec<String>>,
}

impl<'a, H: Host> Work<'a, H> {
    fn new(spec: &'a HostSpec, system: &'a H, today: Date) -> Result<Work<'a, H>> {
        Ok(Work {
            spec,
            system,
            today,
            key_files: system.key_selectors()?,
        })
    }

    /// The set's rotation and whether it is saved; without a saved one, the key
    /// `dkim.selector` names is the active one (saved by the first step).
    fn current(&self, set: &KeySet) -> Result<(Rotation, bool)> {
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

    /// Today's selector from `dkim.selector`, with `-2`, `-3`… when it is taken
    /// (listed, or a key file with that name exists or was archived).
    fn new_selector(&self, set: &KeySet, rotation: &Rotation) -> Result<String> {
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
            let archived = format!("{}/{selector}.private", set.archive());
            let taken = rotation.selectors.iter().any(|e| e.selector == selector)
                || [set.private(&selector), set.txt(&selector), archived]
                    .iter()
                    .any(|p| self.system.exists(p));
            if !taken {
                return Ok(selector);
            }
        }
        bail!("{set}: no free selector for {date}")
    }
}

impl<H: HostMut> Work<'_, H> {
    /// Makes the key pair of a new selector: the private key 0600 from its
    /// creation, the .txt as opendkim-genkey writes it.
    fn generate(&self, set: &KeySet, selector: &str) -> Result<DkimPublicKey> {
        let bits = self.spec.dkim.bits.get();
        let key = DkimKey::generate(bits)
            .with_context(|| format!("generate the DKIM key {set}/{selector}"))?;
        let ids = if self.system.can_chown() {
            self.system.accounts()?.ids(OPENDKIM.user, OPENDKIM.group)
        } else {
            None
        };
        self.system.create_private_file(
            &set.private(selector),
            key.private_pem().as_bytes(),
            ids,
        )?;
        let public = key.public();
        let txt = public.genkey_txt(selector, set.domains[0].as_str());
        self.system
            .write_file(&set.txt(selector), txt.as_bytes(), 0o644, ids)?;
        Ok(public)
    }

    /// Stages a new key when the set has none staged; returns what it did.
    fn start(&self, set: &KeySet, rotation: &mut Rotation) -> Result<String> {
        if let Some(staged) = rotation.staged() {
            let public =
                public_key(self.system, &set.private(&staged.selector))?.ok_or_else(|| {
                    anyhow!(
                        "{set}: the staged key {} is missing",
                        set.private(&staged.selector)
                    )
                })?;
            return Ok(format!(
                "{set}: {} is already staged; it must be published:\n{}",
                staged.selector,
                set.zone_lines(&staged.selector, &public.dns_value())
            ));
        }
        let active = rotation
            .active()
            .expect("a checked rotation has an active key");
        if !self.system.exists(&set.private(&active.selector)) {
            bail!(
                "{set}: there is no signing key yet ({}): run mailsetup apply first",
                set.private(&active.selector)
            );
        }
        let active = active.selector.clone();
        let selector = self.new_selector(set, rotation)?;
        let public = self.generate(set, &selector)?;
        rotation.stage(selector.clone(), self.today);
        write_state(self.system, set, rotation)?;
        Ok(format!(
            "{set}: staged {selector} ({}-bit key); opendkim keeps signing with {active}. Publish:\n{}",
            public.bits(),
            set.zone_lines(&selector, &public.dns_value())
        ))
    }
}

impl<H: Host> Work<'_, H> {
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
    fn check_staged(
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

impl<H: HostMut> Work<'_, H> {
    /// Archives the private key of a retiring selector and marks it revoked;
    /// refused while opendkim's KeyTable still names it.
    fn revoke(&self, set: &KeySet, rotation: &mut Rotation, selector: &str) -> Result<String> {
        let private = set.private(selector);
        if let Some(table) = self.system.read_file(paths::KEY_TABLE)?
            && String::from_utf8_lossy(&table.content).contains(&format!(":{private}"))
        {
            bail!(
                "{set}: {} still signs with {selector}; run mailsetup apply so it signs with \
                 the active key, then finish",
                paths::KEY_TABLE
            );
        }
        let archive = set.archive();
        if self.system.read_dir_meta(&archive)?.is_none() {
            self.system.create_dir(&archive, 0o700, None)?;
        }
        for from in [private, set.txt(selector)] {
            if self.system.exists(&from) {
                let name = from.rsplit('/').next().expect("a file name");
                self.system
                    .rename_noreplace(&from, &format!("{archive}/{name}"))?;
            }
        }
        rotation.revoke(selector, self.today);
        write_state(self.system, set, rotation)?;
        Ok(format!(
            "{set}: revoked {selector}; its private key is archived in {archive}. Publish in place of its record:\n{}",
            set.zone_lines(selector, dns::REVOKED)
        ))
    }
}

/// The apply lock, so rotation steps and applies never interleave.
fn lock(system: &System) -> Result<Lock> {
    state::ensure_state_dir(system)?;
    system.lock(state::LOCK)
}

/// A set whose signing key changes: its state before and after.
struct Switch {
    set: KeySet,
    before: Rotation,
    after: Rotation,
}

/// Saves the new states and applies the spec under the lock already held, so
/// opendkim signs with the new active keys the moment the state says so. When
/// apply fails, the old states are put back.
fn switch_signing(
    system: &System,
    target: &Target,
    lock: &Lock,
    switches: &[Switch],
    text: String,
    ui: &mut Ui,
) -> Result<Exit> {
    let restore = |upto: usize| -> String {
        let failed: Vec<String> = switches[..upto]
            .iter()
            .filter_map(|s| write_state(system, &s.set, &s.before).err())
            .map(|e| format!("{e:#}"))
            .collect();
        if failed.is_empty() {
            "the rotation state was put back".into()
        } else {
            format!(
                "putting the rotation state back failed too: {}",
                failed.join("; ")
            )
        }
    };
    for (i, s) in switches.iter().enumerate() {
        if let Err(e) = write_state(system, &s.set, &s.after) {
            return Err(e.context(restore(i)));
        }
    }
    ui.out(&(text + "\nSwitching signing (mailsetup apply):\n"))?;
    // The spec's warnings were printed when rotate loaded it.
    let job = crate::job::Job::quiet(target)?;
    crate::job::apply_locked(&job, lock, ui).map_err(|e| {
        e.context(format!(
            "signing was not switched; {}",
            restore(switches.len())
        ))
    })
}

pub fn run(step: RotateStep, ui: &mut Ui) -> Result<Exit> {
    match step {
        RotateStep::Start { keys } => start(&keys, ui),
        RotateStep::Activate {
            target,
            resolver,
            force,
        } => activate(&target, resolver, force, ui),
        RotateStep::Finish { keys, force } => finish(&keys, force, ui),
        RotateStep::Status { keys, format } => status(&keys, format, ui),
        RotateStep::Auto { target, resolver } => auto(&target, resolver, ui),
    }
}

/// The resolvers a staged key must be served by: the command line's, else
/// `check.resolver`, else (none) each of /etc/resolv.conf.
fn resolvers(given: Vec<ResolverAddr>, spec: &Spec) -> Vec<ResolverAddr> {
    if given.is_empty() {
        spec.check.resolver.into_iter().collect()
    } else {
        given
    }
}

/// The spec, for one host of a fleet when `host` names it.
fn load(spec: &Path, host: Option<&str>, ui: &mut Ui) -> Result<HostSpec> {
    crate::job::load_spec(spec, ui)?.for_host(host)
}

fn start(keys: &KeysTarget, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&keys.spec, keys.host.as_deref(), ui)?;
    let system = System::new(&keys.root)?;
    let _lock = lock(&system)?;
    let host = Work::new(&spec, &system, crate::job::today()?)?;
    let mut text = String::new();
    for set in key_sets(&spec) {
        let (mut rotation, _) = host.current(&set)?;
        text += &host.start(&set, &mut rotation)?;
    }
    text += &format!(
        "Once DNS serves these records, run `mailsetup rotate activate {}`: it checks, then switches signing.\n",
        keys.spec.display()
    );
    ui.out(&text)?;
    Ok(Exit::Ok)
}

fn activate(
    target: &Target,
    resolver: Vec<ResolverAddr>,
    force: bool,
    ui: &mut Ui,
) -> Result<Exit> {
    let spec = load(&target.spec, target.host.as_deref(), ui)?;
    let system = System::new(&target.root)?;
    let lock = lock(&system)?;
    let host = Work::new(&spec, &system, crate::job::today()?)?;
    let dns = Every::new(resolvers(resolver, &spec))?;
    let mut text = String::new();
    let mut problems = Vec::new();
    let mut switches = Vec::new();
    for set in key_sets(&spec) {
        let (rotation, _) = host.current(&set)?;
        let Some((selector, unserved)) = host.check_staged(&dns, &set, &rotation)? else {
            let active = rotation
                .active()
                .map(|e| e.selector.as_str())
                .unwrap_or("-");
            text += &format!("{set}: nothing staged; signing with {active}\n");
            continue;
        };
        problems.extend(unserved);
        let mut next = rotation.clone();
        next.activate(host.today);
        text += &format!(
            "{set}: {selector} signs from now on; {} stays published until `mailsetup rotate finish` (due {})\n",
            rotation
                .active()
                .map(|e| e.selector.as_str())
                .unwrap_or("-"),
            after(host.today, spec.dkim.rotation.grace_days)
        );
        switches.push(Switch {
            set,
            before: rotation,
            after: next,
        });
    }
    if switches.is_empty() {
        ui.out(&text)?;
        return Ok(Exit::Ok);
    }
    if !problems.is_empty() {
        let list = problems.join("\n  ");
        if !force {
            bail!(
                "DNS does not serve the staged key yet, so signing stays as it is:\n  {list}\n\
                 Publish the records `mailsetup dns` prints, wait until your DNS servers have them, \
                 and run activate again (--force switches anyway)."
            );
        }
        text = format!("warning: --force: switching although\n  {list}\n{text}");
    }
    switch_signing(&system, target, &lock, &switches, text, ui)
}

fn finish(keys: &KeysTarget, force: bool, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&keys.spec, keys.host.as_deref(), ui)?;
    let system = System::new(&keys.root)?;
    let _lock = lock(&system)?;
    let host = Work::new(&spec, &system, crate::job::today()?)?;
    let grace = spec.dkim.rotation.grace_days;
    let mut done = String::new();
    let mut waiting = Vec::new();
    for set in key_sets(&spec) {
        let (mut rotation, _) = host.current(&set)?;
        let due = rotation.finish_due(grace, host.today);
        for entry in rotation.selectors.clone() {
            if entry.state != State::Retiring {
                continue;
            }
            if force || due.contains(&entry.selector) {
                done += &host.revoke(&set, &mut rotation, &entry.selector)?;
            } else {
                waiting.push(format!(
                    "{set}: {} stays published until {} ({} days of grace; --force revokes it now)",
                    entry.selector,
                    entry
                        .retired
                        .map(|d| after(d, grace).to_string())
                        .unwrap_or_default(),
                    grace.get()
                ));
            }
        }
    }
    if done.is_empty() && !waiting.is_empty() {
        bail!("the grace period is not over:\n  {}", waiting.join("\n  "));
    }
    if done.is_empty() {
        ui.out("Nothing to finish: no selector is retiring.\n")?;
        return Ok(Exit::Ok);
    }
    for w in waiting {
        done += &format!("note: {w}\n");
    }
    ui.out(&done)?;
    Ok(Exit::Ok)
}

/// What comes next for a selector, in `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Next {
    /// `rotate start` stages a new key.
    Start,
    /// `rotate activate`, once DNS serves the key.
    Activate,
    /// `rotate finish` revokes it.
    Finish,
}

#[derive(Serialize)]
struct StatusRow<'a> {
    set: &'a str,
    #[serde(flatten)]
    entry: &'a Entry,
    next: Option<Next>,
    /// From when `next` is due; none for activate, which waits for DNS.
    due: Option<Date>,
}

fn status(keys: &KeysTarget, format: ReportFormat, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&keys.spec, keys.host.as_deref(), ui)?;
    let system = ReadOnly::new(&keys.root)?;
    let host = Work::new(&spec, &system, crate::job::today()?)?;
    let rotation = &spec.dkim.rotation;
    let sets = key_sets(&spec);
    let mut states = Vec::new();
    for set in &sets {
        states.push((set, host.current(set)?));
    }
    let mut rows = Vec::new();
    let mut unsaved = Vec::new();
    for (set, (state, saved)) in &states {
        if !saved {
            unsaved.push(set.name.as_str());
        }
        for entry in state.listed() {
            let (next, due) = match entry.state {
                State::Active if state.staged().is_none() => (
                    Some(Next::Start),
                    state.next_rotation(rotation.interval_days),
                ),
                State::Staged => (Some(Next::Activate), None),
                State::Retiring => (
                    Some(Next::Finish),
                    entry.retired.map(|d| after(d, rotation.grace_days)),
                ),
                State::Active | State::Revoked => (None, None),
            };
            rows.push(StatusRow {
                set: &set.name,
                entry,
                next,
                due,
            });
        }
    }
    match format {
        ReportFormat::Json => ui.out(&(serde_json::to_string_pretty(&rows)? + "\n"))?,
        ReportFormat::Text => ui.out(&status_text(&rows, &unsaved))?,
    }
    Ok(Exit::Ok)
}

fn status_text(rows: &[StatusRow], unsaved: &[&str]) -> String {
    let day = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
    let mut table = vec![
        [
            "SET",
            "SELECTOR",
            "STATE",
            "CREATED",
            "ACTIVATED",
            "RETIRED",
            "REVOKED",
            "NEXT",
        ]
        .map(String::from),
    ];
    for r in rows {
        let next = match (r.next, r.due) {
            (Some(Next::Activate), _) => "activate once DNS serves it".to_string(),
            (Some(Next::Start), Some(due)) => format!("start from {due}"),
            (Some(Next::Finish), Some(due)) => format!("finish from {due}"),
            _ => "-".to_string(),
        };
        table.push([
            r.set.to_string(),
            r.entry.selector.clone(),
            r.entry.state.to_string(),
            day(r.entry.created),
            day(r.entry.activated),
            day(r.entry.retired),
            day(r.entry.revoked),
            next,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if !unsaved.is_empty() {
        let _ = writeln!(
            out,
            "\n{}: no rotation yet; `mailsetup rotate start` begins one.",
            unsaved.join(", ")
        );
    }
    out
}

fn auto(target: &Target, resolver: Vec<ResolverAddr>, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&target.spec, target.host.as_deref(), ui)?;
    let system = System::new(&target.root)?;
    let lock = lock(&system)?;
    let host = Work::new(&spec, &system, crate::job::today()?)?;
    let settings = spec.dkim.rotation;
    let mut dns: Option<Every> = None;
    let mut text = String::new();
    let mut switches = Vec::new();
    for set in key_sets(&spec) {
        let (mut rotation, _) = host.current(&set)?;
        let due = rotation.finish_due(settings.grace_days, host.today);
        if !due.is_empty() {
            for selector in due {
                text += &host.revoke(&set, &mut rotation, &selector)?;
            }
            continue;
        }
        if rotation.staged().is_some() {
            let dns = match &dns {
                Some(dns) => dns,
                None => dns.insert(Every::new(resolvers(resolver.clone(), &spec))?),
            };
            let (selector, unserved) = host
                .check_staged(dns, &set, &rotation)?
                .expect("a staged selector");
            if unserved.is_empty() {
                let mut next = rotation.clone();
                next.activate(host.today);
                text += &format!("{set}: DNS serves {selector}; it signs from now on\n");
                switches.push(Switch {
                    set,
                    before: rotation,
                    after: next,
                });
            } else {
                text += &format!(
                    "{set}: waiting to activate {selector}: {}\n",
                    unserved.join("; ")
                );
            }
            continue;
        }
        if rotation
            .next_rotation(settings.interval_days)
            .is_some_and(|d| d <= host.today)
        {
            text += &host.start(&set, &mut rotation)?;
        }
    }
    // With a primary server in the spec, DNS follows the state with no human
    // step: a staged key published, a revoked one's `p=`, a withdrawn one
    // deleted. Idempotent: only what differs from what the server has is sent.
    // A push that fails stops neither this run's steps (already saved) nor a due
    // activation: it is reported, the run exits 1, and the next run retries.
    let pushed = push_records(&spec, &system, host.today).and_then(|pushed| match pushed {
        Some(pushed) => {
            if pushed.changed {
                text += &pushed.text;
            }
            pushed.result()
        }
        None => Ok(()),
    });
    let done = if !switches.is_empty() {
        switch_signing(&system, target, &lock, &switches, text, ui)?
    } else {
        // Silent when nothing was due, so cron mails only news.
        if !text.is_empty() {
            ui.out(&text)?;
        }
        Exit::Ok
    };
    pushed.context("DNS was not brought up to date; the next run tries again")?;
    Ok(done)
}
