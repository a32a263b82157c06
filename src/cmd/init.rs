//! `init`: the starter spec, to a file or stdout.

use std::path::Path;

use anyhow::{Result, bail};

use crate::exit::Exit;
use crate::host::local;
use crate::ui::Ui;

/// The starter spec written by `init`.
const STARTER: &str = include_str!("../../examples/starter.yaml");

/// Where the .deb installs the spec's JSON Schema.
const INSTALLED_SCHEMA: &str = "/usr/share/mailsetup/mailsetup.schema.json";
/// The schema written beside a new spec when the package's is not installed.
const SCHEMA_FILE: &str = "mailsetup.schema.json";

/// The starter with its first line pointing editors (yaml-language-server)
/// at `schema`, or without it.
fn starter(schema: Option<&str>) -> String {
    let body: Vec<&str> = STARTER
        .lines()
        .skip_while(|l| l.starts_with("# yaml-language-server"))
        .collect();
    let line = schema.map(|s| format!("# yaml-language-server: $schema={s}\n"));
    line.unwrap_or_default() + &body.join("\n") + "\n"
}

pub fn run(path: &Path, force: bool, ui: &mut Ui) -> Result<Exit> {
    let installed = local::exists(Path::new(INSTALLED_SCHEMA));
    if path == Path::new("-") {
        ui.out(&starter(installed.then_some(INSTALLED_SCHEMA)))?;
        return Ok(Exit::Ok);
    }
    if !force && local::exists(path) {
        bail!("{} exists; use --force to overwrite it", path.display());
    }
    // Editors check the spec as it is typed: against the package's schema,
    // else against a copy written beside it.
    let beside = path.with_file_name(SCHEMA_FILE);
    let schema = match installed {
        true => INSTALLED_SCHEMA.to_string(),
        false => SCHEMA_FILE.to_string(),
    };
    let text = starter(Some(&schema));
    if force {
        local::write_atomically(path, text.as_bytes(), 0o644)?;
    } else {
        local::write_new(path, text.as_bytes(), 0o644)?;
    }
    let mut said = format!("wrote {}", path.display());
    if !installed {
        local::write_atomically(&beside, (super::schema_json() + "\n").as_bytes(), 0o644)?;
        said += &format!(" and {} (for editors)", beside.display());
    }
    ui.out(&format!(
        "{said}: edit it, then run `mailsetup plan {}`\n",
        path.display()
    ))?;
    Ok(Exit::Ok)
}
