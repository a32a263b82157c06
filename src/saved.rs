//! Saved plans: `plan --out FILE` in one place, `apply --plan FILE` later. A
//! saved plan carries the spec (the source) with the steps it gave; apply derives
//! the steps again on the host and runs them only when they are the saved ones.
//! It holds no credential: the relay password is read on the host at apply time.

use std::path::Path;

use anyhow::{Context, Result, bail};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::plan::{FORMAT, Plan, Step};
use crate::source::Source;

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub source: Source,
    /// The day the plan was made: date-based selectors of new keys stay as shown.
    pub date: Date,
    /// The plan as shown, credentials redacted.
    pub plan: Plan,
}

pub fn save(plan: &Plan, source: &Source, date: Date, file: &Path) -> Result<()> {
    let saved = SavedPlan {
        source: source.clone(),
        date,
        plan: plan.redacted(),
    };
    let text = serde_json::to_string_pretty(&saved)? + "\n";
    crate::host::local::write_atomically(file, text.as_bytes(), 0o644)
        .with_context(|| format!("save the plan to {}", file.display()))
}

/// A plan of 100,000 domains is tens of MiB; a larger file is refused unread.
const MAX_SAVED: u64 = 512 << 20;

pub fn load(file: &Path) -> Result<SavedPlan> {
    let text = crate::host::local::read(
        file,
        "the saved plan",
        MAX_SAVED,
        crate::host::local::Follow::Yes,
    )?;
    let saved: SavedPlan = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a mailsetup plan", file.display()))?;
    if saved.plan.format != FORMAT {
        bail!(
            "{}: plan format {:?}; this mailsetup reads {:?}",
            file.display(),
            saved.plan.format,
            FORMAT
        );
    }
    Ok(saved)
}

/// Where a saved plan and the one derived now part ways, if they do.
pub fn difference(saved: &Plan, fresh: &Plan) -> Option<String> {
    let fresh = fresh.redacted();
    // Every field counts, as saved.
    let value = |s: &Step| serde_json::to_value(s).ok();
    for (i, (a, b)) in saved.steps.iter().zip(&fresh.steps).enumerate() {
        if value(a) != value(b) {
            let (was, now) = (a.label(), b.label());
            return Some(if was == now {
                format!("step {} ({was}) is not what the host needs now", i + 1)
            } else {
                format!(
                    "step {} ({was}) is not what the spec gives here now ({now})",
                    i + 1
                )
            });
        }
    }
    if let Some(extra) = saved.steps.get(fresh.steps.len()) {
        return Some(format!(
            "step {} ({}) is not one the spec gives here now",
            fresh.steps.len() + 1,
            extra.label()
        ));
    }
    if let Some(missing) = fresh.steps.get(saved.steps.len()) {
        return Some(format!("the spec now also needs: {}", missing.label()));
    }
    for seen in &fresh.observed {
        if !saved.observed.contains(seen) {
            return Some(format!("{} changed since the plan was made", seen.path));
        }
    }
    if saved.observed.len() != fresh.observed.len() || saved.keys_present != fresh.keys_present {
        return Some("the managed files or DKIM keys are not the ones the plan saw".into());
    }
    None
}
