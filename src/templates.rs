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
    (
        "sender_canonical.tera",
        include_str!("../templates/sender_canonical.tera"),
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
        "header_checks.tera",
        include_str!("../templates/header_checks.tera"),
    ),
    (
        "sasl_passwd.tera",
        include_str!("../templates/sasl_passwd.tera"),
    ),
];

/// The compiled templates, with their sources (to point at a line).
pub struct Templates {
    tera: tera::Tera,
    sources: Vec<(String, String)>,
}

/// The most numbers `range()` gives: Tera's own would fill memory (and
/// abort) for `range(end=100000000)` in an override.
const MAX_RANGE: usize = 100_000;

/// Tera's `range(start=0, end, step_by=1)`, bounded.
fn bounded_range(
    args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let arg = |name: &str, default: Option<usize>| -> tera::Result<usize> {
        match args.get(name) {
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("`range`: {name} must be a whole number").into()),
            None => default.ok_or_else(|| format!("`range` needs `{name}`").into()),
        }
    };
    let (start, end, step) = (
        arg("start", Some(0))?,
        arg("end", None)?,
        arg("step_by", Some(1))?,
    );
    if step == 0 {
        return Err("`range`: step_by must not be 0".into());
    }
    let count = end.saturating_sub(start).div_ceil(step);
    if count > MAX_RANGE {
        return Err(format!(
            "`range` of {count} numbers: more than the {MAX_RANGE} a template may ask for"
        )
        .into());
    }
    Ok((start..end).step_by(step).collect::<Vec<_>>().into())
}

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
        tera.register_function("range", bounded_range);
        tera.add_raw_templates(sources.clone())
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .context("compile the templates")?;
        Ok(Templates { tera, sources })
    }

    pub fn render(&self, name: &str, vars: &tera::Context) -> Result<String> {
        self.tera
            .render(name, vars)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .with_context(|| format!("render {name}"))
    }

    /// Renders a template that sees credentials. Its error says which
    /// template and what failed (a function, filter or test by name, with
    /// the line that calls it), never Tera's message, which can carry a value
    /// (`throw(message=sasl.password)`, a failing `get`, `range(end=…)`).
    pub fn render_secret(&self, name: &str, vars: &tera::Context) -> Result<String> {
        self.tera.render(name, vars).map_err(|e| {
            anyhow::anyhow!(
                "render {name}: {}; the error itself is not shown, since this template sees \
                 the relay password",
                self.what_failed(name, &e)
            )
        })
    }

    /// What failed in a render, in words that hold no value.
    fn what_failed(&self, name: &str, e: &tera::Error) -> String {
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(err) = source {
            if let Some(err) = err.downcast_ref::<tera::Error>() {
                let called = match &err.kind {
                    tera::ErrorKind::CallFunction(f) => Some(("function", f, format!("{f}("))),
                    tera::ErrorKind::CallFilter(f) => Some(("filter", f, format!("| {f}"))),
                    tera::ErrorKind::CallTest(t) => Some(("test", t, format!("is {t}"))),
                    _ => None,
                };
                if let Some((kind, what, call)) = called {
                    let line = self.line_of(name, &call, what);
                    return format!("the {kind} `{what}` failed{line}");
                }
            }
            source = err.source();
        }
        "an expression failed (a missing variable, a wrong type)".into()
    }

    /// ` (line N)`: the first line of the template that has the call.
    fn line_of(&self, name: &str, call: &str, what: &str) -> String {
        let text = self
            .sources
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, t)| t.as_str());
        let compact = call.replace(' ', "");
        text.lines()
            .position(|l| l.replace(' ', "").contains(&compact))
            .or_else(|| text.lines().position(|l| l.contains(what)))
            .map(|i| format!(" (line {})", i + 1))
            .unwrap_or_default()
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

    /// A template that sees the password: its errors name the template, what
    /// failed and the line, never a value.
    #[test]
    fn errors_of_a_secret_template_hold_no_value() {
        let mut vars = tera::Context::new();
        vars.insert("password", "hunter2-secret");
        for (text, what) in [
            (
                "x\n{{ throw(message=password) }}\n",
                "function `throw` failed (line 2)",
            ),
            (
                "{{ password | get(key=password) }}",
                "filter `get` failed (line 1)",
            ),
            ("{{ range(end=password) }}", "function `range` failed"),
            ("{{ password * 2 }}", "an expression failed"),
            ("{{ nope.password }}", "an expression failed"),
        ] {
            let t =
                Templates::with_overrides(vec![("sasl_passwd.tera".into(), text.into())]).unwrap();
            let e = format!(
                "{:#}",
                t.render_secret("sasl_passwd.tera", &vars).unwrap_err()
            );
            assert!(!e.contains("hunter2"), "{text}: {e}");
            assert!(
                e.contains(what) && e.contains("sasl_passwd.tera"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn ranges_are_bounded() {
        let t = Templates::with_overrides(vec![(
            "mailname.tera".into(),
            "{% for i in range(end=100000000) %}x{% endfor %}".into(),
        )])
        .unwrap();
        let e = format!(
            "{:#}",
            t.render("mailname.tera", &tera::Context::new())
                .unwrap_err()
        );
        assert!(e.contains("more than the 100000"), "{e}");
        let t = Templates::with_overrides(vec![(
            "mailname.tera".into(),
            "{% for i in range(start=1, end=10, step_by=3) %}{{ i }}{% endfor %}".into(),
        )])
        .unwrap();
        assert_eq!(
            t.render("mailname.tera", &tera::Context::new()).unwrap(),
            "147"
        );
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
