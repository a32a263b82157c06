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
//! The state machine is `rotation.rs` (pure), what the host has of it
//! `keysets.rs`. Each command here turns what is due into plan steps (a new
//! key, the archive moves, the new state file, and, when signing switches, the
//! apply that makes opendkim sign with the new key) and hands them to the same
//! `job::execute` as apply: shown, checked at the trust boundary, backed up,
//! put back on failure, undone by `mailsetup rollback`; `--dry-run` only shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use jiff::civil::Date;
use serde::Serialize;

use crate::cli::{KeysTarget, ReportFormat, RotateStep, Target};
use crate::desired::{KeyPath, OPENDKIM, archive_dir, paths};
use crate::exit::Exit;
use crate::hint::Again;
use crate::host::{Host, Lock, ReadOnly, System};
use crate::job::{Job, execute, preflight, show, today};
use crate::keysets::{
    self, KeySet, Sets, key_sets, public_key, published, state_json, withdrawn_names,
};
use crate::plan::{Plan, Step};
use crate::queue::Queue;
use crate::resolve::Every;
use crate::rotation::{Entry, Next, Rotation, after};
use crate::selector::State;
use crate::spec::{HostSpec, ResolverAddr, Spec};
use crate::ui::Ui;
use crate::{dns, push, state};

/// This host's records (`dns`'s, with every selector the rotation keeps
/// published) pushed when the spec names a primary server; `None` otherwise.
/// For `rotate auto`, so keys are published and withdrawn with no human step;
/// without `send`, only what would change is said.
fn push_records(
    spec: &HostSpec,
    system: &impl Host,
    today: Date,
    send: bool,
) -> Result<Option<push::Pushed>> {
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
    push::run(spec, system, &targets, &records, &withdrawn, send).map(Some)
}

/// What one rotate command changes: its steps, the key sets whose signing
/// key switches, and what to tell the operator once it is done.
#[derive(Default)]
struct Changes {
    /// The state of sets that had none saved, as it is before this command:
    /// saved in an apply of its own first, so whatever later fails or is rolled
    /// back, the state still says which key signs (without it the newest key
    /// file would, which may be the one just staged).
    starting: Vec<Step>,
    steps: Vec<Step>,
    /// Set → its new active selector.
    signing: BTreeMap<String, String>,
    /// New staged keys, announced with their records once made: set, selector,
    /// the selector that keeps signing.
    staged: Vec<(KeySet, String, String)>,
    /// Revoked selectors, announced with their empty records.
    revoked: Vec<(KeySet, String)>,
    /// The live KeyTable, read once when a revocation first needs it.
    key_table: Option<String>,
    /// How to run other commands on this spec and system, for hints.
    again: Again,
}

impl Changes {
    /// No change yet but the moves of key sets' state out of their key
    /// directories, where mailsetup 0.1 kept it: they go first.
    fn moving(spec: &HostSpec, system: &System, again: Again) -> Result<Changes> {
        Ok(Changes {
            again,
            starting: keysets::moves(spec, system)?,
            ..Changes::default()
        })
    }

    /// Stages a new key in `set` unless one is staged (which `text` then
    /// says).
    fn stage(
        &mut self,
        sets: &Sets<System>,
        set: &KeySet,
        rotation: &mut Rotation,
        text: &mut String,
    ) -> Result<()> {
        if let Some(staged) = rotation.staged() {
            let path = set.private(&staged.selector);
            let public = public_key(sets.system, &path)?
                .with_context(|| format!("{set}: the staged key {path} is missing"))?;
            *text += &format!(
                "{set}: {} is already staged; it must be published:\n{}",
                staged.selector,
                set.zone_lines(&staged.selector, &public.dns_value())
            );
            return Ok(());
        }
        let active = rotation
            .active()
            .expect("a checked rotation has an active key")
            .selector
            .clone();
        if !sets.system.exists(&set.private(&active))? {
            bail!(
                "{set}: there is no signing key yet ({}): run {} first",
                set.private(&active),
                self.again.cmd("apply")
            );
        }
        let selector = sets.new_selector(set, rotation)?;
        let path = KeyPath::new(&set.name, &selector);
        self.steps.push(Step::GenerateKey {
            set: set.name.clone(),
            selector: selector.clone(),
            bits: sets.spec.dkim.bits.get(),
            domain: set.domains[0].to_string(),
            private_path: path.private,
            txt_path: path.txt,
            ids: sets.ids(OPENDKIM)?,
        });
        rotation.stage(selector.clone(), sets.today);
        self.staged.push((set.clone(), selector, active));
        Ok(())
    }

    /// Revokes a retiring selector: its key is archived; refused while
    /// opendkim's KeyTable still names it.
    fn revoke(
        &mut self,
        sets: &Sets<System>,
        set: &KeySet,
        rotation: &mut Rotation,
        selector: &str,
    ) -> Result<()> {
        if self.key_table.is_none() {
            let table = sets.system.read_file(paths::KEY_TABLE)?;
            self.key_table = Some(
                table
                    .map(|t| String::from_utf8_lossy(&t.content).into_owned())
                    .unwrap_or_default(),
            );
        }
        let private = set.private(selector);
        if self
            .key_table
            .as_deref()
            .is_some_and(|t| t.contains(&format!(":{private}")))
        {
            bail!(
                "{set}: {} still signs with {selector}; run {} so it signs with the active \
                 key, then {}",
                paths::KEY_TABLE,
                self.again.cmd("apply"),
                self.again.cmd("rotate finish")
            );
        }
        self.steps.push(Step::ArchiveKey {
            set: set.name.clone(),
            selector: selector.to_string(),
        });
        rotation.revoke(selector, sets.today);
        self.revoked.push((set.clone(), selector.to_string()));
        Ok(())
    }

    /// Switches `set`'s signing to its staged key.
    fn activate(&mut self, sets: &Sets<System>, set: &KeySet, rotation: &mut Rotation) {
        rotation.activate(sets.today);
        let active = rotation
            .active()
            .expect("an activated rotation has an active key");
        self.signing
            .insert(set.name.clone(), active.selector.clone());
    }

    /// Saves `set`'s state after its other steps, when it changed from
    /// `before` (what `Sets::current` said: the rotation, and whether saved).
    fn save(
        &mut self,
        sets: &Sets<System>,
        set: &KeySet,
        (before, saved): &(Rotation, bool),
        rotation: &Rotation,
    ) -> Result<()> {
        if rotation == before {
            return Ok(());
        }
        let old = if *saved {
            sets.saved_bytes(set)?
        } else {
            self.starting.extend(sets.save(set, None, before)?);
            Some(state_json(before)?.into_bytes())
        };
        self.steps.extend(sets.save(set, old, rotation)?);
        Ok(())
    }

    /// Carries the changes out under the held lock, as apply does: the plan is
    /// shown (with `dry_run`, only that), checked at the boundary, backed up
    /// and executed. When signing switches, the plan also holds what applying
    /// the spec (`job`) with the new active keys changes (the KeyTable,
    /// opendkim's reload), so the state and the signing key switch in one
    /// apply. Returns whether the steps ran.
    fn carry_out(
        &self,
        system: &System,
        held: &Lock,
        job: Option<&Job>,
        dry_run: bool,
        ui: &mut Ui,
    ) -> Result<bool> {
        let root = system.root().display().to_string();
        let job = job.filter(|_| !self.signing.is_empty());
        let make = || -> Result<Plan> {
            let mut plan = match job {
                Some(job) => {
                    let mut facts = job.facts(today()?)?;
                    facts.signing_selectors.extend(self.signing.clone());
                    job.plan(&facts)?
                }
                None => Plan::of(root.clone(), Vec::new()),
            };
            // The starting plan moves them (a dry run shows that once).
            plan.steps
                .retain(|s| !matches!(s, Step::MoveKeySetState { .. }));
            plan.add(self.steps.clone());
            Ok(plan)
        };
        if let Some(job) = job {
            preflight(&job.system, &job.spec)?;
        }
        let starting = Plan::of(root.clone(), self.starting.clone());
        if dry_run {
            if !starting.is_empty() {
                show(&starting, ui)?;
            }
            show(&make()?, ui)?;
            ui.out("\nDry run: nothing was changed.\n")?;
            return Ok(false);
        }
        if !starting.is_empty() {
            ui.out("The rotation starts from the key that signs now; its state is saved first:\n")?;
            let replan = || -> Result<Plan> { bail!("a plan of state files installs no packages") };
            execute(system, held, starting, replan, ui)?;
            ui.out("\n")?;
        }
        execute(system, held, make()?, make, ui)?;
        Ok(true)
    }

    /// What was done, with the records to publish (read from the new keys),
    /// set apart from the plan's output above it.
    fn report(&self, system: &System) -> Result<String> {
        let mut text = String::from("\n");
        for (set, selector, active) in &self.staged {
            let path = set.private(selector);
            let public = public_key(system, &path)?
                .with_context(|| format!("{set}: the new key {path} is missing"))?;
            text += &format!(
                "{set}: staged {selector} ({}-bit key); opendkim keeps signing with {active}. Publish:\n{}",
                public.bits(),
                set.zone_lines(selector, &public.dns_value())
            );
        }
        for (set, selector) in &self.revoked {
            text += &format!(
                "{set}: revoked {selector}; its private key is archived in {}. Publish in place of its record:\n{}",
                system.path(&archive_dir(&set.name)).display(),
                set.zone_lines(selector, dns::REVOKED)
            );
        }
        Ok(text)
    }
}

pub fn run(step: RotateStep, ui: &mut Ui) -> Result<Exit> {
    match step {
        RotateStep::Start { keys, dry_run } => start(&keys, dry_run, ui),
        RotateStep::Activate {
            target,
            resolver,
            force,
            dry_run,
        } => activate(&target, resolver, force, dry_run, ui),
        RotateStep::Finish {
            keys,
            force,
            dry_run,
        } => finish(&keys, force, dry_run, ui),
        RotateStep::Status { keys, format } => status(&keys, format, ui),
        RotateStep::Auto {
            target,
            resolver,
            dry_run,
        } => auto(&target, resolver, dry_run, ui),
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

fn start(keys: &KeysTarget, dry_run: bool, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&keys.spec, keys.host.as_deref(), ui)?;
    let system = System::new(&keys.root)?;
    let lock = state::lock(&system)?;
    let sets = Sets::new(&spec, &system, today()?)?;
    let again = Again::new(Some(&keys.spec), keys.host.as_deref(), &keys.root);
    let mut changes = Changes::moving(&spec, &system, again.clone())?;
    let mut text = String::new();
    for set in key_sets(&spec) {
        let current = sets.current(&set)?;
        let mut rotation = current.0.clone();
        changes.stage(&sets, &set, &mut rotation, &mut text)?;
        changes.save(&sets, &set, &current, &rotation)?;
    }
    if !changes.steps.is_empty() {
        if !changes.carry_out(&system, &lock, None, dry_run, ui)? {
            ui.out(&text)?;
            return Ok(Exit::Ok);
        }
        text += &changes.report(&system)?;
    }
    text += &format!(
        "Once DNS serves these records, run {}: it checks, then switches signing.\n",
        again.cmd("rotate activate")
    );
    ui.out(&text)?;
    Ok(Exit::Ok)
}

fn activate(
    target: &Target,
    resolver: Vec<ResolverAddr>,
    force: bool,
    dry_run: bool,
    ui: &mut Ui,
) -> Result<Exit> {
    let job = Job::<System>::new(target, ui)?;
    let (spec, system) = (&job.spec, &job.system);
    let lock = state::lock(system)?;
    let sets = Sets::new(spec, system, today()?)?;
    let mut dns: Option<Every> = None;
    let mut text = String::new();
    let mut problems = Vec::new();
    let again = Again::new(Some(&target.spec), target.host.as_deref(), &target.root);
    let mut changes = Changes::moving(spec, system, again.clone())?;
    for set in key_sets(spec) {
        let current = sets.current(&set)?;
        let mut rotation = current.0.clone();
        let active = rotation
            .active()
            .map(|e| e.selector.clone())
            .unwrap_or_else(|| "-".into());
        if rotation.staged().is_none() {
            text += &format!("{set}: nothing staged; signing with {active}\n");
            continue;
        }
        let dns = match &dns {
            Some(dns) => dns,
            None => dns.insert(Every::new(resolvers(resolver.clone(), spec))?),
        };
        let (selector, unserved) = sets
            .check_staged(dns, &set, &rotation)?
            .expect("a staged selector");
        problems.extend(unserved);
        text += &format!(
            "{set}: {selector} signs from now on; {active} stays published until {} (due {})\n",
            again.cmd("rotate finish"),
            after(sets.today, spec.dkim.rotation.grace_days)
        );
        changes.activate(&sets, &set, &mut rotation);
        changes.save(&sets, &set, &current, &rotation)?;
    }
    if changes.signing.is_empty() {
        ui.out(&text)?;
        return Ok(Exit::Ok);
    }
    if !problems.is_empty() {
        let list = problems.join("\n  ");
        if !force {
            bail!(
                "DNS does not serve the staged key yet, so signing stays as it is:\n  {list}\n\
                 Publish the records {} prints, wait until your DNS servers have them, and run \
                 {} again (--force switches anyway).",
                again.cmd("dns"),
                again.with_resolvers(&resolver).cmd("rotate activate")
            );
        }
        text = format!("warning: --force: switching although\n  {list}\n{text}");
    }
    ui.out(&(text + "\nSwitching signing:\n"))?;
    changes.carry_out(system, &lock, Some(&job), dry_run, ui)?;
    Ok(Exit::Ok)
}

fn finish(keys: &KeysTarget, force: bool, dry_run: bool, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&keys.spec, keys.host.as_deref(), ui)?;
    let system = System::new(&keys.root)?;
    let lock = state::lock(&system)?;
    let sets = Sets::new(&spec, &system, today()?)?;
    let grace = spec.dkim.rotation.grace_days;
    let again = Again::new(Some(&keys.spec), keys.host.as_deref(), &keys.root);
    let mut changes = Changes::moving(&spec, &system, again)?;
    let queue = Queue::read(&system)?;
    let mut waiting = Vec::new();
    for set in key_sets(&spec) {
        let current = sets.current(&set)?;
        let mut rotation = current.0.clone();
        let due = rotation.finish_due(grace, sets.today);
        for entry in current.0.selectors.iter() {
            if entry.state != State::Retiring {
                continue;
            }
            let queued = queued_with(queue.as_ref(), entry);
            if force || (due.contains(&entry.selector) && queued.is_none()) {
                if let Some(queued) = queued {
                    ui.warn(format_args!("--force: {set}: revoking {queued}"));
                }
                changes.revoke(&sets, &set, &mut rotation, &entry.selector)?;
            } else if let Some(queued) = queued.filter(|_| due.contains(&entry.selector)) {
                waiting.push(format!("{set}: {queued}; --force revokes it now"));
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
        changes.save(&sets, &set, &current, &rotation)?;
    }
    if changes.revoked.is_empty() && !waiting.is_empty() {
        bail!("nothing can be revoked yet:\n  {}", waiting.join("\n  "));
    }
    if changes.revoked.is_empty() {
        ui.out("Nothing to finish: no selector is retiring.\n")?;
        return Ok(Exit::Ok);
    }
    if !changes.carry_out(&system, &lock, None, dry_run, ui)? {
        return Ok(Exit::Ok);
    }
    let mut done = changes.report(&system)?;
    for w in waiting {
        done += &format!("note: {w}\n");
    }
    ui.out(&done)?;
    Ok(Exit::Ok)
}

/// What in the live queue may carry a retiring key's signature, said for
/// the operator; `None` when nothing does (or there is no live queue: under
/// `--root`). Postfix signs on arrival, and the day signing switched is known
/// to the day (UTC), so a message that arrived before that day ended may.
fn queued_with(queue: Option<&Queue>, entry: &Entry) -> Option<String> {
    let queue = queue?;
    let switched = entry.retired?;
    let end = jiff::tz::TimeZone::UTC
        .to_timestamp(
            switched
                .tomorrow()
                .ok()?
                .to_datetime(jiff::civil::Time::midnight()),
        )
        .ok()?;
    if !queue.older_than(end.as_second()) {
        return None;
    }
    let since = queue
        .oldest_arrival
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map(|t| format!("since {}", t.strftime("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_else(|| {
            let bad = queue.not_understood;
            format!("({bad} line(s) of postqueue -j not understood)")
        });
    Some(format!(
        "{}: mail waiting in the queue {since} may carry its signature, made before signing \
         switched on {switched}; Postfix returns what it cannot deliver after \
         maximal_queue_lifetime ({}d); see `mailsetup status`, `postqueue -f`",
        entry.selector,
        crate::spec::QUEUE_LIFETIME_DAYS
    ))
}

#[derive(Serialize)]
struct StatusRow<'a> {
    set: &'a str,
    #[serde(flatten)]
    entry: Entry,
    /// Whether its private key exists (a revoked one's is archived).
    key_exists: bool,
    next: Option<Next>,
    /// From when `next` is due; none for activate, which waits for DNS.
    due: Option<Date>,
}

fn status(keys: &KeysTarget, format: ReportFormat, ui: &mut Ui) -> Result<Exit> {
    let spec = load(&keys.spec, keys.host.as_deref(), ui)?;
    let system = ReadOnly::new(&keys.root)?;
    let host = Sets::new(&spec, &system, today()?)?;
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
            let key_exists =
                entry.state == State::Revoked || system.exists(&set.private(&entry.selector))?;
            let (next, due) = match key_exists {
                false => (Some(Next::Apply), None),
                true => state.next_step(entry, rotation),
            };
            let mut entry = entry.clone();
            if !key_exists {
                // A key not made yet has no creation day.
                entry.created = None;
            }
            rows.push(StatusRow {
                set: &set.name,
                entry,
                key_exists,
                next,
                due,
            });
        }
    }
    match format {
        ReportFormat::Json => ui.out(&(serde_json::to_string_pretty(&rows)? + "\n"))?,
        ReportFormat::Text => {
            let again = Again::new(Some(&keys.spec), keys.host.as_deref(), &keys.root);
            ui.out(&status_text(&rows, &unsaved, &again))?
        }
    }
    Ok(Exit::Ok)
}

fn status_text(rows: &[StatusRow], unsaved: &[&str], again: &Again) -> String {
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
            (Some(Next::Apply), _) => "apply makes the key".to_string(),
            _ => "-".to_string(),
        };
        table.push([
            r.set.to_string(),
            r.entry.selector.clone(),
            match r.key_exists {
                true => r.entry.state.to_string(),
                false => format!("{} (no key yet)", r.entry.state),
            },
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
    if rows.iter().any(|r| !r.key_exists) {
        let _ = writeln!(
            out,
            "\nNo key exists yet where NEXT says so: {} makes it.",
            again.cmd("apply")
        );
    } else if !unsaved.is_empty() {
        let _ = writeln!(
            out,
            "\n{}: no rotation yet; {} begins one.",
            unsaved.join(", "),
            again.cmd("rotate start")
        );
    }
    out
}

fn auto(target: &Target, resolver: Vec<ResolverAddr>, dry_run: bool, ui: &mut Ui) -> Result<Exit> {
    let job = Job::<System>::new(target, ui)?;
    let (spec, system) = (&job.spec, &job.system);
    let lock = state::lock(system)?;
    let sets = Sets::new(spec, system, today()?)?;
    let settings = spec.dkim.rotation;
    let mut dns: Option<Every> = None;
    let mut queue: Option<Option<Queue>> = None;
    let mut text = String::new();
    let again = Again::new(Some(&target.spec), target.host.as_deref(), &target.root);
    let mut changes = Changes::moving(spec, system, again)?;
    for set in key_sets(spec) {
        let current = sets.current(&set)?;
        let mut rotation = current.0.clone();
        let due = rotation.finish_due(settings.grace_days, sets.today);
        if !due.is_empty() {
            let queue = match &queue {
                Some(queue) => queue,
                None => queue.insert(Queue::read(system)?),
            };
            for selector in due {
                let entry = current.0.selectors.iter().find(|e| e.selector == selector);
                let entry = entry.expect("a due selector is one of the set's");
                match queued_with(queue.as_ref(), entry) {
                    Some(queued) => text += &format!("{set}: waiting to revoke {queued}\n"),
                    None => changes.revoke(&sets, &set, &mut rotation, &selector)?,
                }
            }
        } else if rotation.staged().is_some() {
            let dns = match &dns {
                Some(dns) => dns,
                None => dns.insert(Every::new(resolvers(resolver.clone(), spec))?),
            };
            let (selector, unserved) = sets
                .check_staged(dns, &set, &rotation)?
                .expect("a staged selector");
            if !unserved.is_empty() {
                text += &format!(
                    "{set}: waiting to activate {selector}: {}\n",
                    unserved.join("; ")
                );
                continue;
            }
            text += &format!("{set}: DNS serves {selector}; it signs from now on\n");
            changes.activate(&sets, &set, &mut rotation);
        } else if rotation
            .next_rotation(settings.interval_days)
            .is_some_and(|d| d <= sets.today)
        {
            changes.stage(&sets, &set, &mut rotation, &mut text)?;
        }
        changes.save(&sets, &set, &current, &rotation)?;
    }
    if !changes.steps.is_empty() {
        if !text.is_empty() {
            ui.out(&text)?;
            text.clear();
        }
        if changes.carry_out(system, &lock, Some(&job), dry_run, ui)? {
            text += &changes.report(system)?;
        }
    }
    // With a primary server in the spec, DNS follows the state with no human
    // step: a staged key published, a revoked one's `p=`, a withdrawn one
    // deleted. Idempotent: only what differs from what the server has is sent
    // (with --dry-run, only said). A push that fails undoes none of this run's
    // steps: it is reported, the run exits 1, and the next run retries.
    let pushed = push_records(spec, system, sets.today, !dry_run).and_then(|pushed| match pushed {
        Some(pushed) => {
            if pushed.changed {
                text += &pushed.text;
            }
            pushed.result()
        }
        None => Ok(()),
    });
    // Silent when nothing was due, so cron mails only news.
    if !text.is_empty() {
        ui.out(&text)?;
    }
    pushed.context("DNS was not brought up to date; the next run tries again")?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retiring(on: &str) -> Entry {
        Entry {
            selector: "k2026a".into(),
            state: State::Retiring,
            created: None,
            activated: None,
            retired: Some(on.parse().unwrap()),
            revoked: None,
        }
    }

    fn queue(lines: &[&str]) -> Queue {
        let mut q = Queue::default();
        for l in lines {
            if q.line(l).is_err() {
                q.not_understood += 1;
            }
        }
        q
    }

    #[test]
    fn mail_queued_before_the_switch_day_ended_holds_the_revocation() {
        let entry = retiring("2025-12-01");
        // 2025-12-01 23:59:59 UTC and 2025-12-02 00:00:00 UTC.
        let late = r#"{"queue_name": "deferred", "arrival_time": 1764633599, "recipients": []}"#;
        let next = r#"{"queue_name": "deferred", "arrival_time": 1764633600, "recipients": []}"#;
        let held = queued_with(Some(&queue(&[next, late])), &entry).unwrap();
        assert!(
            held.contains("k2026a") && held.contains("since 2025-12-01 23:59 UTC"),
            "{held}"
        );
        assert_eq!(queued_with(Some(&queue(&[next])), &entry), None);
        assert_eq!(queued_with(Some(&queue(&[])), &entry), None);
        // No live queue (--root), or a key that never signed: nothing holds it.
        assert_eq!(queued_with(None, &entry), None);
        let unknown = queued_with(Some(&queue(&["{\"new\": \"format\"}"])), &entry).unwrap();
        assert!(unknown.contains("not understood"), "{unknown}");
    }
}
