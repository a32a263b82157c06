//! The trust boundary: what apply may execute, judged against the managed-file
//! table. Saved plans and bundles are rendered again on the host, so they cannot
//! name another path or mode; this check is the one gate every plan passes
//! before apply touches anything, whatever produced it.

use std::collections::BTreeSet;

use crate::desired::{
    self, Effect, KEY_DIR_MODE, OPENDKIM, Owner, ROOT, ROTATION_STATE_MODE, SHARED_KEY, key_dir,
    managed_dirs, managed_file, paths,
};
use crate::plan::{FollowUp, Plan, Step};
use crate::spec::DomainName;
use crate::spec::names::check_selector;

/// A step the managed-file table does not allow. Nothing has been written.
#[derive(Debug, thiserror::Error)]
#[error("refused step {index} ({label}): {why}; nothing was written")]
pub struct Refused {
    pub index: usize,
    pub label: String,
    pub why: String,
}

/// A key set's name: `shared`, or a domain written as the spec writes domains.
pub fn is_key_set(set: &str) -> bool {
    set == SHARED_KEY || set.parse::<DomainName>().is_ok_and(|d| d.as_str() == set)
}

/// A file directly in a key set's directory under `base` (the key
/// directory, or mailsetup's state of the key sets): its set and file name.
fn in_set_dir<'a>(base: &str, path: &'a str) -> Option<(&'a str, &'a str)> {
    let (set, file) = path
        .strip_prefix(base)?
        .strip_prefix('/')?
        .split_once('/')?;
    (is_key_set(set) && !file.contains('/')).then_some((set, file))
}

/// A file directly in a key set's key directory: its set and file name.
fn in_key_set(path: &str) -> Option<(&str, &str)> {
    in_set_dir(paths::KEYS_DIR, path)
}

/// `/etc/opendkim/keys/<set>/<selector>.private|.txt`.
pub fn is_key_file(path: &str) -> bool {
    in_key_set(path).is_some_and(|(_, file)| {
        file.strip_suffix(".private")
            .or_else(|| file.strip_suffix(".txt"))
            .is_some_and(|s| check_selector(s).is_ok())
    })
}

/// A key set's rotation state file (`desired::rotation_state`).
pub fn is_rotation_state(path: &str) -> bool {
    let Some((set, file)) = in_set_dir(crate::state::KEYSETS, path) else {
        return false;
    };
    let host = match file
        .strip_prefix("rotation")
        .and_then(|f| f.strip_suffix(".json"))
    {
        Some("") => None,
        Some(h) => match h.strip_prefix('-') {
            Some(h) if h.parse::<DomainName>().is_ok_and(|d| d.as_str() == h) => Some(h),
            _ => return false,
        },
        None => return false,
    };
    desired::rotation_state(set, host) == path
}

/// Owner and mode of a directory mailsetup manages, if it manages one at `path`.
pub fn managed_dir(path: &str) -> Option<(Owner, u32)> {
    if let Some(dir) = managed_dirs().into_iter().find(|d| d.path == path) {
        return Some((dir.owner, dir.mode));
    }
    let set = path
        .strip_prefix(paths::KEYS_DIR)?
        .strip_prefix('/')
        .filter(|set| is_key_set(set))?;
    (key_dir(set) == path).then_some((OPENDKIM, KEY_DIR_MODE))
}

/// Checks every step of `plan` against the table: paths, owners, modes and
/// the follow-ups the changed files call for.
pub fn check(plan: &Plan) -> Result<(), Refused> {
    let mut effects = BTreeSet::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let refuse = |why: String| Refused {
            index: i + 1,
            label: step.label(),
            why,
        };
        let is = |path: &str, owner: Owner, mode: u32| -> Result<(), Refused> {
            let allowed = managed_dir(path)
                .or_else(|| managed_file(path).map(|f| (f.owner, f.mode)))
                .ok_or_else(|| refuse(format!("{path} is not managed by mailsetup")))?;
            if allowed != (owner, mode) {
                return Err(refuse(format!(
                    "{path} is {}:{} {:04o}, not {}:{} {mode:04o}",
                    allowed.0.user, allowed.0.group, allowed.1, owner.user, owner.group
                )));
            }
            Ok(())
        };
        match step {
            Step::InstallPackages { packages } => {
                if i != 0 {
                    return Err(refuse("packages are installed first or not at all".into()));
                }
                if let Some(p) = packages
                    .iter()
                    .find(|p| !crate::packages::KNOWN.contains(&p.as_str()))
                {
                    return Err(refuse(format!("{p} is not a package mailsetup installs")));
                }
            }
            Step::CreateDir {
                path, mode, owner, ..
            } => {
                managed_dir(path).ok_or_else(|| {
                    refuse(format!("{path} is not a directory mailsetup manages"))
                })?;
                is(path, *owner, *mode)?;
            }
            Step::FixMeta {
                path, mode, owner, ..
            } => is(path, *owner, *mode)?,
            Step::GenerateKey {
                set,
                selector,
                bits,
                private_path,
                txt_path,
                ..
            } => {
                let dir = key_dir(set);
                let path = crate::desired::KeyPath::new(set, selector);
                if !is_key_set(set)
                    || check_selector(selector).is_err()
                    || *private_path != path.private
                    || *txt_path != path.txt
                {
                    return Err(refuse(format!(
                        "a key goes to {dir}/SELECTOR.private and .txt, named by its set and selector"
                    )));
                }
                crate::keys::check_bits(*bits).map_err(|e| refuse(e.to_string()))?;
                effects.insert(Effect::Reload(desired::Service::Opendkim));
            }
            Step::CreateFile(f) | Step::UpdateFile(f) if is_rotation_state(&f.path) => {
                if (f.owner, f.mode, f.secret) != (ROOT, ROTATION_STATE_MODE, false) {
                    return Err(refuse(format!(
                        "{} is a rotation state: root:root {ROTATION_STATE_MODE:04o}, no credentials",
                        f.path
                    )));
                }
            }
            Step::CreateFile(f) | Step::UpdateFile(f) => {
                is(&f.path, f.owner, f.mode)?;
                let table = managed_file(&f.path)
                    .ok_or_else(|| refuse(format!("{} is not a file", f.path)))?;
                if table.secret != f.secret {
                    return Err(refuse(format!("{} holds credentials or not", f.path)));
                }
                effects.extend(table.effects.iter().copied());
            }
            Step::RemoveFile { path } => {
                let table = managed_file(path)
                    .ok_or_else(|| refuse(format!("{path} is not managed by mailsetup")))?;
                effects.extend(table.effects.iter().copied());
            }
            Step::MoveKeySetState { set, host } => {
                let host_ok = host
                    .as_ref()
                    .is_none_or(|h| h.parse::<DomainName>().is_ok_and(|d| d.as_str() == h));
                if !is_key_set(set) || !host_ok {
                    return Err(refuse(
                        "a key set's state is moved by its set and host name only".into(),
                    ));
                }
            }
            Step::ArchiveKey { set, selector } => {
                if !is_key_set(set) || check_selector(selector).is_err() {
                    return Err(refuse(
                        "a key is archived by its set and selector, inside its set's directory"
                            .into(),
                    ));
                }
            }
            Step::AddToGroup { user, group } => {
                if (user.as_str(), group.as_str()) != ("postfix", "opendkim") {
                    return Err(refuse("only postfix joins group opendkim".into()));
                }
                effects.insert(Effect::Reload(desired::Service::Postfix));
            }
            Step::FollowUp(follow_up) => {
                let derived = match follow_up {
                    FollowUp::Newaliases => effects.contains(&Effect::Newaliases),
                    FollowUp::Postmap { path } => {
                        path == paths::SASL_PASSWD && effects.contains(&Effect::Postmap)
                    }
                    FollowUp::Service { service, action } => {
                        let changed = effects.contains(&Effect::Reload(*service))
                            || effects.contains(&Effect::Restart(*service));
                        // Starting a service belongs to a fresh install: in the
                        // plan that installs, or the one made again after it.
                        let installing = !plan.installed.is_empty()
                            || matches!(plan.steps.first(), Some(Step::InstallPackages { .. }));
                        match action {
                            crate::host::ServiceAction::Start => installing,
                            // Only a rollback stops a service, never a plan.
                            crate::host::ServiceAction::Stop => false,
                            _ => changed,
                        }
                    }
                };
                if !derived {
                    return Err(refuse("no change before it calls for it".into()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::is_managed_file;

    fn desired() -> desired::Desired {
        let (spec, _) = crate::spec::parse(
            "host:\n  hostname: mail.example.com\n  relay:\n    host: relay.example.net\n    auth:\n      username: u\n      password_file: /p\ndomains:\n  example.com:\ndkim:\n  key: per-domain\naliases:\n  root: a@example.net\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        render_spec(&spec).unwrap()
    }

    /// The desired state of `spec` on a host with no keys yet.
    fn render_spec(spec: &crate::spec::Spec) -> anyhow::Result<desired::Desired> {
        let facts = desired::HostFacts {
            key_selectors: Default::default(),
            signing_selectors: Default::default(),
            relay_password: Some("pw".into()),
            today: "2026-11-24".parse().unwrap(),
        };
        let templates = crate::templates::Templates::load(None).unwrap();
        desired::desired(&spec.for_host(None)?, &templates, &facts)
    }

    /// Whatever the desired state names, the boundary allows, with its owner and mode.
    #[test]
    fn every_desired_path_is_allowed() {
        let desired = desired();
        assert!(desired.files.iter().any(|f| f.secret));
        for file in &desired.files {
            let table = managed_file(&file.path).unwrap();
            assert_eq!((table.owner, table.mode), (file.owner, file.mode));
        }
        for dir in &desired.dirs {
            assert_eq!(
                managed_dir(&dir.path),
                Some((dir.owner, dir.mode)),
                "{}",
                dir.path
            );
        }
        for key in &desired.keys {
            assert!(is_key_file(&key.private_path) && is_key_file(&key.txt_path));
        }
    }

    #[test]
    fn only_managed_paths_pass() {
        assert!(is_managed_file("/etc/postfix/main.cf"));
        assert!(!is_managed_file("/etc/shadow"));
        assert!(!is_managed_file("/etc/postfix/../shadow"));
        assert!(is_key_file("/etc/opendkim/keys/shared/20261124.private"));
        assert!(is_key_file("/etc/opendkim/keys/example.com/mail.txt"));
        assert!(!is_key_file("/etc/opendkim/keys/../../shadow.private"));
        assert!(!is_key_file("/etc/opendkim/keys/shared/../x.private"));
        assert!(managed_dir("/etc/opendkim/keys/example.com").is_some());
        assert!(managed_dir("/etc/opendkim/keys/..").is_none());
        assert!(managed_dir("/root").is_none());
        assert!(is_rotation_state(
            "/var/lib/mailsetup/keys/shared/rotation.json"
        ));
        assert!(is_rotation_state(
            "/var/lib/mailsetup/keys/example.com/rotation-mta01.example.com.json"
        ));
        assert!(!is_rotation_state(
            "/var/lib/mailsetup/keys/../rotation.json"
        ));
        assert!(!is_rotation_state(
            "/var/lib/mailsetup/keys/shared/rotation-.json"
        ));
        assert!(!is_rotation_state(
            "/var/lib/mailsetup/keys/shared/rotation-../x.json"
        ));
        assert!(!is_rotation_state(
            "/var/lib/mailsetup/keys/shared/x/rotation.json"
        ));
        assert!(!is_rotation_state("/var/lib/mailsetup/rotation.json"));
        // Not in the key directory, which is opendkim's.
        assert!(!is_rotation_state(
            "/etc/opendkim/keys/shared/rotation.json"
        ));
    }

    fn plan_of(steps: Vec<Step>) -> Plan {
        Plan::of_steps(steps)
    }

    fn write(path: &str, mode: u32, owner: Owner) -> crate::plan::FileWrite {
        crate::plan::FileWrite {
            path: path.into(),
            mode,
            owner,
            ids: None,
            secret: false,
            old: None,
            new: String::new(),
            old_sha256: None,
            new_sha256: None,
        }
    }

    #[test]
    fn hostile_steps_are_refused_by_number() {
        use crate::desired::ROOT;
        let ok = Step::UpdateFile(write(paths::ALIASES, 0o644, ROOT));
        assert!(
            check(&plan_of(vec![
                ok.clone(),
                Step::FollowUp(FollowUp::Newaliases)
            ]))
            .is_ok()
        );
        let hostile = [
            Step::UpdateFile(write("/etc/cron.d/evil", 0o644, ROOT)),
            Step::UpdateFile(write("/../ESCAPED", 0o644, ROOT)),
            Step::UpdateFile(write(paths::MAIN_CF, 0o777, ROOT)),
            Step::UpdateFile(write(paths::MAIN_CF, 0o644, OPENDKIM)),
            Step::UpdateFile(write(paths::SASL_PASSWD, 0o600, ROOT)),
            Step::CreateDir {
                path: "/etc/cron.d".into(),
                mode: 0o755,
                owner: ROOT,
                ids: None,
            },
            Step::GenerateKey {
                set: "shared".into(),
                selector: "s".into(),
                bits: 2048,
                domain: "example.com".into(),
                private_path: "/etc/cron.d/s.private".into(),
                txt_path: "/etc/opendkim/keys/shared/s.txt".into(),
                ids: None,
            },
            Step::RemoveFile {
                path: "/etc/passwd".into(),
            },
            Step::AddToGroup {
                user: "www-data".into(),
                group: "root".into(),
            },
            Step::FollowUp(FollowUp::Postmap {
                path: "/etc/shadow".into(),
            }),
            Step::ArchiveKey {
                set: "..".into(),
                selector: "s".into(),
            },
            Step::ArchiveKey {
                set: "shared".into(),
                selector: "../../../etc/passwd".into(),
            },
            // A rotation state is root's, 0644, and never holds credentials.
            Step::UpdateFile(write(
                "/etc/opendkim/keys/shared/rotation.json",
                0o666,
                ROOT,
            )),
            Step::CreateFile(write(
                "/etc/opendkim/keys/shared/rotation.json",
                0o644,
                OPENDKIM,
            )),
        ];
        for step in hostile {
            let err = check(&plan_of(vec![step.clone()])).unwrap_err();
            assert_eq!(err.index, 1, "{step:?}");
            let err = check(&plan_of(vec![ok.clone(), step.clone()])).unwrap_err();
            assert_eq!(err.index, 2, "{step:?}");
        }
        // Packages: known ones, first.
        let install = |p: &str| Step::InstallPackages {
            packages: vec![p.to_string()],
        };
        assert!(check(&plan_of(vec![install("postfix"), ok.clone()])).is_ok());
        assert!(check(&plan_of(vec![install("netcat-traditional")])).is_err());
        assert_eq!(
            check(&plan_of(vec![ok.clone(), install("postfix")]))
                .unwrap_err()
                .index,
            2
        );
        // Starting a service belongs to a fresh install.
        let start = Step::FollowUp(FollowUp::Service {
            service: desired::Service::Postfix,
            action: crate::host::ServiceAction::Start,
        });
        let main_cf = Step::UpdateFile(write(paths::MAIN_CF, 0o644, ROOT));
        assert!(check(&plan_of(vec![main_cf.clone(), start.clone()])).is_err());
        assert!(check(&plan_of(vec![install("postfix"), main_cf, start])).is_ok());
        // Rotation: a state file and an archived key in a key set.
        let rotation = vec![
            Step::ArchiveKey {
                set: "example.com".into(),
                selector: "20261124".into(),
            },
            Step::UpdateFile(write(
                "/var/lib/mailsetup/keys/example.com/rotation.json",
                0o644,
                ROOT,
            )),
            Step::MoveKeySetState {
                set: "example.com".into(),
                host: Some("mta01.example.com".into()),
            },
        ];
        assert!(check(&plan_of(rotation)).is_ok());
        // The old place, in opendkim's key directory, is refused.
        let legacy = Step::UpdateFile(write(
            "/etc/opendkim/keys/example.com/rotation.json",
            0o644,
            ROOT,
        ));
        assert!(check(&plan_of(vec![legacy])).is_err());
        for (set, host) in [("../x", None), ("shared", Some("../../etc"))] {
            let moved = Step::MoveKeySetState {
                set: set.into(),
                host: host.map(str::to_string),
            };
            assert!(check(&plan_of(vec![moved])).is_err(), "{set} {host:?}");
        }
        // A follow-up no change calls for.
        let err = check(&plan_of(vec![Step::FollowUp(FollowUp::Newaliases)])).unwrap_err();
        assert_eq!(err.index, 1);
    }

    use proptest::prelude::*;

    /// A spec using every field whose value reaches a rendered file, with one
    /// value replaced by `{}` (filled in as a YAML double-quoted string).
    const FIELDS: &[(&str, &str)] = &[
        ("hostname", "host:\n  hostname: {}\n"),
        (
            "mailname",
            "host:\n  hostname: mail.example.com\n  mailname: {}\n",
        ),
        (
            "maillog_file",
            "host:\n  hostname: mail.example.com\n  maillog_file: {}\n",
        ),
        (
            "networks",
            "host:\n  hostname: mail.example.com\n  networks: [{}]\n",
        ),
        (
            "relay.host",
            "host:\n  hostname: mail.example.com\n  relay:\n    host: {}\n",
        ),
        (
            "relay.auth.username",
            "host:\n  hostname: mail.example.com\n  relay:\n    host: r.example.net\n    auth:\n      username: {}\n      password_file: /p\n",
        ),
        (
            "domain",
            "host:\n  hostname: mail.example.com\ndomains:\n  {}:\n",
        ),
        ("dkim.selector", "dkim:\n  selector: {}\n"),
        ("dkim.trusted_hosts", "dkim:\n  trusted_hosts: [{}]\n"),
        ("dkim.oversign_headers", "dkim:\n  oversign_headers: [{}]\n"),
        (
            "alias name",
            "aliases:\n  root: ops@example.net\n  {}: root\n",
        ),
        ("alias target", "aliases:\n  root: [{}]\n"),
        ("apticron.email", "apticron:\n  email: {}\n"),
        (
            "apticron.subject",
            "apticron:\n  email: root\n  subject: {}\n",
        ),
    ];

    /// The spec with `field` set to `value`; everything else fixed.
    fn spec_text(field: &str, value: &str) -> String {
        let quoted = serde_json::to_string(value).unwrap();
        let mut parts = vec![
            ("host", "host:\n  hostname: mail.example.com\n".to_string()),
            ("domains", "domains:\n  example.com:\n".to_string()),
            ("dkim", "dkim:\n  selector: mail\n".to_string()),
            ("aliases", "aliases:\n  root: ops@example.net\n".to_string()),
            ("apticron", "apticron:\n  email: root\n".to_string()),
        ];
        let template = FIELDS.iter().find(|(f, _)| *f == field).unwrap().1;
        let filled = template.replace("{}", &quoted);
        for (key, text) in &mut parts {
            if filled.starts_with(&format!("{key}:")) {
                *text = filled.clone();
            }
            // The domain field sits under `domains` after a host section.
            if *key == "host" && field == "domain" {
                *text = filled.clone();
            }
            if *key == "domains" && field == "domain" {
                text.clear();
            }
        }
        parts.into_iter().map(|(_, t)| t).collect()
    }

    fn render(text: &str) -> Option<desired::Desired> {
        let (spec, _) = crate::spec::parse(text, std::path::Path::new("p.yaml")).ok()?;
        render_spec(&spec).ok()
    }

    /// Baseline values, one valid per field, whose render every accepted value
    /// must match line for line.
    fn baseline(field: &str) -> &'static str {
        match field {
            "hostname" | "mailname" => "mail.example.com",
            "maillog_file" => "/var/log/postfix.log",
            "networks" => "127.0.0.0/8",
            "relay.host" => "relay.example.net",
            "relay.auth.username" => "user",
            "domain" => "example.com",
            "dkim.selector" => "mail",
            "dkim.trusted_hosts" => "127.0.0.1",
            "dkim.oversign_headers" => "From",
            "alias name" => "abuse",
            "alias target" => "ops@example.net",
            "apticron.email" => "root",
            "apticron.subject" => "System updates.",
            _ => unreachable!(),
        }
    }

    fn line_counts(d: &desired::Desired) -> Vec<(String, usize)> {
        d.files
            .iter()
            .map(|f| (f.path.clone(), f.content.lines().count()))
            .collect()
    }

    #[test]
    fn every_field_renders_at_its_baseline() {
        for (field, _) in FIELDS {
            assert!(
                render(&spec_text(field, baseline(field))).is_some(),
                "{field}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the parser accepts renders no control character, no extra
        /// line (a value cannot add a setting) and no path outside the table;
        /// and the accepted spec reads back as itself.
        #[test]
        fn accepted_specs_stay_inside_their_lines_and_the_tree(
            field in proptest::sample::select(FIELDS.iter().map(|(f, _)| *f).collect::<Vec<_>>()),
            value in proptest::string::string_regex(
                "[a-zA-Z0-9.@:/_+=,#;|{}\\[\\]\"'$` \t\r\n\\\\\u{0}\u{7f}\u{2028}ä-]{0,24}"
            ).unwrap(),
        ) {
            let text = spec_text(field, &value);
            let Some(desired) = render(&text) else { return Ok(()) };
            let base = render(&spec_text(field, baseline(field))).unwrap();
            prop_assert_eq!(line_counts(&desired), line_counts(&base), "{} = {:?}", field, value);
            for file in &desired.files {
                prop_assert!(
                    file.content.chars().all(|c| c == '\n' || c == '\t' || !c.is_control()),
                    "{} = {:?}: control character in {}", field, value, file.path
                );
                prop_assert!(managed_file(&file.path).is_some());
            }
            for dir in &desired.dirs {
                prop_assert!(managed_dir(&dir.path).is_some(), "{}", dir.path);
            }
            for key in &desired.keys {
                prop_assert!(is_key_file(&key.private_path) && is_key_file(&key.txt_path));
            }
            // parse → serialize → parse is stable.
            let (spec, _) = crate::spec::parse(&text, std::path::Path::new("p.yaml")).unwrap();
            let again = serde_yaml_ng::to_string(&spec).unwrap();
            let (reread, _) = crate::spec::parse(&again, std::path::Path::new("p.yaml")).unwrap();
            prop_assert_eq!(serde_yaml_ng::to_string(&reread).unwrap(), again);
        }
    }
}
