//! `apply SPEC` and `apply --plan FILE` (`apply --bundle` is in `ci`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::cli::Target;
use crate::exit::Exit;
use crate::host::{Host, System};
use crate::job::{Job, apply_rendered, execute, preflight, today};
use crate::state;
use crate::ui::Ui;
use crate::{plan, saved};

pub fn run(target: &Target, ui: &mut Ui) -> Result<Exit> {
    let job = Job::<System>::new(target, ui)?;
    // Render before touching anything: template or spec errors write nothing.
    let facts = job.facts(today()?)?;
    let desired = job.desired(&facts)?;
    preflight(&job.system, &job.spec)?;
    let lock = state::lock(&job.system)?;
    apply_rendered(&job, &lock, (facts, desired), ui)
}

/// Applies a saved plan: the steps are derived again here from the spec it
/// carries and must equal the saved ones; only the derived steps run, so a saved
/// plan cannot name a path, mode or owner the spec could not produce.
pub fn saved(file: &Path, root: &Path, ui: &mut Ui) -> Result<Exit> {
    let saved = saved::load(file)?;
    let label = PathBuf::from(format!("{} (the spec saved in it)", file.display()));
    let (job, warnings) = Job::<System>::from_source(saved.source.clone(), &label, root)?;
    ui.warn_spec(&label, &warnings);
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
            // The spec as it was named where the plan was made.
            let again = crate::hint::Again::new(
                Some(Path::new(&saved.source.spec_name)),
                saved.source.host.as_deref(),
                root,
            );
            bail!(
                "{}: refused, nothing was written: {difference}. The host changed since the \
                 plan was made, or the plan file was edited; make it again ({})",
                file.display(),
                again.cmd_with("plan", &["--out", &file.display().to_string()])
            );
        }
        Ok(fresh)
    };
    // Compared before the state directory is made, and again under the lock.
    matching()?;
    let lock = state::lock(&job.system)?;
    execute(
        &job.system,
        &lock,
        matching()?,
        || job.plan(&job.facts(saved.date)?),
        ui,
    )
}
