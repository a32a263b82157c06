//! mailsetup: one YAML spec → a send-only, DKIM-signing Postfix + OpenDKIM server.
//!
//! The pipeline is plain values: `spec` (YAML → Spec) → `desired` (files, keys,
//! directories the spec asks for) → `actual` (what the host has) → `plan` (the
//! steps between them) → `apply`. Only `system` touches the host.

pub mod actual;
pub mod apply;
pub mod backup;
pub mod boundary;
pub mod bundle;
pub mod check;
pub mod ci;
pub mod cli;
pub mod desired;
pub mod dns;
pub mod keys;
pub mod octodns;
pub mod packages;
pub mod plan;
pub mod push;
pub mod resolve;
pub mod rotate;
pub mod saved;
pub mod show;
pub mod signature;
pub mod source;
pub mod spec;
pub mod system;
pub mod templates;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser};

use cli::{Cli, Command, DnsFormat, PlanFormat, Target};
use desired::{Desired, HostFacts};
use spec::Spec;
use system::System;

/// Exit status: success, error, and "plan has changes" (with --detailed-exitcode).
const EXIT_ERROR: u8 = 1;
const EXIT_CHANGES: u8 = 2;

/// The starter spec written by `init`.
const STARTER: &str = include_str!("../examples/starter.yaml");

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let mut stderr = anstream::stderr();
            let red = anstyle::AnsiColor::Red.on_default().bold();
            let _ = writeln!(stderr, "{red}error:{red:#} {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one command; returns the exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Init { path, force } => init(&path, force),
        Command::Validate { spec } => {
            let spec_loaded = load_spec(&spec)?;
            let domains = spec_loaded.domains.len();
            out(format!(
                "{}: valid ({domains} domain{})\n",
                spec.display(),
                if domains == 1 { "" } else { "s" }
            ))
        }
        Command::Plan {
            target,
            format,
            detailed_exitcode,
            out: save,
        } => {
            let job = Job::new(&target)?;
            let date = today()?;
            let plan = job.plan(&job.plan_facts(date)?)?;
            if let Some(file) = save {
                saved::save(&plan, &job.source, date, &file)?;
            }
            match format {
                PlanFormat::Text => colored(show::plan_text(&plan))?,
                PlanFormat::Json => out(serde_json::to_string_pretty(&plan.redacted())? + "\n")?,
            };
            Ok(if detailed_exitcode && !plan.is_empty() {
                EXIT_CHANGES
            } else {
                0
            })
        }
        Command::Apply {
            spec: Some(spec),
            root,
            templates,
            host,
            plan: None,
            bundle: None,
            no_install_packages,
            ..
        } => apply(&Target {
            spec,
            root,
            host,
            templates,
            no_install_packages,
        }),
        Command::Apply {
            plan: Some(file),
            root,
            ..
        } => apply_saved(&file, &root),
        Command::Apply {
            bundle: Some(file),
            root,
            allowed_signers,
            no_install_packages,
            ..
        } => ci::apply_bundle(
            &file,
            &root,
            allowed_signers.as_deref(),
            no_install_packages,
        ),
        Command::Apply { .. } => bail!("apply needs a spec, --plan or --bundle"),
        Command::Bundle(args) => ci::bundle(args),
        Command::PublicKeys {
            spec,
            host,
            root,
            out,
        } => ci::public_keys(&spec, host.as_deref(), &root, &out),
        Command::Dns(args) => dns(&args),
        Command::Rollback { root } => rollback(&root),
        Command::Schema => out(schema_json() + "\n"),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mailsetup", &mut text);
            out(String::from_utf8_lossy(&text).into_owned())
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .context("render the man page")?;
            out(String::from_utf8_lossy(&text).into_owned())
        }
        Command::Rotate { step } => rotate::run(step),
        Command::Check {
            spec,
            root,
            host,
            resolver,
            format,
        } => check::run(&spec, &root, host.as_deref(), resolver, format),
    }
}

/// The JSON Schema of the spec, as kept in schemas/.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Spec);
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}

pub(crate) fn out(text: String) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("write to standard output")?;
    stdout.flush().context("write to standard output")?;
    Ok(0)
}

pub(crate) fn colored(text: String) -> Result<u8> {
    let mut stdout = anstream::stdout();
    stdout
        .write_all(text.as_bytes())
        .context("write to standard output")?;
    stdout.flush().context("write to standard output")?;
    Ok(0)
}

pub(crate) fn load_spec(path: &Path) -> Result<Spec> {
    let (spec, warnings) = spec::load(path)?;
    warn_spec(path, &warnings);
    Ok(spec)
}

pub(crate) fn warn_spec(path: &Path, warnings: &[spec::Warning]) {
    let mut stderr = anstream::stderr();
    let yellow = anstyle::AnsiColor::Yellow.on_default().bold();
    for w in warnings {
        let _ = writeln!(stderr, "{yellow}warning:{yellow:#} {}: {w}", path.display());
    }
}

fn init(path: &Path, force: bool) -> Result<u8> {
    let text = STARTER
        .lines()
        .skip_while(|l| l.starts_with("# yaml-language-server"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    if path == Path::new("-") {
        return out(text);
    }
    if path.exists() && !force {
        bail!("{} exists; use --force to overwrite it", path.display());
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    out(format!(
        "wrote {}: edit it, then run `mailsetup plan {}`\n",
        path.display(),
        path.display()
    ))
}

/// The loaded spec, templates and target system shared by plan and apply.
pub(crate) struct Job {
    pub(crate) spec: Spec,
    /// What the spec and templates were read from; saved plans carry it.
    pub(crate) source: source::Source,
    pub(crate) templates: templates::Templates,
    pub(crate) system: System,
}

impl Job {
    /// The job a command line names; prints the spec's warnings.
    pub(crate) fn new(target: &Target) -> Result<Job> {
        let (job, warnings) =
            Self::from_source(source::Source::read(target)?, &target.spec, &target.root)?;
        warn_spec(&target.spec, &warnings);
        Ok(job)
    }

    /// Like `new`, for callers that printed the spec's warnings already.
    pub(crate) fn quiet(target: &Target) -> Result<Job> {
        Ok(Self::from_source(source::Source::read(target)?, &target.spec, &target.root)?.0)
    }

    /// The job a source names (read from files, a saved plan or a bundle), with
    /// the spec's warnings; `label` names the spec in errors.
    pub(crate) fn from_source(
        source: source::Source,
        label: &Path,
        root: &Path,
    ) -> Result<(Job, Vec<spec::Warning>)> {
        let (mut spec, warnings) = source.spec(label)?;
        spec.host.install_packages &= !source.skip_packages;
        let job = Job {
            spec,
            templates: source.templates()?,
            source,
            system: System::new(root)?,
        };
        Ok((job, warnings))
    }

    /// What the host says the desired state depends on. The relay password
    /// file must exist, since the credentials file is written from it.
    pub(crate) fn facts(&self, today: jiff::civil::Date) -> Result<HostFacts> {
        self.host_facts(today, false)
    }

    /// Like `facts`, for a plan: a relay password file that does not exist yet
    /// is a warning (apply refuses until it does), so the whole plan still shows.
    pub(crate) fn plan_facts(&self, today: jiff::civil::Date) -> Result<HostFacts> {
        self.host_facts(today, true)
    }

    fn host_facts(&self, today: jiff::civil::Date, planning: bool) -> Result<HostFacts> {
        let relay_password = match self.spec.host.relay.as_ref().and_then(|r| r.auth.as_ref()) {
            None => None,
            Some(auth) => match self.system.read_secret_line(auth.password_file.as_str())? {
                Some(password) => Some(password),
                None if planning => {
                    warn_missing(&[format!(
                        "the relay password file {} does not exist yet: the plan shows \
                         /etc/postfix/sasl_passwd without it, and apply refuses until it exists \
                         (one line, root's, mode 0600)",
                        auth.password_file
                    )]);
                    Some(String::new())
                }
                None => bail!(
                    "the relay password file {} does not exist: create it (one line, the \
                     password; owned by root, mode 0600), then apply again",
                    self.system.path(auth.password_file.as_str()).display()
                ),
            },
        };
        Ok(HostFacts {
            key_selectors: self.system.key_selectors()?,
            signing_selectors: rotate::signing_selectors(&self.spec, &self.system)?,
            relay_password,
            today,
        })
    }

    pub(crate) fn desired(&self, facts: &HostFacts) -> Result<Desired> {
        desired::desired(&self.spec, &self.templates, facts)
    }

    /// The plan from what the host has now to `desired`.
    pub(crate) fn plan_to(&self, desired: Desired) -> Result<plan::Plan> {
        let actual = actual::read(&self.system, &desired)?;
        Ok(plan::plan(
            &self.system.root().display().to_string(),
            desired,
            actual,
        ))
    }

    /// The plan from what the host has now to what the spec asks.
    fn plan(&self, facts: &HostFacts) -> Result<plan::Plan> {
        self.plan_to(self.desired(facts)?)
    }
}

/// The day new keys are dated: today in UTC, or SOURCE_DATE_EPOCH when set
/// (reproducible builds and tests).
pub(crate) fn today() -> Result<jiff::civil::Date> {
    let now = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: i64 = s
                .trim()
                .parse()
                .context("SOURCE_DATE_EPOCH is not a number of seconds")?;
            jiff::Timestamp::from_second(secs).context("SOURCE_DATE_EPOCH is out of range")?
        }
        Err(_) => jiff::Timestamp::now(),
    };
    Ok(now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
}

fn apply(target: &Target) -> Result<u8> {
    let job = Job::new(target)?;
    // Render before touching anything: template or spec errors write nothing.
    let facts = job.facts(today()?)?;
    let desired = job.desired(&facts)?;
    preflight(&job.system, &job.spec)?;
    backup::ensure_state_dir(&job.system)?;
    let lock = job.system.lock(backup::LOCK)?;
    apply_rendered(&job, &lock, Some((facts, desired)))
}

/// Applies while the caller holds the apply lock (`apply` itself, and `rotate`,
/// which saves its state and switches signing under one lock). The host is read
/// again under the lock.
pub(crate) fn apply_locked(job: &Job, held: &nix::fcntl::Flock<std::fs::File>) -> Result<u8> {
    apply_rendered(job, held, None)
}

/// `apply_locked`, reusing what was rendered before the lock was taken when the
/// host facts it came from are still the same (at 100,000 domains a render
/// takes seconds).
fn apply_rendered(
    job: &Job,
    _held: &nix::fcntl::Flock<std::fs::File>,
    rendered: Option<(HostFacts, Desired)>,
) -> Result<u8> {
    preflight(&job.system, &job.spec)?;
    let facts = job.facts(today()?)?;
    let desired = match rendered {
        Some((before, desired)) if before == facts => desired,
        _ => job.desired(&facts)?,
    };
    let plan = job.plan_to(desired)?;
    execute(&job.system, plan, || job.plan(&job.facts(today()?)?))
}

/// The live system needs the daemons' packages before anything is written.
pub(crate) fn preflight(system: &System, spec: &Spec) -> Result<()> {
    // Where mailsetup installs the packages, the plan does it first.
    if !system.is_live() || spec.host.install_packages {
        return Ok(());
    }
    for program in ["postconf", "postalias", "opendkim"] {
        if system.find_program(program).is_none() {
            bail!(
                "{program} is not installed, and host.install_packages is false: install \
                 the packages first: apt-get install postfix opendkim opendkim-tools"
            );
        }
    }
    let relay_auth = spec.host.relay.as_ref().is_some_and(|r| r.auth.is_some());
    if relay_auth && !system.has_sasl_login_mechanisms() {
        bail!(
            "host.relay.auth needs the SASL PLAIN/LOGIN mechanisms, or every message stays \
             deferred (\"no mechanism available\"): apt-get install libsasl2-modules"
        );
    }
    Ok(())
}

/// Shows, checks and applies a plan, and prints what was done.
pub(crate) fn execute(
    system: &System,
    plan: plan::Plan,
    replan: impl FnOnce() -> Result<plan::Plan>,
) -> Result<u8> {
    // The one gate every plan passes, whatever channel produced it.
    boundary::check(&plan)?;
    colored(show::plan_text(&plan))?;
    if plan.is_empty() {
        return Ok(0);
    }
    // Packages first; then the host has changed (users, directories, tools), so
    // the rest is planned again against it, and the services are started.
    let plan = match plan.steps.first() {
        Some(plan::Step::InstallPackages { packages }) => {
            let names: Vec<&str> = packages.iter().map(String::as_str).collect();
            system.install_packages(&names)?;
            out(format!(
                "\nInstalled {}; planning the rest again with them in place.\n",
                names.join(" ")
            ))?;
            let mut again = replan()?;
            again.after_install(packages.clone());
            boundary::check(&again)?;
            again
        }
        _ => plan,
    };
    let plan = &plan;
    // New keys are made on the other cores while the daemons check the staged
    // configuration.
    let (checked, keys) = std::thread::scope(|scope| {
        let keys = scope.spawn(|| apply::generate_keys(plan));
        let checked = apply::check_staged(system, plan);
        (checked, keys.join().expect("key generation does not panic"))
    });
    let mut notes = checked.context(
        "check the new configuration; nothing was changed, the live files are untouched",
    )?;
    let report = apply::apply(system, plan, &keys?)?;
    notes.extend(report.notes);
    let mut text = String::from("\nApplied:\n");
    for line in plan
        .installed
        .iter()
        .map(|p| format!("installed {p}"))
        .chain(report.done)
    {
        text += &format!("  {line}\n");
    }
    for note in notes {
        text += &format!("note: {note}\n");
    }
    out(text)
}

/// Applies a saved plan: the steps are derived again here from the spec it
/// carries and must equal the saved ones; only the derived steps run, so a saved
/// plan cannot name a path, mode or owner the spec could not produce.
fn apply_saved(file: &Path, root: &Path) -> Result<u8> {
    let saved = saved::load(file)?;
    let label = PathBuf::from(format!("{} (the spec saved in it)", file.display()));
    let (job, warnings) = Job::from_source(saved.source.clone(), &label, root)?;
    warn_spec(&label, &warnings);
    if saved.plan.root != job.system.root().display().to_string() {
        bail!(
            "the plan was made for {}, not {}",
            saved.plan.root,
            job.system.root().display()
        );
    }
    preflight(&job.system, &job.spec)?;
    let matching = || -> Result<plan::Plan> {
        let fresh = job.plan(&job.facts(saved.date)?)?;
        if let Some(difference) = saved::difference(&saved.plan, &fresh) {
            bail!(
                "{}: refused, nothing was written: {difference}. The host changed since the \
                 plan was made, or the plan file was edited; run `mailsetup plan --out` again",
                file.display()
            );
        }
        Ok(fresh)
    };
    // Compared before the state directory is made, and again under the lock.
    matching()?;
    backup::ensure_state_dir(&job.system)?;
    let _lock = job.system.lock(backup::LOCK)?;
    execute(&job.system, matching()?, || {
        job.plan(&job.facts(saved.date)?)
    })
}

fn dns(args: &cli::DnsArgs) -> Result<u8> {
    let spec = load_spec(&args.spec)?;
    let system = System::new(&args.root)?;
    // One host, or every host of a fleet (keys under --root, or exported by each host).
    let hosts: Vec<Option<&str>> = match args.host.as_deref() {
        Some(h) => vec![Some(h)],
        None if spec.hosts.is_empty() => vec![None],
        None => spec.hosts.keys().map(|h| Some(h.as_str())).collect(),
    };
    let (mut records, mut missing) = (Vec::new(), Vec::new());
    // Records every host shares (SPF, DMARC) are listed once.
    let mut seen = std::collections::HashSet::new();
    for host in &hosts {
        let spec = spec.for_host(*host)?;
        let (more, gaps) = match args.public_keys.as_deref() {
            Some(dir) => ci::records_from_export(&spec, dir)?,
            None => dns::records_for(&spec, &rotate::published(&spec, &system, today()?)?),
        };
        for record in more {
            if seen.insert((record.kind, record.name.clone(), record.value.clone())) {
                records.push(record);
            }
        }
        missing.extend(gaps);
    }
    warn_missing(&missing);
    if args.push {
        if !missing.is_empty() {
            bail!("not pushed: some keys are missing (see the warnings above)");
        }
        let targets = push::Targets {
            server: args.server,
            tsig_key: args.tsig_key.as_deref(),
        };
        // Withdrawn selectors are deleted; with --public-keys (CI) the hosts'
        // rotation state is not here, so nothing is withdrawn.
        let mut withdrawn = Vec::new();
        if args.public_keys.is_none() {
            for host in &hosts {
                let spec = spec.for_host(*host)?;
                withdrawn.extend(push::withdrawn_names(&spec, &system, today()?)?);
            }
        }
        let pushed = push::run(
            &spec,
            &system,
            &targets,
            &records,
            &withdrawn,
            !args.dry_run,
        )?;
        return out(pushed.text);
    }
    match args.format {
        DnsFormat::Octodns => {
            let dir = args.out.as_deref().context(
                "--format octodns writes one file per zone: name the directory with --out DIR",
            )?;
            let (files, outside) =
                octodns::zone_files(&records, &push::zone_names(&spec), spec.dns.ttl.get());
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create the directory {}", dir.display()))?;
            let mut text = String::new();
            for (zone, yaml) in files {
                let path = dir.join(format!("{zone}.yaml"));
                std::fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))?;
                text += &format!("wrote {}\n", path.display());
            }
            for name in outside {
                text += &format!(
                    "not exported: {name} is in none of the zones; its owner publishes it\n"
                );
            }
            out(text)
        }
        DnsFormat::Zone => out(dns::zone(&records, &missing)),
        DnsFormat::Json => out(serde_json::to_string_pretty(&records)? + "\n"),
    }
}

pub(crate) fn warn_missing(missing: &[String]) {
    let mut stderr = anstream::stderr();
    let yellow = anstyle::AnsiColor::Yellow.on_default().bold();
    for m in missing {
        let _ = writeln!(stderr, "{yellow}warning:{yellow:#} {m}");
    }
}

fn rollback(root: &Path) -> Result<u8> {
    let system = System::new(root)?;
    if system.read_dir_meta(backup::STATE_DIR)?.is_none() {
        bail!(
            "nothing to roll back: {} has no mailsetup backups",
            system.root().display()
        );
    }
    let _lock = system.lock(backup::LOCK)?;
    let Some(dir) = backup::latest(&system)? else {
        bail!(
            "nothing to roll back: no backup left under {}",
            backup::STATE_DIR
        );
    };
    let manifest = backup::restore(&system, &dir)?;
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
    out(text)
}
