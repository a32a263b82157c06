//! `reports`: DMARC aggregate reports, read from the files and directories
//! named, judged against the spec (see `crate::reports`). Read only.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::ReportFormat;
use crate::exit::Exit;
use crate::host::local::{self, Follow};
use crate::job::load_spec;
use crate::reports::{Known, MAX_EXPANDED, Reports};
use crate::ui::Ui;

/// A report file, compressed or in a message, is kilobytes; this much is
/// not one.
const MAX_FILE: u64 = 64 << 20;

/// Directories within a named directory (a Maildir's `cur/`, a year/month
/// tree) are entered this deep.
const DEPTH: usize = 4;

pub fn run(
    spec: &std::path::Path,
    paths: &[PathBuf],
    format: ReportFormat,
    ui: &mut Ui,
) -> Result<Exit> {
    let spec = load_spec(spec, ui)?;
    let mut reports = Reports::new(Known::of(&spec)?);
    for path in paths {
        if local::is_dir(path) {
            local::each_file_under(path, MAX_FILE.min(MAX_EXPANDED), DEPTH, &mut |p, bytes| {
                reports.add(p.display().to_string(), bytes)
            })?;
        } else {
            let bytes =
                local::read(path, "report", MAX_FILE, Follow::Yes).map_err(|e| format!("{e:#}"));
            reports.add(path.display().to_string(), bytes);
        }
    }
    let summary = reports.summary();
    for f in summary.unreadable() {
        let error = f.error.as_deref().unwrap_or_default();
        ui.error(&anyhow::anyhow!("{}: {error}", f.path));
    }
    match format {
        ReportFormat::Text => ui.out(&summary.text())?,
        ReportFormat::Json => ui.out(&summary.json())?,
    }
    Ok(if summary.unreadable().next().is_some() {
        Exit::Error
    } else if summary.would_lose() {
        Exit::CheckFailed
    } else {
        Exit::Ok
    })
}
