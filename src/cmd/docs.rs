//! `schema`, `completions`, `man`: the spec's JSON Schema and the CLI's own
//! documentation, generated from the definitions the program uses.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::host::local;
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

/// The man page of `command` (words of a subcommand; none: mailsetup(1)),
/// or, with `out`, every page written into that directory.
pub fn man(command: &[String], out: Option<&Path>, ui: &mut Ui) -> Result<Exit> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    if let Some(dir) = out {
        let out = local::OutDir::open(dir)?;
        let mut written = Vec::new();
        for (name, page) in pages(&cli)? {
            written.push(out.write(&name, page.as_bytes(), 0o644)?);
        }
        ui.out(&format!(
            "wrote {} man pages into {}\n",
            written.len(),
            dir.display()
        ))?;
        return Ok(Exit::Ok);
    }
    let mut cmd = &cli;
    for word in command {
        cmd = cmd.find_subcommand(word).with_context(|| {
            let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
            format!(
                "`{word}` is not a command of `{}`: {}",
                cmd.get_display_name().unwrap_or(cmd.get_name()),
                names.join(", ")
            )
        })?;
    }
    ui.out(&page(cmd, command.is_empty().then_some(&cli))?)?;
    Ok(Exit::Ok)
}

/// Every page: mailsetup.1 and one per command (mailsetup-rotate-start.1…).
fn pages(cli: &clap::Command) -> Result<Vec<(String, String)>> {
    fn walk(
        cmd: &clap::Command,
        top: &clap::Command,
        out: &mut Vec<(String, String)>,
    ) -> Result<()> {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name());
        let whole = std::ptr::eq(cmd, top).then_some(top);
        out.push((format!("{name}.1"), page(cmd, whole)?));
        for sub in cmd.get_subcommands() {
            walk(sub, top, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(cli, cli, &mut out)?;
    Ok(out)
}

/// One command's page; mailsetup(1) itself (`top`) also says its exit
/// codes, files and the other pages.
fn page(cmd: &clap::Command, top: Option<&clap::Command>) -> Result<String> {
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut text)
        .context("render the man page")?;
    let mut page = String::from_utf8_lossy(&text).into_owned();
    let Some(top) = top else {
        page += ".SH \"SEE ALSO\"\nmailsetup(1)\n";
        return Ok(page);
    };
    page += ".SH \"EXIT STATUS\"\n";
    for (code, meaning) in Exit::MEANINGS {
        page += &format!(".TP\n{code}\n{}\n", roff_text(meaning));
    }
    page += ".SH FILES\n";
    for (file, what) in FILES {
        page += &format!(".TP\n{}\n{}\n", roff_text(file), roff_text(what));
    }
    let mut names = Vec::new();
    for sub in top.get_subcommands() {
        let mut stack = vec![sub];
        while let Some(c) = stack.pop() {
            names.push(format!(
                "{}(1)",
                c.get_display_name().unwrap_or(c.get_name())
            ));
            stack.extend(c.get_subcommands());
        }
    }
    page += &format!(".SH \"SEE ALSO\"\n{}\n", roff_text(&names.join(", ")));
    Ok(page)
}

/// What mailsetup reads and keeps, for mailsetup(1).
const FILES: &[(&str, &str)] = &[
    (
        "/etc/postfix/main.cf, master.cf, sasl_passwd; /etc/opendkim.conf; /etc/opendkim/KeyTable, SigningTable, TrustedHosts; /etc/default/opendkim; /etc/mailname; /etc/aliases; /etc/apticron/apticron.conf",
        "The managed files: each starts with a comment saying mailsetup manages it (but /etc/mailname).",
    ),
    (
        "/etc/opendkim/keys/SET/SELECTOR.private, .txt",
        "DKIM keys (0600, opendkim's) and their records.",
    ),
    (
        "/etc/mailsetup/allowed_signers",
        "The keys that may sign bundles (OpenSSH format); root's, writable by no one else.",
    ),
    (
        "/var/lib/mailsetup/",
        "mailsetup's state, root's alone: the apply lock, applied.json, backups/ (one per apply, for rollback), originals/, keys/SET/ (rotation state and archived keys).",
    ),
];

/// Text for a roff paragraph: no line may start with a control character.
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}"),
        false => text,
    }
}
