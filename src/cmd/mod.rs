//! One module per command; `run` sends a command line to its module. Each
//! command writes only through the `Ui` it is given.

mod apply;
mod dns;
mod docs;
mod init;
mod plan;
mod reports;
mod rollback;
mod socketmap;
mod status;

use anyhow::{Result, bail};

pub use docs::schema_json;

use crate::cli::{Cli, Command, Target};
use crate::exit::Exit;
use crate::ui::Ui;
use crate::{check, ci, rotate};

/// Runs one command; returns the exit status.
pub fn run(cli: Cli, ui: &mut Ui) -> Result<Exit> {
    match cli.command {
        Command::Init { path, force } => init::run(&path, force, ui),
        Command::Validate { spec } => plan::validate(&spec, ui),
        Command::Plan {
            target,
            format,
            detailed_exitcode,
            out,
        } => plan::run(&target, format, detailed_exitcode, out.as_deref(), ui),
        Command::Apply {
            spec: Some(spec),
            root,
            templates,
            host,
            plan: None,
            bundle: None,
            no_install_packages,
            ..
        } => apply::run(
            &Target {
                spec,
                root,
                host,
                templates,
                no_install_packages,
            },
            ui,
        ),
        Command::Apply {
            plan: Some(file),
            root,
            ..
        } => apply::saved(&file, &root, ui),
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
            ui,
        ),
        Command::Apply { .. } => bail!("apply needs a spec, --plan or --bundle"),
        Command::Bundle(args) => ci::bundle(args, ui),
        Command::PublicKeys {
            spec,
            host,
            root,
            out,
        } => ci::public_keys(&spec, host.as_deref(), &root, &out, ui),
        Command::Dns(args) => dns::run(&args, ui),
        Command::Rollback { root, unconfigure } => rollback::run(&root, unconfigure, ui),
        Command::Status(args) => status::run(&args, ui),
        Command::Reports {
            spec,
            paths,
            format,
        } => reports::run(&spec, &paths, format, ui),
        Command::Socketmap { mx } => socketmap::run(&mx, ui),
        Command::Schema => docs::schema(ui),
        Command::Completions { shell } => docs::completions(shell, ui),
        Command::Man { command, out } => docs::man(&command, out.as_deref(), ui),
        Command::Rotate { step } => rotate::run(step, ui),
        Command::Check {
            spec,
            root,
            host,
            resolver,
            format,
        } => check::run(&spec, &root, host.as_deref(), resolver, format, ui),
    }
}
