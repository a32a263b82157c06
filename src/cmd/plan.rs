//! `validate` and `plan`: what the spec says, and what apply would do.

use std::path::Path;

use anyhow::Result;

use crate::cli::{PlanFormat, Target};
use crate::exit::Exit;
use crate::host::{Host, ReadOnly};
use crate::job::{Job, today};
use crate::ui::Ui;
use crate::{saved, show};

pub fn validate(spec: &Path, ui: &mut Ui) -> Result<Exit> {
    let domains = crate::job::load_spec(spec, ui)?.domains.len();
    ui.out(&format!(
        "{}: valid ({domains} domain{})\n",
        spec.display(),
        if domains == 1 { "" } else { "s" }
    ))?;
    Ok(Exit::Ok)
}

pub fn run(
    target: &Target,
    format: PlanFormat,
    detailed_exitcode: bool,
    save: Option<&Path>,
    ui: &mut Ui,
) -> Result<Exit> {
    let job = Job::<ReadOnly>::new(target, ui)?;
    let date = today()?;
    let plan = job.plan(&job.plan_facts(date, ui)?)?;
    // Said now, not only when apply refuses after installing the packages.
    if job.system.is_live()
        && job.spec.outbound.tls.dane()
        && let Err(why) = crate::resolve::local_validation()
    {
        ui.warn(format!(
            "outbound.tls asks for DANE, but {why}: apply will refuse until /etc/resolv.conf \
             names only a validating resolver on this host (unbound, which the plan installs)"
        ));
    }
    if let Some(file) = save {
        saved::save(&plan, &job.source, date, file)?;
    }
    match format {
        PlanFormat::Text => ui.colored(&show::plan_text(&plan))?,
        PlanFormat::Json => ui.out(&(serde_json::to_string_pretty(&plan.redacted())? + "\n"))?,
    };
    Ok(if detailed_exitcode && !plan.is_empty() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}
