//! What a saved plan and a bundle carry so the host can derive the steps itself:
//! the spec's text, its file name, the fleet host and the template overrides.
//! Apply never executes paths, modes or owners read from a saved plan or a
//! bundle; it renders this source through the managed-file table and compares.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::Target;
use crate::spec::{self, HostSpec, Warning};
use crate::templates;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The spec's file name, as the rendered files' headers name it.
    pub spec_name: String,
    pub spec_text: String,
    /// The fleet host, when the spec names several.
    pub host: Option<String>,
    /// Template overrides (name, text), in name order.
    pub templates: Vec<(String, String)>,
    /// `--no-install-packages`: leave the Debian packages alone.
    #[serde(default)]
    pub skip_packages: bool,
}

impl Source {
    /// Reads the spec and template files a command line names.
    pub fn read(target: &Target) -> Result<Source> {
        let source = Self::read_parts(
            &target.spec,
            target.host.as_deref(),
            target.templates.as_deref(),
        )?;
        Ok(Source {
            skip_packages: target.no_install_packages,
            ..source
        })
    }

    pub fn read_parts(spec: &Path, host: Option<&str>, templates: Option<&Path>) -> Result<Source> {
        let spec_text = spec::read_text(spec)?;
        Ok(Source {
            spec_name: spec
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            spec_text,
            host: host.map(str::to_string),
            templates: match templates {
                Some(dir) => templates::read_dir(dir)?,
                None => Vec::new(),
            },
            skip_packages: false,
        })
    }

    /// The spec for this source's host; `label` names it in errors (its file,
    /// or the saved plan or bundle it came in).
    pub fn spec(&self, label: &Path) -> Result<(HostSpec, Vec<Warning>)> {
        let (spec, warnings) = spec::parse(&self.spec_text, label)?;
        let spec = spec
            .for_host(self.host.as_deref())
            .with_context(|| format!("{}", label.display()))?;
        Ok((spec, warnings))
    }

    pub fn templates(&self) -> Result<templates::Templates> {
        templates::Templates::with_overrides(self.templates.clone())
    }
}
