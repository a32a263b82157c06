//! The templates of the managed files: built into the binary, and any of them
//! replaceable by a file of the same name in a `--templates` directory.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// (name, built-in text), one per managed file.
const BUILTIN: &[(&str, &str)] = &[
    ("main.cf.tera", include_str!("../templates/main.cf.tera")),
    (
        "master.cf.tera",
        include_str!("../templates/master.cf.tera"),
    ),
    (
        "opendkim.conf.tera",
        include_str!("../templates/opendkim.conf.tera"),
    ),
    ("KeyTable.tera", include_str!("../templates/KeyTable.tera")),
    (
        "SigningTable.tera",
        include_str!("../templates/SigningTable.tera"),
    ),
    (
        "TrustedHosts.tera",
        include_str!("../templates/TrustedHosts.tera"),
    ),
    (
        "default-opendkim.tera",
        include_str!("../templates/default-opendkim.tera"),
    ),
    ("mailname.tera", include_str!("../templates/mailname.tera")),
    ("aliases.tera", include_str!("../templates/aliases.tera")),
    (
        "apticron.conf.tera",
        include_str!("../templates/apticron.conf.tera"),
    ),
    (
        "sasl_passwd.tera",
        include_str!("../templates/sasl_passwd.tera"),
    ),
];

/// The compiled templates.
pub struct Templates(tera::Tera);

impl Templates {
    /// The built-in templates, with those in the directory `overrides` (if given)
    /// taking precedence.
    pub fn load(overrides: Option<&Path>) -> Result<Templates> {
        let found = match overrides {
            Some(dir) => read_dir(dir)?,
            None => Vec::new(),
        };
        Self::with_overrides(found)
    }

    /// The built-in templates with some replaced by (name, text). A name that
    /// matches no built-in one is an error, so a typo does not silently leave
    /// the built-in in force.
    pub fn with_overrides(overrides: Vec<(String, String)>) -> Result<Templates> {
        let mut sources: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect();
        for (name, text) in overrides {
            let Some(slot) = sources.iter_mut().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                bail!(
                    "{name}: not a template mailsetup knows; the names are: {}",
                    known.join(", ")
                );
            };
            slot.1 = text;
        }
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        tera.add_raw_templates(sources)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .context("compile the templates")?;
        Ok(Templates(tera))
    }

    pub fn render(&self, name: &str, vars: &tera::Context) -> Result<String> {
        self.0
            .render(name, vars)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .with_context(|| format!("render {name}"))
    }
}

/// No template comes near this; a larger file is refused unread.
const MAX_TEMPLATE: u64 = 1 << 20;

/// The templates in a directory, as (file name, text): plain files only,
/// none reached through a symlink.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>> {
    crate::host::local::read_files(dir, "the templates directory", MAX_TEMPLATE)?
        .into_iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", dir.join(&name).display()))?;
            Ok((name, text))
        })
        .collect()
}

/// Tera's top-level error says only "failed to render"; the cause is in the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_builtins_and_unknown_names_fail() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mailname.tera"), "custom {{ x }}\n").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let mut vars = tera::Context::new();
        vars.insert("x", "value");
        assert_eq!(t.render("mailname.tera", &vars).unwrap(), "custom value\n");

        std::fs::write(dir.path().join("main.cf"), "x").unwrap();
        let e = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(e.contains("not a template mailsetup knows"), "{e}");
    }

    #[test]
    fn template_errors_show_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mailname.tera"), "{{ nope.missing }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let e = format!(
            "{:#}",
            t.render("mailname.tera", &tera::Context::new())
                .unwrap_err()
        );
        assert!(e.contains("nope"), "{e}");
    }
}
