//! mailsetup: one YAML spec → a send-only, DKIM-signing Postfix + OpenDKIM server.
//!
//! The pipeline is plain values: `spec` (YAML → Spec) → `desired` (files, keys,
//! directories the spec asks for) → `actual` (what the host has) → `plan` (the
//! steps between them) → `apply`; `cmd` holds one module per command, `host`
//! the host access. ARCHITECTURE.md says where things go.

pub mod actual;
pub mod apply;
pub mod backup;
pub mod boundary;
pub mod bundle;
pub mod check;
pub mod ci;
pub mod cli;
pub mod cmd;
pub mod desired;
pub mod dns;
pub mod exit;
pub mod hint;
pub mod host;
pub mod job;
pub mod keys;
pub mod keysets;
pub mod maillog;
pub mod octodns;
pub mod packages;
pub mod plan;
pub mod push;
pub mod queue;
pub mod reports;
pub mod resolve;
pub mod rotate;
pub mod rotation;
pub mod saved;
pub mod selector;
pub mod show;
pub mod signature;
pub mod socketmap;
pub mod source;
pub mod spec;
pub mod state;
pub mod status;
pub mod templates;
pub mod ui;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
pub use exit::Exit;
use ui::Ui;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return (if e.use_stderr() {
                Exit::Error
            } else {
                Exit::Ok
            })
            .into();
        }
    };
    let mut ui = Ui;
    match cmd::run(cli, &mut ui) {
        Ok(code) => code.into(),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            ui.error(&e);
            Exit::Error.into()
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
