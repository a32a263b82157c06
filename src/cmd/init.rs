//! `init`: the starter spec, to a file or stdout.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::Exit;
use crate::ui::Ui;

/// The starter spec written by `init`.
const STARTER: &str = include_str!("../../examples/starter.yaml");

pub fn run(path: &Path, force: bool, ui: &mut Ui) -> Result<Exit> {
    let text = STARTER
        .lines()
        .skip_while(|l| l.starts_with("# yaml-language-server"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    if path == Path::new("-") {
        ui.out(&text)?;
        return Ok(Exit::Ok);
    }
    if path.exists() && !force {
        bail!("{} exists; use --force to overwrite it", path.display());
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    ui.out(&format!(
        "wrote {}: edit it, then run `mailsetup plan {}`\n",
        path.display(),
        path.display()
    ))?;
    Ok(Exit::Ok)
}
