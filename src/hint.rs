//! Commands mailsetup suggests, written so they work as printed: with the
//! spec and the flags (`--host`, `--root`, `--resolver`) of the run that
//! suggests them, so an operator can paste them.

use std::path::Path;

use crate::spec::ResolverAddr;

/// How to run another mailsetup command on the same spec and system.
#[derive(Clone, Debug, Default)]
pub struct Again {
    spec: Option<String>,
    host: Option<String>,
    root: Option<String>,
    resolvers: Vec<String>,
}

impl Again {
    /// For a run on `spec` (if any), fleet host `host`, system `root`.
    pub fn new(spec: Option<&Path>, host: Option<&str>, root: &Path) -> Again {
        Again {
            spec: spec.map(|s| quote(&s.display().to_string())),
            host: host.map(quote),
            root: (root != Path::new("/")).then(|| quote(&root.display().to_string())),
            resolvers: Vec::new(),
        }
    }

    /// The same, asking these DNS servers.
    pub fn with_resolvers(&self, resolvers: &[ResolverAddr]) -> Again {
        Again {
            resolvers: resolvers.iter().map(ToString::to_string).collect(),
            ..self.clone()
        }
    }

    /// `mailsetup SUB SPEC FLAGS…`, in backquotes.
    pub fn cmd(&self, sub: &str) -> String {
        self.cmd_with(sub, &[])
    }

    /// `mailsetup SUB SPEC FLAGS… EXTRA…`, in backquotes.
    pub fn cmd_with(&self, sub: &str, extra: &[&str]) -> String {
        let mut words = vec!["mailsetup".to_string(), sub.to_string()];
        words.extend(self.spec.clone());
        if let Some(host) = &self.host {
            words.extend(["--host".to_string(), host.clone()]);
        }
        if let Some(root) = &self.root {
            words.extend(["--root".to_string(), root.clone()]);
        }
        for r in &self.resolvers {
            words.extend(["--resolver".to_string(), r.clone()]);
        }
        words.extend(extra.iter().map(|e| e.to_string()));
        format!("`{}`", words.join(" "))
    }

    /// Only the system (for a command that takes no spec: rollback).
    pub fn system_only(&self) -> Again {
        Again {
            root: self.root.clone(),
            ..Again::default()
        }
    }
}

/// A word as a POSIX shell reads it back.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_repeat_the_spec_and_flags() {
        let again = Again::new(
            Some(Path::new("my spec.yaml")),
            Some("mta01"),
            Path::new("/srv/root"),
        );
        assert_eq!(
            again.cmd("rotate activate"),
            "`mailsetup rotate activate 'my spec.yaml' --host mta01 --root /srv/root`"
        );
        let live = Again::new(
            Some(Path::new("/etc/mailsetup/m.yaml")),
            None,
            Path::new("/"),
        );
        assert_eq!(live.cmd("plan"), "`mailsetup plan /etc/mailsetup/m.yaml`");
        assert_eq!(
            again.system_only().cmd_with("rollback", &["--unconfigure"]),
            "`mailsetup rollback --root /srv/root --unconfigure`"
        );
    }
}
