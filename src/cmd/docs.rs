//! `schema`, `completions`, `man`: the spec's JSON Schema and the CLI's own
//! documentation, generated from the definitions the program uses.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::spec::Spec;
use crate::ui::Ui;

/// The JSON Schema of the spec, as kept in schemas/.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Spec);
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}

pub fn schema(ui: &mut Ui) -> Result<Exit> {
    ui.out(&(schema_json() + "\n"))?;
    Ok(Exit::Ok)
}

pub fn completions(shell: clap_complete::Shell, ui: &mut Ui) -> Result<Exit> {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailsetup", &mut text);
    ui.out(&String::from_utf8_lossy(&text))?;
    Ok(Exit::Ok)
}

pub fn man(ui: &mut Ui) -> Result<Exit> {
    let mut text = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut text)
        .context("render the man page")?;
    ui.out(&String::from_utf8_lossy(&text))?;
    Ok(Exit::Ok)
}
