//! `init`: the starter spec, to a file or stdout.

use std::path::Path;

use anyhow::Result;

use crate::exit::Exit;
use crate::host::local;
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
    if force {
        local::write_atomically(path, text.as_bytes(), 0o644)?;
    } else {
        local::write_new(path, text.as_bytes(), 0o644).map_err(|e| {
            if path.symlink_metadata().is_ok() {
                anyhow::anyhow!("{} exists; use --force to overwrite it", path.display())
            } else {
                e
            }
        })?;
    }
    ui.out(&format!(
        "wrote {}: edit it, then run `mailsetup plan {}`\n",
        path.display(),
        path.display()
    ))?;
    Ok(Exit::Ok)
}
