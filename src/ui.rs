//! The terminal, for every command: standard output (color codes kept only on
//! a terminal without NO_COLOR), and warnings and errors on standard error.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::spec::Warning;

/// Where a command's output goes. Commands get one and write nothing else.
#[derive(Default)]
pub struct Ui;

impl Ui {
    /// Text as it is, flushed (a closed pipe is an error the caller sees).
    pub fn out(&mut self, text: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("write to standard output")
    }

    /// Text with color codes, stripped where stdout is no terminal or NO_COLOR is set.
    pub fn colored(&mut self, text: &str) -> Result<()> {
        let mut stdout = anstream::stdout();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("write to standard output")
    }

    /// `warning: MESSAGE` on stderr.
    pub fn warn(&mut self, message: impl fmt::Display) {
        let yellow = anstyle::AnsiColor::Yellow.on_default().bold();
        let _ = writeln!(anstream::stderr(), "{yellow}warning:{yellow:#} {message}");
    }

    /// A line on stderr that is no warning: what a check found, beside the output.
    pub fn note(&mut self, message: impl fmt::Display) {
        let _ = writeln!(std::io::stderr(), "{message}");
    }

    /// A spec's warnings, each naming the file.
    pub fn warn_spec(&mut self, path: &Path, warnings: &[Warning]) {
        for w in warnings {
            self.warn(format_args!("{}: {w}", path.display()));
        }
    }

    /// `error: …` with the whole chain of causes.
    pub fn error(&mut self, e: &anyhow::Error) {
        let red = anstyle::AnsiColor::Red.on_default().bold();
        let _ = writeln!(anstream::stderr(), "{red}error:{red:#} {e:#}");
    }
}
