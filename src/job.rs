//! The work behind plan and apply, shared by every command that converges a
//! host (apply, apply --plan, apply --bundle, rotate): the job (spec,
//! templates, target system), the host facts, and `execute`, which every plan
//! passes through.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::Target;
use crate::desired::{self, Desired, HostFacts};
use crate::exit::Exit;
use crate::host::{Host, HostMut, Lock, ReadOnly, System};
use crate::spec::{self, HostSpec, Spec};
use crate::ui::Ui;
use crate::{actual, apply, boundary, keysets, plan, show, source, templates};

/// The loaded spec, templates and target system shared by plan and apply. A
/// plan's job holds a `ReadOnly` host; only an apply's holds the `System`.
pub(crate) struct Job<H = System> {
    pub(crate) spec: HostSpec,
    /// What the spec and templates were read from; saved plans carry it.
    pub(crate) source: source::Source,
    pub(crate) templates: templates::Templates,
    pub(crate) system: H,
    /// The spec file named on the command line (not a saved plan's or a
    /// bundle's), for backups to remember.
    pub(crate) origin: Option<plan::Origin>,
}

/// Opening the host a job works on, at a root.
pub(crate) trait Open: Host + Sized {
    fn open(root: &Path) -> Result<Self>;
}

impl Open for System {
    fn open(root: &Path) -> Result<System> {
        System::new(root)
    }
}

impl Open for ReadOnly {
    fn open(root: &Path) -> Result<ReadOnly> {
        ReadOnly::new(root)
    }
}

impl<H: Open> Job<H> {
    /// The job a command line names; prints the spec's warnings.
    pub(crate) fn new(target: &Target, ui: &mut Ui) -> Result<Job<H>> {
        let (mut job, warnings) =
            Self::from_source(source::Source::read(target)?, &target.spec, &target.root)?;
        ui.warn_spec(&target.spec, &warnings);
        job.origin = Some(plan::Origin {
            spec: std::path::absolute(&target.spec).unwrap_or_else(|_| target.spec.clone()),
            host: target.host.clone(),
        });
        Ok(job)
    }

    /// The job a source names (read from files, a saved plan or a bundle), with
    /// the spec's warnings; `label` names the spec in errors.
    pub(crate) fn from_source(
        source: source::Source,
        label: &Path,
        root: &Path,
    ) -> Result<(Job<H>, Vec<spec::Warning>)> {
        let (spec, warnings) = source.spec(label)?;
        let spec = if source.skip_packages {
            spec.without_package_install()
        } else {
            spec
        };
        let job = Job {
            spec,
            templates: source.templates()?,
            source,
            system: H::open(root)?,
            origin: None,
        };
        Ok((job, warnings))
    }
}

impl<H: Host> Job<H> {
    /// What the host says the desired state depends on. The relay password
    /// file must exist, since the credentials file is written from it.
    pub(crate) fn facts(&self, today: jiff::civil::Date) -> Result<HostFacts> {
        self.host_facts(today, None)
    }

    /// Like `facts`, for a plan: a relay password file that does not exist yet
    /// is a warning (apply refuses until it does), so the whole plan still shows.
    pub(crate) fn plan_facts(&self, today: jiff::civil::Date, ui: &mut Ui) -> Result<HostFacts> {
        self.host_facts(today, Some(ui))
    }

    fn host_facts(&self, today: jiff::civil::Date, planning: Option<&mut Ui>) -> Result<HostFacts> {
        let relay_password = match self.spec.host.relay.as_ref().and_then(|r| r.auth.as_ref()) {
            None => None,
            Some(auth) => match (
                self.system.read_secret_line(auth.password_file.as_str())?,
                planning,
            ) {
                (Some(password), _) => Some(password),
                (None, Some(ui)) => {
                    ui.warn(format!(
                        "the relay password file {} does not exist yet: the plan shows \
                         /etc/postfix/sasl_passwd without it, and apply refuses until it exists \
                         (one line, root's, mode 0600)",
                        auth.password_file
                    ));
                    Some(String::new())
                }
                (None, None) => bail!(
                    "the relay password file {} does not exist: create it (one line, the \
                     password; owned by root, mode 0600), then apply again",
                    self.system.path(auth.password_file.as_str()).display()
                ),
            },
        };
        Ok(HostFacts {
            key_selectors: keysets::key_selectors(&self.system)?,
            signing_selectors: keysets::signing_selectors(&self.spec, &self.system)?,
            relay_password,
            today,
        })
    }

    pub(crate) fn desired(&self, facts: &HostFacts) -> Result<Desired> {
        desired::desired(&self.spec, &self.templates, facts)
    }

    /// The plan from what the host has now to `desired`; key sets whose
    /// state is still where mailsetup 0.1 kept it have it moved first.
    pub(crate) fn plan_to(&self, desired: Desired) -> Result<plan::Plan> {
        let actual = actual::read(&self.system, &desired)?;
        let mut plan = plan::plan(&self.system.root().display().to_string(), desired, actual);
        plan.add_first(keysets::moves(&self.spec, &self.system)?);
        plan.origin = self.origin.clone();
        Ok(plan)
    }

    /// The plan from what the host has now to what the spec asks.
    pub(crate) fn plan(&self, facts: &HostFacts) -> Result<plan::Plan> {
        self.plan_to(self.desired(facts)?)
    }
}

/// The spec at `path`, its warnings said.
pub(crate) fn load_spec(path: &Path, ui: &mut Ui) -> Result<Spec> {
    let (spec, warnings) = spec::load(path)?;
    ui.warn_spec(path, &warnings);
    Ok(spec)
}

/// The day new keys are dated: today in UTC, or SOURCE_DATE_EPOCH when set
/// (reproducible builds and tests).
pub(crate) fn today() -> Result<jiff::civil::Date> {
    Ok(now()?.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
}

/// Now, or SOURCE_DATE_EPOCH when set.
pub(crate) fn now() -> Result<jiff::Timestamp> {
    Ok(match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: i64 = s
                .trim()
                .parse()
                .context("SOURCE_DATE_EPOCH is not a number of seconds")?;
            jiff::Timestamp::from_second(secs).context("SOURCE_DATE_EPOCH is out of range")?
        }
        Err(_) => jiff::Timestamp::now(),
    })
}

/// Applies under the apply lock, reusing what was rendered before the lock
/// was taken when the host facts it came from are still the same (at 100,000
/// domains a render takes seconds).
pub(crate) fn apply_rendered(
    job: &Job,
    held: &Lock,
    (before, rendered): (HostFacts, Desired),
    ui: &mut Ui,
) -> Result<Exit> {
    let facts = job.facts(today()?)?;
    let desired = if before == facts {
        rendered
    } else {
        job.desired(&facts)?
    };
    let plan = job.plan_to(desired)?;
    execute(
        &job.system,
        held,
        plan,
        || job.plan(&job.facts(today()?)?),
        ui,
    )
}

/// The live system needs the daemons' packages before anything is written.
pub(crate) fn preflight(system: &impl Host, spec: &Spec) -> Result<()> {
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

/// A main.cf that turns DANE on needs a resolver Postfix can trust, checked
/// on the live host once the packages (unbound) are in and before anything is
/// written, whichever channel the plan came from: without one, Postfix finds
/// no validated TLSA record and DANE protects nothing.
fn dane_ready(system: &System, plan: &plan::Plan) -> Result<()> {
    use crate::desired::paths;
    // The new content of a file the plan writes.
    let writes = |path: &str| {
        plan.steps.iter().find_map(|s| match s {
            plan::Step::CreateFile(f) | plan::Step::UpdateFile(f) if f.path == path => {
                Some(f.new.as_str())
            }
            _ => None,
        })
    };
    if !system.is_live() {
        return Ok(());
    }
    let dnssec = writes(paths::MAIN_CF).is_some_and(|text| {
        crate::desired::main_cf_setting(text, "smtp_dns_support_level").as_deref() == Some("dnssec")
    });
    if dnssec {
        crate::resolve::local_validation().map_err(|why| {
            anyhow::anyhow!(
                "outbound.tls is dane, but {why}; nothing was written. Postfix trusts DNSSEC \
                 only from a validating resolver on this host: start unbound (installed with \
                 the packages), put `nameserver 127.0.0.1` alone in /etc/resolv.conf (and keep \
                 your DHCP client from replacing it), then apply again"
            )
        })?;
    }
    let bin = paths::MAILSETUP_BIN;
    let socketmap = writes(paths::MASTER_CF)
        .is_some_and(|text| text.contains(&format!("argv={bin} socketmap")));
    if socketmap && !system.exists(bin)? {
        bail!(
            "{bin} does not exist; nothing was written. Postfix runs `{bin} socketmap` for \
             outbound.tls dane-and-mta-sts (DANE before MTA-STS) and for outbound.limits \
             found by mx: install the mailsetup .deb, or link {bin} to this binary, then \
             apply again"
        );
    }
    Ok(())
}

/// Checks a plan at the boundary and shows it: what `execute` does first, and
/// all a dry run does.
pub(crate) fn show(plan: &plan::Plan, ui: &mut Ui) -> Result<()> {
    // The one gate every plan passes, whatever channel produced it.
    boundary::check(plan)?;
    ui.colored(&show::plan_text(plan))
}

/// Shows, checks and applies a plan under the apply lock, and prints what
/// was done; how it ended is recorded for `status`.
pub(crate) fn execute(
    system: &System,
    held: &Lock,
    plan: plan::Plan,
    replan: impl FnOnce() -> Result<plan::Plan>,
    ui: &mut Ui,
) -> Result<Exit> {
    show(&plan, ui)?;
    if plan.is_empty() {
        return Ok(Exit::Ok);
    }
    let result = carry_out(system, held, plan, replan, ui);
    crate::state::record_apply(system, result.is_ok());
    result
}

fn carry_out(
    system: &System,
    held: &Lock,
    plan: plan::Plan,
    replan: impl FnOnce() -> Result<plan::Plan>,
    ui: &mut Ui,
) -> Result<Exit> {
    // Packages first; then the host has changed (users, directories, tools), so
    // the rest is planned again against it, and the services are started.
    // Notes of the plan made after an install (what it did not answer).
    let mut after_install = Vec::new();
    let plan = match plan.steps.first() {
        Some(plan::Step::InstallPackages { packages }) => {
            let names: Vec<&str> = packages.iter().map(String::as_str).collect();
            system.install_packages(&names)?;
            ui.out(&format!(
                "\nInstalled {}; planning the rest again with them in place.\n",
                names.join(" ")
            ))?;
            let mut again = replan()?;
            again.after_install(packages.clone());
            boundary::check(&again)?;
            after_install = again.notes.clone();
            again
        }
        _ => plan,
    };
    let plan = &plan;
    dane_ready(system, plan)?;
    // New keys are made on the other cores while the daemons check the staged
    // configuration.
    let (checked, keys) = std::thread::scope(|scope| {
        let keys = scope.spawn(|| apply::generate_keys(plan));
        let checked = apply::check_staged(system, held, plan);
        (checked, keys.join().expect("key generation does not panic"))
    });
    let mut notes = checked.context(
        "check the new configuration; nothing was changed, the live files are untouched",
    )?;
    let report = apply::apply(system, held, plan, &keys?)?;
    notes.extend(after_install);
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
    ui.out(&text)?;
    Ok(Exit::Ok)
}
