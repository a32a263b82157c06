//! DKIM key rotation through every state, with `rotate activate` asking a real
//! DNS server on loopback that serves — or does not serve, or serves the wrong
//! key for — the staged selector. Days move with SOURCE_DATE_EPOCH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::dns_server::{DnsServer, Rec, published};
use crate::support::{Output, Test, assert_unchanged, path_str, root, snapshot};

/// A shared key for two domains; 1024-bit keys keep the test fast.
const SPEC: &str = "host:
  hostname: mail.example.com
domains:
  example.com:
  example.org:
dkim:
  bits: 1024
  rotation:
    interval_days: 30
    grace_days: 7
aliases:
  root: ops@example.net
";

struct Setup {
    root: tempfile::TempDir,
    spec: PathBuf,
}

impl Setup {
    fn new(spec: &str) -> Setup {
        let root = root();
        let spec_path = root.path().join("mailsetup.yaml");
        std::fs::write(&spec_path, spec).unwrap();
        Setup {
            root,
            spec: spec_path,
        }
    }
    fn spec(&self) -> &str {
        path_str(&self.spec)
    }
    fn root(&self) -> &str {
        path_str(self.root.path())
    }
    fn file(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }
    fn key_table(&self) -> String {
        self.read("etc/opendkim/KeyTable")
    }
    /// `mailsetup CMD SPEC --root ROOT` on `day`, to add arguments and checks to.
    fn on(&self, day: &str, cmd: &[&str]) -> Test {
        Test::new()
            .args(cmd)
            .args(&[self.spec(), "--root", self.root()])
            .day(day)
    }
    /// `mailsetup dns --format json` on `day`: the DKIM records as (name, value).
    fn dkim_records(&self, day: &str) -> Vec<(String, String)> {
        let json = self.on(day, &["dns"]).args(&["--format", "json"]).run();
        published(&json.stdout)
            .into_iter()
            .filter(|(kind, _, _)| kind == "dkim")
            .map(|(_, name, value)| (name, value))
            .collect()
    }
    /// `rotate status --format json`: (selector, state, field → date) per selector.
    fn status(&self, day: &str) -> Vec<serde_json::Value> {
        let out = self
            .on(day, &["rotate", "status"])
            .args(&["--format", "json"])
            .run();
        serde_json::from_str(&out.stdout).unwrap()
    }
    fn state_of(&self, day: &str, selector: &str) -> serde_json::Value {
        self.status(day)
            .into_iter()
            .find(|s| s["selector"] == selector)
            .unwrap_or_else(|| panic!("{selector} is not in the status"))
    }
    /// Applied on the tests' day, then on 2026-12-01 a key staged and made to
    /// sign with `rotate activate --force` (no DNS serves it): activate's output.
    fn force_activated(&self) -> Output {
        self.on("2026-11-24", &["apply"]).run();
        self.on("2026-12-01", &["rotate", "start"]).run();
        let server = DnsServer::start(&[]);
        self.on("2026-12-01", &["rotate", "activate"])
            .args(&["--resolver", &server.resolver(), "--force"])
            .run()
    }
}

fn private_keys(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".private"))
        .collect();
    names.sort();
    names
}

fn value_of<'a>(records: &'a [(String, String)], name: &str) -> &'a str {
    &records
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no record {name} in {records:?}"))
        .1
}

#[test]
fn rotation_goes_through_every_state_and_activates_only_what_dns_serves() {
    let s = Setup::new(SPEC);
    let keys = s.file("etc/opendkim/keys/shared");

    s.on("2026-11-24", &["apply"]).run();
    let old = "20261124";
    assert!(s.key_table().contains(&format!(":{old}:")));
    let before = s.status("2026-11-24");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["state"], "active");
    assert_eq!(before[0]["next"], "start");
    assert_eq!(before[0]["due"], "2026-12-24");

    // start: a new key under today's selector; signing does not change.
    let new = "20261201";
    s.on("2026-12-01", &["rotate", "start"])
        .stdout_has(format!("staged {new}"))
        .stdout_has(format!("{new}._domainkey.example.com.\tIN\tTXT"))
        .stdout_has(format!("{new}._domainkey.example.org.\tIN\tTXT"))
        .stdout_lacks("PRIVATE KEY")
        .run();
    assert_eq!(
        private_keys(&keys),
        [format!("{old}.private"), format!("{new}.private")]
    );
    let mode = std::fs::metadata(keys.join(format!("{new}.private")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let table = s.key_table();
    assert!(table.contains(&format!(":{old}:")), "{table}");
    // apply and a second start change nothing: the staged key does not sign.
    s.on("2026-12-01", &["apply"])
        .stdout_has("No changes.")
        .run();
    s.on("2026-12-01", &["rotate", "start"])
        .stdout_has("already staged")
        .run();
    assert_eq!(private_keys(&keys).len(), 2);

    // dns lists both selectors for both domains, the staged one with a note.
    s.on("2026-12-01", &["dns"])
        .args(&["--format", "json"])
        .stdout_has("staged on 2026-12-01")
        .run();
    // Both domains and the mailname (system mail signs as itself).
    let dkim = s.dkim_records("2026-12-01");
    assert_eq!(dkim.len(), 6, "{dkim:?}");
    let old_value = value_of(&dkim, &format!("{old}._domainkey.example.com")).to_string();
    let new_value = value_of(&dkim, &format!("{new}._domainkey.example.com")).to_string();
    assert_ne!(old_value, new_value);

    // activate refuses while DNS does not serve the staged key exactly.
    let state_file = "var/lib/mailsetup/keys/shared/rotation.json";
    let saved = s.read(state_file);
    let refused = |records: Vec<Rec>, why: &str| {
        let server = DnsServer::start(&records);
        s.on("2026-12-02", &["rotate", "activate"])
            .args(&["--resolver", &server.resolver()])
            .status(1)
            .stderr_has(why)
            .run();
        assert_eq!(s.read(state_file), saved, "activate changed the state");
        assert_eq!(s.key_table(), table, "activate changed the KeyTable");
    };
    let at = |domain: &str| format!("{new}._domainkey.{domain}");
    refused(
        Vec::new(),
        &format!("{new}._domainkey.example.com: not published"),
    );
    refused(
        vec![
            Rec::txt(&at("example.com"), &old_value),
            Rec::txt(&at("example.org"), &old_value),
        ],
        "serves a different key than the staged one",
    );
    refused(
        vec![Rec::txt(&at("example.com"), &new_value)],
        &format!("{new}._domainkey.example.org: not published"),
    );
    refused(
        vec![
            Rec::txt(&at("example.com"), &new_value),
            Rec::txt(&at("example.org"), "v=DKIM1; p="),
        ],
        "published as revoked",
    );

    // Served for both domains: signing switches, the old key starts retiring —
    // but only once every resolver asked serves it, not the first one alone.
    let served = [
        Rec::txt(&at("example.com"), &new_value),
        Rec::txt(&at("example.org"), &new_value),
        Rec::txt(&at("mail.example.com"), &new_value),
    ];
    let (server, lagging) = (DnsServer::start(&served), DnsServer::start(&served[..1]));
    let resolver = server.resolver();
    let activate = || {
        s.on("2026-12-02", &["rotate", "activate"])
            .args(&["--resolver", &resolver])
    };
    activate()
        .args(&["--resolver", &lagging.resolver()])
        .status(1)
        .stderr_has(format!("{new}._domainkey.example.org: not published"))
        .run();
    assert_eq!(s.read(state_file), saved, "activate changed the state");
    activate()
        .stdout_has(format!("{new} signs from now on"))
        .stdout_has("wrote /etc/opendkim/KeyTable")
        .run();
    let table = s.key_table();
    assert!(
        table.contains(&format!(":{new}:")) && !table.contains(old),
        "{table}"
    );
    let active = s.state_of("2026-12-02", new);
    assert_eq!(active["state"], "active");
    assert_eq!(active["activated"], "2026-12-02");
    let retiring = s.state_of("2026-12-02", old);
    assert_eq!(retiring["state"], "retiring");
    assert_eq!(retiring["retired"], "2026-12-02");
    assert_eq!(retiring["due"], "2026-12-09");
    // Idempotent: nothing is staged any more.
    activate().stdout_has("nothing staged").run();

    // finish waits for the grace period.
    s.on("2026-12-08", &["rotate", "finish"])
        .status(1)
        .stderr_has("until 2026-12-09")
        .run();
    assert!(keys.join(format!("{old}.private")).exists());

    s.on("2026-12-09", &["rotate", "finish"])
        .stdout_has(format!("revoked {old}"))
        .stdout_lacks("PRIVATE KEY")
        .run();
    assert_eq!(private_keys(&keys), [format!("{new}.private")]);
    let archive = s.file("var/lib/mailsetup/keys/shared/archive");
    assert_eq!(private_keys(&archive), [format!("{old}.private")]);
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(s.state_of("2026-12-09", old)["revoked"], "2026-12-09");

    // dns now publishes the revocation in place of the old key.
    s.on("2026-12-09", &["dns"])
        .stdout_has(format!(
            "{old}._domainkey.example.com.\tIN\tTXT\t\"v=DKIM1; p=\""
        ))
        .stdout_has(format!(
            "{old}._domainkey.example.org.\tIN\tTXT\t\"v=DKIM1; p=\""
        ))
        .run();
    let dkim = s.dkim_records("2026-12-09");
    assert_eq!(value_of(&dkim, &at("example.org")), new_value);

    // Nothing left to do, and the host matches the spec.
    s.on("2026-12-09", &["rotate", "finish"])
        .stdout_has("Nothing to finish")
        .run();
    s.on("2026-12-09", &["plan"])
        .args(&["--detailed-exitcode"])
        .run();
}

#[test]
fn force_activates_and_finishes_without_waiting() {
    let s = Setup::new(SPEC);
    let out = s.force_activated();
    assert!(out.stdout.contains("warning: --force"), "{}", out.stdout);
    assert!(s.key_table().contains(":20261201:"));
    s.on("2026-12-01", &["rotate", "finish"])
        .args(&["--force"])
        .run();
    assert_eq!(s.state_of("2026-12-01", "20261124")["state"], "revoked");
}

#[test]
fn auto_does_only_the_step_that_is_due() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    let auto = |day: &str, resolver: &str| {
        s.on(day, &["rotate", "auto"])
            .args(&["--resolver", resolver])
    };
    let nothing = DnsServer::start(&[]);
    // Before the interval (30 days) nothing happens, silently.
    assert_eq!(auto("2026-12-10", &nothing.resolver()).run().stdout, "");
    assert!(
        !s.file("var/lib/mailsetup/keys/shared/rotation.json")
            .exists()
    );
    // The interval is over: a key is staged.
    auto("2026-12-24", &nothing.resolver())
        .stdout_has("staged 20261224")
        .run();
    // Not served yet: it waits and says what is missing.
    auto("2026-12-25", &nothing.resolver())
        .stdout_has("waiting to activate 20261224")
        .run();
    assert!(s.key_table().contains(":20261124:"));
    // Served: it activates.
    let value = value_of(
        &s.dkim_records("2026-12-26"),
        "20261224._domainkey.example.com",
    )
    .to_string();
    let served = DnsServer::start(&[
        Rec::txt("20261224._domainkey.example.com", &value),
        Rec::txt("20261224._domainkey.example.org", &value),
        Rec::txt("20261224._domainkey.mail.example.com", &value),
    ]);
    auto("2026-12-26", &served.resolver())
        .stdout_has("DNS serves 20261224")
        .run();
    assert!(s.key_table().contains(":20261224:"));
    // During the grace period: silent. After it: the old key is revoked.
    assert_eq!(auto("2027-01-01", &served.resolver()).run().stdout, "");
    auto("2027-01-02", &served.resolver())
        .stdout_has("revoked 20261124")
        .run();
    assert_eq!(auto("2027-01-03", &served.resolver()).run().stdout, "");
}

#[test]
fn a_second_key_on_the_same_day_gets_a_suffix() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    s.on("2026-11-24", &["rotate", "start"])
        .stdout_has("staged 20261124-2")
        .run();
}

#[test]
fn rotation_needs_a_dated_selector_and_an_existing_key() {
    let s = Setup::new(&SPEC.replace("  bits: 1024\n", "  bits: 1024\n  selector: mail\n"));
    let out = s
        .on("2026-11-24", &["rotate", "start"])
        .status(1)
        .stderr_has(format!(
            "run `mailsetup apply {} --root {}` first",
            s.spec(),
            s.root()
        ))
        .run();
    crate::support::hinted(&out.stderr, "apply").run();
    s.on("2026-11-24", &["rotate", "start"])
        .status(1)
        .stderr_has("mail-{date}")
        .run();
}

#[test]
fn finish_refuses_while_opendkim_still_signs_with_the_key() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    let old_table = s.key_table();
    s.force_activated();
    // The KeyTable of the old key put back by hand: the state says retiring.
    std::fs::write(s.file("etc/opendkim/KeyTable"), &old_table).unwrap();
    s.on("2026-12-20", &["rotate", "finish"])
        .args(&["--force"])
        .status(1)
        .stderr_has("still signs with 20261124")
        .run();
    assert!(s.file("etc/opendkim/keys/shared/20261124.private").exists());
}

#[test]
fn a_tampered_rotation_state_is_refused() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    // Where mailsetup keeps it now, and where it kept it before (the key
    // directory, which opendkim could write).
    for dir in ["var/lib/mailsetup/keys/shared", "etc/opendkim/keys/shared"] {
        std::fs::create_dir_all(s.file(dir)).unwrap();
        let file = s.file(&format!("{dir}/rotation.json"));
        std::fs::write(
            &file,
            r#"{"selectors": [{"selector": "../../../etc/passwd", "state": "active", "created": null}]}"#,
        )
        .unwrap();
        s.on("2026-11-24", &["plan"])
            .status(1)
            .stderr_has("inconsistent")
            .run();
        std::fs::remove_file(file).unwrap();
    }
}

#[test]
fn each_step_is_a_plan_that_dry_run_shows_and_rollback_undoes() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    let state_file = "var/lib/mailsetup/keys/shared/rotation.json";
    let keys = s.file("etc/opendkim/keys/shared");

    // --dry-run shows the new key and the state, and changes nothing.
    let before = snapshot(s.root.path());
    s.on("2026-12-01", &["rotate", "start"])
        .args(&["--dry-run"])
        .stdout_has("+ generate DKIM key shared/20261201")
        .stdout_has("+ create /var/lib/mailsetup/keys/shared/rotation.json (0644 root:root)")
        .stdout_has("Dry run: nothing was changed.")
        .stdout_lacks("Publish:")
        .run();
    assert_unchanged(
        &before,
        &snapshot(s.root.path()),
        "rotate start --dry-run wrote",
    );

    // Activation switches the state and the KeyTable in one apply; a rollback
    // puts both back, and opendkim signs with the old key again.
    s.force_activated();
    assert!(s.read(state_file).contains("\"active\""));
    Test::new()
        .args(&["rollback", "--root", s.root()])
        .day("2026-12-01")
        .stdout_has("restored /etc/opendkim/KeyTable")
        .stdout_has(format!("restored /{state_file}"))
        .run();
    assert!(s.key_table().contains(":20261124:"));
    assert_eq!(s.state_of("2026-12-01", "20261201")["state"], "staged");
    assert_eq!(s.state_of("2026-12-01", "20261124")["state"], "active");

    // finish --dry-run names the archive move; finish moves the key, and a
    // rollback moves it back with the state.
    let server = DnsServer::start(&[]);
    s.on("2026-12-01", &["rotate", "activate"])
        .args(&["--resolver", &server.resolver(), "--force"])
        .run();
    let activated = s.read(state_file);
    s.on("2026-12-20", &["rotate", "finish"])
        .args(&["--dry-run"])
        .stdout_has("- archive DKIM key shared/20261124")
        .run();
    assert!(keys.join("20261124.private").exists());
    s.on("2026-12-20", &["rotate", "finish"])
        .stdout_has("revoked 20261124")
        .run();
    assert!(!keys.join("20261124.private").exists());
    let archive = s.file("var/lib/mailsetup/keys/shared/archive");
    assert!(archive.join("20261124.private").exists());
    assert!(!keys.join("archive").exists());
    Test::new()
        .args(&["rollback", "--root", s.root()])
        .day("2026-12-20")
        .stdout_has("moved back /etc/opendkim/keys/shared/20261124.private")
        .run();
    assert!(keys.join("20261124.private").exists());
    assert!(!archive.join("20261124.private").exists());
    assert_eq!(s.state_of("2026-12-20", "20261124")["state"], "retiring");
    assert_eq!(s.read(state_file), activated);
}

#[test]
fn a_rolled_back_first_start_leaves_the_old_key_signing() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    // The first start saves where the rotation begins in an apply of its own.
    s.on("2026-12-01", &["rotate", "start"])
        .stdout_has("its state is saved first")
        .stdout_has("staged 20261201")
        .run();
    Test::new()
        .args(&["rollback", "--root", s.root()])
        .day("2026-12-01")
        .run();
    // The staged key's file stays, but the state, not the newest key file,
    // says which key signs: the old one, and apply changes nothing.
    assert!(s.file("etc/opendkim/keys/shared/20261201.private").exists());
    assert_eq!(s.state_of("2026-12-01", "20261124")["state"], "active");
    assert_eq!(s.status("2026-12-01").len(), 1);
    s.on("2026-12-01", &["apply"])
        .stdout_has("No changes.")
        .run();
    assert!(s.key_table().contains(":20261124:"));
    // The next start stages under a fresh selector.
    s.on("2026-12-01", &["rotate", "start"])
        .stdout_has("staged 20261201-2")
        .run();
}

/// A host laid out as mailsetup 0.1 left it: the rotation state and the
/// archive in the key directory, which opendkim owns. The next apply moves
/// both to the state directory (root's alone), shown in the plan first; the
/// rotation goes on from there.
#[test]
fn state_kept_in_the_key_directory_is_moved_by_the_next_apply() {
    let s = Setup::new(SPEC);
    s.force_activated();
    s.on("2026-12-20", &["rotate", "finish"]).run();
    // Lay it out the old way.
    let (old, new) = (
        s.file("etc/opendkim/keys/shared"),
        s.file("var/lib/mailsetup/keys/shared"),
    );
    let state = std::fs::read(new.join("rotation.json")).unwrap();
    std::fs::rename(new.join("rotation.json"), old.join("rotation.json")).unwrap();
    std::fs::rename(new.join("archive"), old.join("archive")).unwrap();
    let status = s.status("2026-12-20");

    // What is read before the move is the same; the plan moves it first.
    assert_eq!(s.status("2026-12-20"), status);
    s.on("2026-12-20", &["plan"])
        .stdout_has("~ move the state of key set shared")
        .run();
    s.on("2026-12-20", &["apply"])
        .stdout_has("moved the state of key set shared")
        .run();
    assert_eq!(std::fs::read(new.join("rotation.json")).unwrap(), state);
    assert_eq!(private_keys(&new.join("archive")), ["20261124.private"]);
    assert!(!old.join("rotation.json").exists());
    assert!(!old.join("archive").exists());
    assert_eq!(s.status("2026-12-20"), status);
    s.on("2026-12-20", &["plan"]).stdout_has("No changes").run();
}

/// rotate moves an old layout first too (cron may run before any apply), and
/// a symlinked archive in the key directory is refused before anything is
/// written, naming it.
#[test]
fn rotate_moves_an_old_layout_and_refuses_a_symlinked_archive() {
    let s = Setup::new(SPEC);
    s.on("2026-11-24", &["apply"]).run();
    s.on("2026-12-01", &["rotate", "start"]).run();
    let (old, new) = (
        s.file("etc/opendkim/keys/shared"),
        s.file("var/lib/mailsetup/keys/shared"),
    );
    std::fs::rename(new.join("rotation.json"), old.join("rotation.json")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), old.join("archive")).unwrap();
    let before = snapshot(s.root.path());
    s.on("2026-12-02", &["rotate", "activate"])
        .args(&["--force"])
        .status(1)
        .stderr_has("archive is a symlink")
        .run();
    assert_unchanged(
        &before,
        &snapshot(s.root.path()),
        "a refused rotation wrote",
    );
    std::fs::remove_file(old.join("archive")).unwrap();
    s.on("2026-12-02", &["rotate", "activate"])
        .args(&["--force"])
        .stdout_has("moved the state of key set shared")
        .stdout_has("20261201 signs from now on")
        .run();
    assert!(!old.join("rotation.json").exists());
    assert_eq!(s.state_of("2026-12-02", "20261201")["state"], "active");
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none()
    );
}

/// Every command rotate, rollback and check suggest names the spec and the
/// flags of the run (`--root`, `--resolver`), and works as printed.
#[test]
fn every_suggested_command_works_as_printed() {
    use crate::support::hinted;
    let s = Setup::new(SPEC);
    // Before any key: status says what makes it.
    let out = s.on("2026-11-24", &["rotate", "status"]).run();
    assert!(out.stdout.contains("active (no key yet)"), "{}", out.stdout);
    hinted(&out.stdout, "apply").run();
    let out = s.on("2026-11-24", &["rotate", "status"]).run();
    hinted(&out.stdout, "rotate start").day("2026-12-01").run();
    // start → activate: refused (DNS does not serve the key), for that reason.
    let out = s.on("2026-12-02", &["rotate", "start"]).run();
    let nothing = DnsServer::start(&[]);
    let refused = hinted(&out.stdout, "rotate activate")
        .args(&["--resolver", &nothing.resolver()])
        .day("2026-12-02")
        .status(1)
        .stderr_has("DNS does not serve the staged key yet")
        .run();
    // Its own hints: the records, and activate again with the same resolver.
    hinted(&refused.stderr, "dns").run();
    hinted(&refused.stderr, "rotate activate")
        .day("2026-12-02")
        .status(1)
        .stderr_has(nothing.resolver())
        .run();
    // check names dns with the root, and activate with its resolver.
    let checked = s
        .on("2026-12-02", &["check"])
        .args(&["--resolver", &nothing.resolver()])
        .status(3)
        .run();
    hinted(&checked.stdout, "dns").run();
    hinted(&checked.stdout, "rotate activate")
        .day("2026-12-02")
        .status(1)
        .stderr_has("DNS does not serve the staged key yet")
        .run();
    // rollback names the spec the apply was made from.
    s.on("2026-12-02", &["apply"]).run();
    let spec = std::fs::read_to_string(&s.spec).unwrap() + "  abuse: root\n";
    std::fs::write(&s.spec, spec).unwrap();
    s.on("2026-12-02", &["apply"]).run();
    let back = Test::new().args(&["rollback", "--root", s.root()]).run();
    hinted(&back.stdout, "plan")
        .args(&["--detailed-exitcode"])
        .status(2)
        .stdout_has("abuse: root")
        .run();
}
