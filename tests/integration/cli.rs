//! The CLI on temporary roots: validate, plan, apply, dns, rollback, init.
//! No root privileges needed (owners are then left alone, and noted).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{
    DATE, RELAY_PASSWORD, Test, example, examples, path_str, root, targets, tree,
};

#[test]
fn every_example_validates() {
    for name in examples() {
        Test::new()
            .args(&["validate", &example(&name)])
            .stdout_has("valid")
            .run();
    }
}

#[test]
fn examples_name_the_schema_and_the_schema_is_current() {
    for name in examples() {
        let text = std::fs::read_to_string(example(&name)).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../schemas/mailsetup.schema.json"),
            "{name}"
        );
    }
    let schema = Test::new().args(&["schema"]).run().stdout;
    let kept = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/mailsetup.schema.json"),
    )
    .unwrap();
    assert!(
        schema == kept,
        "schemas/mailsetup.schema.json is stale: run `cargo run -- schema > schemas/mailsetup.schema.json`"
    );
}

#[test]
fn init_writes_a_starter_that_validates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("mailsetup.yaml");
    Test::new()
        .args(&["init", path_str(&spec)])
        .stdout_has("mailsetup.schema.json (for editors)")
        .run();
    Test::new().args(&["validate", path_str(&spec)]).run();
    // Editors find the schema: the first line names the copy written beside it.
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=mailsetup.schema.json\n"),
        "{text}"
    );
    let schema = std::fs::read_to_string(dir.path().join("mailsetup.schema.json")).unwrap();
    assert_eq!(schema, Test::new().args(&["schema"]).run().stdout);
    Test::new()
        .args(&["init", path_str(&spec)])
        .status(1)
        .stderr_has("--force")
        .run();
    Test::new()
        .args(&["init", path_str(&spec), "--force"])
        .run();
}

#[test]
fn plan_writes_nothing_and_reports_changes_with_the_detailed_exit_code() {
    for t in targets() {
        let root = root();
        let r = path_str(root.path());
        let before = tree(root.path());
        Test::new()
            .args(&t.args("plan", r, &["--detailed-exitcode"]))
            .status(2)
            .stdout_has("+ create /etc/postfix/main.cf")
            .stdout_has("generate DKIM key")
            .run();
        assert_eq!(tree(root.path()), before, "{}: plan wrote files", t.label);
        // Without the flag, changes are not an error.
        Test::new().args(&t.args("plan", r, &[])).run();
    }
}

#[test]
fn apply_then_plan_is_empty_and_a_second_apply_changes_nothing() {
    for t in targets() {
        let root = root();
        let r = path_str(root.path());
        Test::new().args(&t.args("apply", r, &[])).run();
        let after_first = tree(root.path());
        Test::new()
            .args(&t.args("plan", r, &["--detailed-exitcode"]))
            .stdout_has("No changes.")
            .run();
        Test::new()
            .args(&t.args("apply", r, &[]))
            .stdout_has("No changes.")
            .run();
        assert_eq!(
            tree(root.path()),
            after_first,
            "{}: the second apply changed files",
            t.label
        );
    }
}

#[test]
fn keys_are_private_and_never_printed() {
    let root = root();
    let r = path_str(root.path());
    let out = Test::new()
        .args(&["apply", &example("guide.yaml"), "--root", r])
        .run();
    let key = root
        .path()
        .join(format!("etc/opendkim/keys/shared/{DATE}.private"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let keys_dir = std::fs::metadata(root.path().join("etc/opendkim/keys")).unwrap();
    assert_eq!(keys_dir.permissions().mode() & 0o777, 0o700);
    let secret_line = pem.lines().nth(1).unwrap();
    let json = Test::new()
        .args(&[
            "plan",
            &example("guide.yaml"),
            "--root",
            r,
            "--format",
            "json",
        ])
        .run();
    let dns = Test::new()
        .args(&["dns", &example("guide.yaml"), "--root", r])
        .run();
    for text in [&out.stdout, &out.stderr, &json.stdout, &dns.stdout] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains(secret_line));
    }
}

#[test]
fn the_relay_password_is_hidden_in_plans_and_its_file_is_0600() {
    let root = root();
    let r = path_str(root.path());
    let plan = Test::new()
        .args(&["plan", &example("smarthost.yaml"), "--root", r])
        .stdout_has("+ create /etc/postfix/sasl_passwd")
        .stdout_has("content hidden")
        .run();
    let json = Test::new()
        .args(&[
            "plan",
            &example("smarthost.yaml"),
            "--root",
            r,
            "--format",
            "json",
        ])
        .run();
    Test::new()
        .args(&["apply", &example("smarthost.yaml"), "--root", r])
        .run();
    for text in [&plan.stdout, &json.stdout] {
        assert!(!text.contains(RELAY_PASSWORD));
    }
    let sasl = root.path().join("etc/postfix/sasl_passwd");
    assert_eq!(
        std::fs::metadata(&sasl).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&sasl).unwrap();
    assert!(
        text.contains(&format!(
            "[smtp.mailprovider.example]:587 app1@example.com:{RELAY_PASSWORD}"
        )),
        "{text}"
    );
}

#[test]
fn dkim_records_carry_the_public_half_of_the_key_on_disk() {
    let root = root();
    let r = path_str(root.path());
    Test::new()
        .args(&["apply", &example("smarthost.yaml"), "--root", r])
        .run();
    let pem = std::fs::read_to_string(
        root.path()
            .join(format!("etc/opendkim/keys/example.com/app1-{DATE}.private")),
    )
    .unwrap();
    let on_disk = mailsetup::keys::DkimPublicKey::from_private_pem(&pem).unwrap();

    let json: serde_json::Value = serde_json::from_str(
        &Test::new()
            .args(&[
                "dns",
                &example("smarthost.yaml"),
                "--root",
                r,
                "--format",
                "json",
            ])
            .run()
            .stdout,
    )
    .unwrap();
    // The domain's, and the mailname's (system mail signs as itself).
    let dkim: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "dkim")
        .collect();
    assert_eq!(dkim.len(), 2);
    assert_eq!(
        dkim[1]["name"],
        format!("app1-{DATE}._domainkey.app1.example.com")
    );
    assert_eq!(
        dkim[0]["name"],
        format!("app1-{DATE}._domainkey.example.com")
    );
    assert_eq!(dkim[0]["type"], "TXT");
    let value = dkim[0]["value"].as_str().unwrap();
    let p = value.split("p=").nth(1).unwrap();
    assert_eq!(
        mailsetup::keys::DkimPublicKey::from_p_value(p).unwrap(),
        on_disk
    );
    assert_eq!(value, on_disk.dns_value());

    // The zone form: the same value, cut into quoted strings of at most 255 bytes.
    let zone = Test::new()
        .args(&["dns", &example("smarthost.yaml"), "--root", r])
        .run()
        .stdout;
    let line = zone
        .lines()
        .find(|l| l.starts_with(&format!("app1-{DATE}._domainkey.example.com.\tIN\tTXT\t")))
        .unwrap();
    let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    assert!(
        strings.len() >= 2 && strings.iter().all(|s| s.len() <= 255),
        "{line}"
    );
    assert_eq!(strings.concat(), value);
    // Reports go to another domain: its authorization record is listed.
    assert!(
        zone.contains("example.com._report._dmarc.reports.example.net.\tIN\tTXT\t\"v=DMARC1\""),
        "{zone}"
    );
}

#[test]
fn dns_before_apply_warns_that_keys_are_missing() {
    let root = root();
    let r = path_str(root.path());
    let out = Test::new()
        .args(&["dns", &example("minimal.yaml"), "--root", r])
        .stderr_has(format!(
            "`mailsetup apply {} --root {r}` makes the missing keys",
            example("minimal.yaml")
        ))
        .stdout_has("; MISSING")
        .stdout_has("example.com.\tIN\tTXT\t\"v=spf1 a -all\"")
        .run();
    // The command works as printed: afterwards the key is there.
    crate::support::hinted(&out.stderr, "apply").run();
    Test::new()
        .args(&["dns", &example("minimal.yaml"), "--root", r])
        .stdout_lacks("MISSING")
        .stderr_lacks("missing")
        .run();
}

#[test]
fn a_changed_spec_updates_only_what_changed_and_rollback_restores() {
    let root = root();
    let r = path_str(root.path());
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let original = std::fs::read_to_string(example("minimal.yaml")).unwrap();
    std::fs::write(&spec, &original).unwrap();
    let s = path_str(&spec);
    Test::new().args(&["apply", s, "--root", r]).run();
    let first = tree(&root.path().join("etc"));

    std::fs::write(
        &spec,
        original.replace("root: ops@example.net", "root: admin@example.net"),
    )
    .unwrap();
    Test::new()
        .args(&["plan", s, "--root", r, "--detailed-exitcode"])
        .status(2)
        .stdout_has("~ update /etc/aliases")
        .stdout_has("-root: ops@example.net")
        .stdout_has("+root: admin@example.net")
        .stdout_lacks("main.cf")
        .run();
    Test::new().args(&["apply", s, "--root", r]).run();
    assert!(
        std::fs::read_to_string(root.path().join("etc/aliases"))
            .unwrap()
            .contains("admin@example.net")
    );

    Test::new()
        .args(&["rollback", "--root", r])
        .stdout_has("/etc/aliases")
        .run();
    let restored = tree(&root.path().join("etc"));
    let without_db = |t: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>| {
        t.iter()
            .filter(|(p, _)| p.extension().is_none_or(|e| e != "db"))
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(without_db(&restored), without_db(&first));

    // One step further back is before the first apply: the daemons would be
    // left without a configuration, so only when asked, and nothing changes
    // before then.
    let before = crate::support::snapshot(root.path());
    Test::new()
        .args(&["rollback", "--root", r])
        .status(1)
        .stderr_has("first configured the mail services")
        .stderr_has(format!("`mailsetup rollback --root {r} --unconfigure`"))
        .run();
    crate::support::assert_unchanged(
        &before,
        &crate::support::snapshot(root.path()),
        "a refused rollback changed files",
    );
    Test::new()
        .args(&["rollback", "--root", r, "--unconfigure"])
        .run();
    assert!(!root.path().join("etc/postfix/main.cf").exists());
    // The aliases database the first apply built goes with /etc/aliases.
    assert!(!root.path().join("etc/aliases").exists());
    assert!(!root.path().join("etc/aliases.db").exists());
    assert!(
        root.path()
            .join(format!("etc/opendkim/keys/shared/{DATE}.private"))
            .exists(),
        "keys are kept"
    );
    Test::new()
        .args(&["rollback", "--root", r])
        .status(1)
        .stderr_has("nothing to roll back")
        .run();
}

#[test]
fn originals_are_kept_before_the_first_change() {
    let root = root();
    std::fs::create_dir_all(root.path().join("etc/postfix")).unwrap();
    std::fs::write(
        root.path().join("etc/postfix/main.cf"),
        "# the distribution's main.cf\n",
    )
    .unwrap();
    Test::new()
        .args(&[
            "apply",
            &example("minimal.yaml"),
            "--root",
            path_str(root.path()),
        ])
        .run();
    let kept = std::fs::read_to_string(
        root.path()
            .join("var/lib/mailsetup/originals/etc/postfix/main.cf"),
    )
    .unwrap();
    assert_eq!(kept, "# the distribution's main.cf\n");
}

#[test]
fn template_overrides_take_precedence() {
    let root = root();
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("apticron.conf.tera"),
        "# {{ header }}\nEMAIL=\"{{ apticron.email }}\"\nDIFF_ONLY=\"1\"\n",
    )
    .unwrap();
    Test::new()
        .args(&[
            "apply",
            &example("minimal.yaml"),
            "--root",
            path_str(root.path()),
            "--templates",
            path_str(templates.path()),
        ])
        .run();
    let text = std::fs::read_to_string(root.path().join("etc/apticron/apticron.conf")).unwrap();
    assert!(
        text.ends_with("EMAIL=\"root\"\nDIFF_ONLY=\"1\"\n"),
        "{text}"
    );

    std::fs::write(templates.path().join("main.cf"), "typo").unwrap();
    Test::new()
        .args(&[
            "plan",
            &example("minimal.yaml"),
            "--root",
            path_str(root.path()),
            "--templates",
            path_str(templates.path()),
        ])
        .status(1)
        .stderr_has("not a template mailsetup knows")
        .run();
}

#[test]
fn planted_symlinks_are_not_followed() {
    let root = root();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/opendkim")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("etc/opendkim/keys")).unwrap();
    Test::new()
        .args(&[
            "apply",
            &example("minimal.yaml"),
            "--root",
            path_str(root.path()),
        ])
        .status(1)
        .stderr_has("keys is a symlink")
        .run();
    assert!(tree(outside.path()).is_empty(), "wrote through the symlink");
    assert!(!root.path().join("etc/postfix/main.cf").exists());
}

#[test]
fn a_second_apply_waits_for_no_one_it_fails_on_the_lock() {
    let root = root();
    let r = path_str(root.path());
    Test::new()
        .args(&["apply", &example("minimal.yaml"), "--root", r])
        .run();
    let lock = std::fs::File::open(root.path().join("var/lib/mailsetup/lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    Test::new()
        .args(&["apply", &example("guide.yaml"), "--root", r])
        .status(1)
        .stderr_has("another mailsetup")
        .run();
}

#[test]
fn plan_json_lists_typed_steps() {
    let root = root();
    let out = Test::new()
        .args(&[
            "plan",
            &example("guide.yaml"),
            "--root",
            path_str(root.path()),
            "--format",
            "json",
        ])
        .run();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"create-dir")
            && kinds.contains(&"generate-key")
            && kinds.contains(&"create-file")
    );
    let main_cf = steps
        .iter()
        .find(|s| s["path"] == "/etc/postfix/main.cf")
        .unwrap();
    assert_eq!(main_cf["mode"], "0644");
    assert_eq!(main_cf["new_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn help_explains_every_command() {
    // --help names every command: one check each.
    [
        "init",
        "validate",
        "plan",
        "apply",
        "dns",
        "rollback",
        "bundle",
        "public-keys",
        "rotate",
        "check",
        "schema",
        "completions",
        "man",
    ]
    .into_iter()
    .fold(Test::new().args(&["--help"]), Test::stdout_has)
    .run();
    Test::new()
        .args(&["plan", "--help"])
        .stdout_has("--detailed-exitcode")
        .stdout_has("--root")
        .run();
    Test::new()
        .args(&["plan"])
        .status(1)
        .stderr_has("SPEC")
        .run();
}

#[test]
fn a_saved_plan_applies_exactly_and_is_refused_once_stale() {
    let root = root();
    let r = path_str(root.path());
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("plan.json");
    let p = path_str(&saved);
    Test::new()
        .args(&["plan", &example("smarthost.yaml"), "--root", r, "--out", p])
        .run();
    // No credentials in it: an ordinary file, fit for a CI artifact.
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(!text.contains(crate::support::RELAY_PASSWORD));
    assert!(
        !root.path().join("etc/postfix").exists(),
        "plan --out wrote into the root"
    );
    Test::new().args(&["apply", "--plan", p, "--root", r]).run();
    Test::new()
        .args(&[
            "plan",
            &example("smarthost.yaml"),
            "--root",
            r,
            "--detailed-exitcode",
        ])
        .run();

    // A plan made now, then a hand edit: the plan no longer describes the host.
    let spec = dir.path().join("spec.yaml");
    let text = std::fs::read_to_string(example("smarthost.yaml")).unwrap();
    std::fs::write(
        &spec,
        text.replace("p: quarantine", "p: reject")
            .replace("[ops@example.com, oncall@example.com]", "ops@example.com"),
    )
    .unwrap();
    Test::new()
        .args(&["plan", path_str(&spec), "--root", r, "--out", p])
        .run();
    let aliases = root.path().join("etc/aliases");
    let edited = std::fs::read_to_string(&aliases).unwrap() + "# edited by hand\n";
    std::fs::write(&aliases, &edited).unwrap();
    Test::new()
        .args(&["apply", "--plan", p, "--root", r])
        .status(1)
        .stderr_has("refused")
        .stderr_has("/etc/aliases")
        .run();
    assert_eq!(
        std::fs::read_to_string(&aliases).unwrap(),
        edited,
        "a stale plan changed files"
    );

    let other = tempfile::tempdir().unwrap();
    Test::new()
        .args(&["apply", "--plan", p, "--root", path_str(other.path())])
        .status(1)
        .stderr_has("the plan was made for")
        .run();
}

#[test]
fn the_daemons_own_checks_stop_a_bad_configuration_before_it_is_live() {
    if crate::support::missing_in_ci(&["postconf"]) {
        return;
    }
    let root = root();
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("main.cf.tera"),
        "# {{ header }}\nmyhostname = {{ host.hostname }}\nmyhostnme = typo\n",
    )
    .unwrap();
    Test::new()
        .args(&[
            "apply",
            &example("minimal.yaml"),
            "--root",
            path_str(root.path()),
            "--templates",
            path_str(templates.path()),
        ])
        .status(1)
        .stderr_has("postconf")
        .stderr_has("myhostnme")
        .run();
    assert!(!root.path().join("etc/postfix/main.cf").exists());
    assert!(!root.path().join("etc/opendkim").exists());
}

#[test]
fn hand_edits_are_pointed_out_before_they_are_replaced() {
    let root = root();
    let r = path_str(root.path());
    Test::new()
        .args(&["apply", &example("minimal.yaml"), "--root", r])
        .run();
    let aliases = root.path().join("etc/aliases");
    let edited = std::fs::read_to_string(&aliases).unwrap() + "backup: root\n";
    std::fs::write(&aliases, &edited).unwrap();
    Test::new()
        .args(&["plan", &example("minimal.yaml"), "--root", r])
        .stdout_has("/etc/aliases was edited by hand")
        .stdout_has("-backup: root")
        .run();
    Test::new()
        .args(&["apply", &example("minimal.yaml"), "--root", r])
        .run();
    // The edit is in the backup that apply made.
    let backups = tree(&root.path().join("var/lib/mailsetup/backups"));
    assert!(backups.values().any(|c| *c == edited.as_bytes()));
    Test::new()
        .args(&["plan", &example("minimal.yaml"), "--root", r])
        .stdout_lacks("edited by hand")
        .run();
}

#[test]
fn files_the_spec_no_longer_asks_for_are_removed_and_rollback_brings_them_back() {
    let root = root();
    let r = path_str(root.path());
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let with_auth = std::fs::read_to_string(example("smarthost.yaml")).unwrap();
    std::fs::write(&spec, &with_auth).unwrap();
    let s = path_str(&spec);
    Test::new().args(&["apply", s, "--root", r]).run();
    let sasl = root.path().join("etc/postfix/sasl_passwd");
    assert!(sasl.exists());

    // The provider now accepts this host without a password.
    let start = with_auth.find("    auth:").unwrap();
    let end = with_auth.find("\ndomains:").unwrap();
    let without = format!("{}{}", &with_auth[..start], &with_auth[end + 1..]);
    std::fs::write(&spec, &without).unwrap();
    Test::new()
        .args(&["plan", s, "--root", r, "--detailed-exitcode"])
        .status(2)
        .stdout_has("- remove /etc/postfix/sasl_passwd")
        .run();
    Test::new().args(&["apply", s, "--root", r]).run();
    assert!(!sasl.exists() && !root.path().join("etc/postfix/sasl_passwd.db").exists());
    Test::new()
        .args(&["plan", s, "--root", r, "--detailed-exitcode"])
        .run();

    Test::new().args(&["rollback", "--root", r]).run();
    assert!(
        std::fs::read_to_string(&sasl)
            .unwrap()
            .contains(RELAY_PASSWORD)
    );
    // Its lookup table is rebuilt too, so Postfix can log in again.
    assert!(root.path().join("etc/postfix/sasl_passwd.db").exists());
}

#[test]
fn an_unprivileged_apply_into_a_root_notes_the_owners_it_cannot_set() {
    use std::os::unix::process::CommandExt;
    let root = tempfile::tempdir().unwrap();
    // The binary and spec where nobody can read them, wherever the checkout is.
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tools.path().join("mailsetup");
    std::fs::copy(env!("CARGO_BIN_EXE_mailsetup"), &bin).unwrap();
    let spec = tools.path().join("minimal.yaml");
    std::fs::copy(example("minimal.yaml"), &spec).unwrap();
    std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        // Drop to nobody for the run, as an operator staging a tree would be.
        std::os::unix::fs::chown(root.path(), Some(65534), Some(65534)).unwrap();
    }
    // Not support::Test: this runs a copy of the binary, as nobody when root.
    let apply = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(args).env("NO_COLOR", "1");
        if as_root {
            cmd.uid(65534).gid(65534);
        }
        cmd.output().unwrap()
    };
    let r = path_str(root.path());
    let s = path_str(&spec);
    let out = apply(&["apply", s, "--root", r]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not running as root: owners are not set"),
        "{stdout}"
    );
    let key_dir = root.path().join("etc/opendkim/keys/shared");
    assert_eq!(
        std::fs::metadata(&key_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let out = apply(&["plan", s, "--root", r, "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn renaming_or_moving_the_spec_changes_nothing() {
    let root = root();
    let r = path_str(root.path());
    Test::new()
        .args(&["apply", &example("guide.yaml"), "--root", r])
        .run();
    let dir = tempfile::tempdir().unwrap();
    let moved = dir.path().join("elsewhere.yml");
    std::fs::copy(example("guide.yaml"), &moved).unwrap();
    Test::new()
        .args(&["plan", path_str(&moved), "--root", r, "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
}

#[test]
fn a_plan_shows_everything_before_the_relay_password_file_exists() {
    let root = tempfile::tempdir().unwrap();
    let r = path_str(root.path());
    Test::new()
        .args(&["plan", &example("smarthost.yaml"), "--root", r])
        .stderr_has("does not exist yet")
        .stderr_has("apply refuses")
        .stdout_has("+ create /etc/postfix/sasl_passwd")
        .stdout_has("+ create /etc/postfix/main.cf")
        .run();
    Test::new()
        .args(&["apply", &example("smarthost.yaml"), "--root", r])
        .status(1)
        .stderr_has("does not exist: create it")
        .run();
    assert!(
        crate::support::tree(root.path()).is_empty(),
        "apply wrote files"
    );
}

#[test]
fn missing_packages_are_listed_from_the_dpkg_database_under_the_root() {
    let root = root();
    let r = path_str(root.path());
    // A tree with no dpkg database lacks every package.
    Test::new()
        .args(&["plan", &example("smarthost.yaml"), "--root", r])
        .stdout_has(
            "missing packages are listed, not installed: postfix opendkim opendkim-tools apticron libsasl2-modules",
        )
        .run();
    // dpkg says two are installed (one only half).
    let dpkg = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(&dpkg).unwrap();
    std::fs::write(
        dpkg.join("status"),
        "Package: postfix\nStatus: install ok installed\n\n\
         Package: opendkim\nStatus: install ok installed\n\n\
         Package: apticron\nStatus: install ok unpacked\n",
    )
    .unwrap();
    Test::new()
        .args(&["plan", &example("minimal.yaml"), "--root", r])
        .stdout_has("missing packages are listed, not installed: opendkim-tools apticron\n")
        .run();
    // Packages managed elsewhere: nothing said about them.
    Test::new()
        .args(&[
            "plan",
            &example("minimal.yaml"),
            "--root",
            r,
            "--no-install-packages",
        ])
        .stdout_lacks("packages")
        .run();
}

#[test]
fn listed_subdomains_sign_as_themselves_with_their_own_records() {
    let root = root();
    let r = path_str(root.path());
    Test::new()
        .args(&["apply", &example("guide.yaml"), "--root", r])
        .run();
    let table = std::fs::read_to_string(root.path().join("etc/opendkim/SigningTable")).unwrap();
    assert!(
        table.contains("\napp.example.com app.example.com\n"),
        "{table}"
    );
    let keys = std::fs::read_to_string(root.path().join("etc/opendkim/KeyTable")).unwrap();
    assert!(
        keys.contains("\napp.example.com app.example.com:"),
        "{keys}"
    );
    let zone = Test::new()
        .args(&["dns", &example("guide.yaml"), "--root", r])
        .stdout_has("app.example.com.\tIN\tTXT\t\"v=spf1 a:example.com -all\"")
        .stdout_has("._domainkey.app.example.com.\tIN\tTXT")
        .stdout_lacks("_dmarc.app.example.com")
        .run()
        .stdout;
    // Every record explained in one comment line.
    let lines: Vec<&str> = zone.lines().skip(1).collect();
    for pair in lines.chunks(2) {
        assert!(
            pair[0].starts_with("; ") && !pair[1].starts_with(';'),
            "{pair:?}"
        );
    }
}

#[test]
fn validate_warns_of_every_dmarc_combination_that_fails_a_sender() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    let write = |text: &str| std::fs::write(&spec, text).unwrap();
    let base = "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\naliases:\n  root: ops@example.net\n";
    write(&format!(
        "{base}dkim:\n  subdomains: true\ndmarc:\n  adkim: s\n  rua: [d@example.com]\n"
    ));
    Test::new()
        .args(&["validate", path_str(&spec)])
        .stderr_has("warning:")
        .stderr_has("adkim: r")
        .run();
    write(&format!(
        "{base}dkim:\n  subdomains: true\ndmarc:\n  aspf: s\n  rua: [d@example.com]\n"
    ));
    Test::new()
        .args(&["validate", path_str(&spec)])
        .stderr_has("strict SPF alignment (aspf: s) does not count")
        .run();
    write(&format!("{base}dmarc:\n  p: reject\n"));
    Test::new()
        .args(&["validate", path_str(&spec)])
        .stderr_has("without rua")
        .run();
    // Strict alignment with listed subdomains only: nothing to warn of.
    write(
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n    subdomains: [app]\ndkim:\n  subdomains: false\ndmarc:\n  p: reject\n  adkim: s\n  aspf: s\n  rua: [d@example.com]\naliases:\n  root: ops@example.net\n",
    );
    Test::new()
        .args(&["validate", path_str(&spec)])
        .stderr_lacks("warning")
        .run();
    // A listed subdomain that is also a sending domain, or listed twice: refused.
    write(
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n    subdomains: [app, app]\naliases:\n  root: ops@example.net\n",
    );
    Test::new()
        .args(&["validate", path_str(&spec)])
        .status(1)
        .stderr_has("s.yaml:5:1: domains.example.com.subdomains: app.example.com is listed twice")
        .run();
    write(
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n    subdomains: [app]\n  app.example.com:\naliases:\n  root: ops@example.net\n",
    );
    Test::new()
        .args(&["validate", path_str(&spec)])
        .status(1)
        .stderr_has("a sending domain of its own")
        .run();
}

#[test]
fn ci_examples_and_specs_pass_their_published_schemas() {
    let Some(tool) = crate::support::test_tool("check-jsonschema") else {
        return;
    };
    let check = |args: &[&str]| {
        crate::support::succeed(
            std::process::Command::new(&tool)
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR")),
        );
    };
    check(&[
        "--builtin-schema",
        "vendor.github-workflows",
        "examples/ci/github-actions.yml",
    ]);
    check(&[
        "--builtin-schema",
        "vendor.gitlab-ci",
        "examples/ci/gitlab-ci.yml",
    ]);
    let mut specs = vec![
        "--schemafile".to_string(),
        "schemas/mailsetup.schema.json".to_string(),
    ];
    specs.extend(examples().into_iter().map(|n| format!("examples/{n}")));
    check(&specs.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The JSON Schema comes from the same types as the validators: every invalid
/// spec in tests/schema/invalid/ is refused by `validate` and by the schema
/// (with check-jsonschema, as an editor would), the examples pass both, and
/// what the schema cannot say (rules across fields, in tests/schema/beyond/)
/// is still refused by `validate`.
#[test]
fn the_schema_refuses_what_validate_refuses_where_a_schema_can() {
    let Some(tool) = crate::support::test_tool("check-jsonschema") else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema");
    let schema_accepts = |file: &Path| {
        std::process::Command::new(&tool)
            .args(["--schemafile", "schemas/mailsetup.schema.json"])
            .arg(file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
            .status
            .success()
    };
    let files = |sub: &str| {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    };
    let invalid = files("invalid");
    assert!(invalid.len() >= 15, "{invalid:?}");
    for file in &invalid {
        Test::new()
            .args(&["validate", path_str(file)])
            .status(1)
            .stderr_has("error:")
            .run();
        assert!(
            !schema_accepts(file),
            "the schema accepts {}",
            file.display()
        );
    }
    for file in files("beyond") {
        Test::new()
            .args(&["validate", path_str(&file)])
            .status(1)
            .run();
        assert!(
            schema_accepts(&file),
            "the schema now refuses {}: move it to tests/schema/invalid/",
            file.display()
        );
    }
    for example in crate::support::examples() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(&example);
        Test::new().args(&["validate", path_str(&file)]).run();
        assert!(schema_accepts(&file), "the schema refuses {example}");
    }
}

/// A man page per command, with its options; mailsetup(1) says the exit
/// codes, the files and the other pages; `--out` writes them all.
#[test]
fn every_command_has_a_man_page_with_its_options() {
    let top = Test::new()
        .args(&["man"])
        .stdout_has(".SH \"EXIT STATUS\"")
        .stdout_has(".SH FILES")
        .stdout_has("/var/lib/mailsetup/")
        .stdout_has("mailsetup\\-rotate\\-start(1)")
        .run();
    assert!(top.stdout.contains(".TP\n3\n"), "{}", top.stdout);
    Test::new()
        .args(&["man", "plan"])
        .stdout_has(".TH mailsetup-plan 1")
        .stdout_has("\\fB\\-\\-root\\fR")
        .stdout_has("\\fB\\-\\-detailed\\-exitcode\\fR")
        .run();
    Test::new()
        .args(&["man", "rotate", "finish"])
        .stdout_has("\\fB\\-\\-force\\fR")
        .run();
    Test::new()
        .args(&["man", "nope"])
        .status(1)
        .stderr_has("`nope` is not a command of `mailsetup`")
        .run();
    let dir = tempfile::tempdir().unwrap();
    let wrote = Test::new()
        .args(&["man", "--out", path_str(dir.path())])
        .run();
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        wrote.stdout.trim(),
        format!(
            "wrote {} man pages into {}",
            pages.len(),
            path_str(dir.path())
        )
    );
    // One for each command `--help` lists, and for the nested ones.
    let help = Test::new().args(&["--help"]).run();
    let commands = help
        .stdout
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        // A command's line is indented by two; its description's wrapped lines more.
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help");
    for page in commands
        .map(|c| format!("mailsetup-{c}.1"))
        .chain(["mailsetup.1".into(), "mailsetup-rotate-auto.1".into()])
    {
        assert!(pages.contains(&page), "{page} not in {pages:?}");
    }
}
