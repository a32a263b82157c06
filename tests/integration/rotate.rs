//! DKIM key rotation through every state, with `rotate activate` asking a real
//! DNS server on loopback that serves — or does not serve, or serves the wrong
//! key for — the staged selector. Days move with SOURCE_DATE_EPOCH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::dns_server::{DnsServer, Rec, published};
use crate::support::{path_str, root, run_on};

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
    /// `mailsetup dns --format json` on `day`: the DKIM records as (name, value).
    fn dkim_records(&self, day: &str) -> Vec<(String, String)> {
        let json = run_on(
            day,
            &[
                "dns",
                self.spec(),
                "--root",
                self.root(),
                "--format",
                "json",
            ],
            0,
        );
        published(&json.stdout)
            .into_iter()
            .filter(|(kind, _, _)| kind == "dkim")
            .map(|(_, name, value)| (name, value))
            .collect()
    }
    /// `rotate status --format json`: (selector, state, field → date) per selector.
    fn status(&self, day: &str) -> Vec<serde_json::Value> {
        let out = run_on(
            day,
            &[
                "rotate",
                "status",
                self.spec(),
                "--root",
                self.root(),
                "--format",
                "json",
            ],
            0,
        );
        serde_json::from_str(&out.stdout).unwrap()
    }
    fn state_of(&self, day: &str, selector: &str) -> serde_json::Value {
        self.status(day)
            .into_iter()
            .find(|s| s["selector"] == selector)
            .unwrap_or_else(|| panic!("{selector} is not in the status"))
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
    let (spec, r) = (s.spec(), s.root());
    let keys = s.file("etc/opendkim/keys/shared");

    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    let old = "20261124";
    assert!(s.key_table().contains(&format!(":{old}:")));
    let before = s.status("2026-11-24");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["state"], "active");
    assert_eq!(before[0]["next"], "start");
    assert_eq!(before[0]["due"], "2026-12-24");

    // start: a new key under today's selector; signing does not change.
    let new = "20261201";
    let out = run_on("2026-12-01", &["rotate", "start", spec, "--root", r], 0);
    assert!(
        out.stdout.contains(&format!("staged {new}")),
        "{}",
        out.stdout
    );
    for domain in ["example.com", "example.org"] {
        assert!(
            out.stdout
                .contains(&format!("{new}._domainkey.{domain}.\tIN\tTXT"))
        );
    }
    assert!(!out.stdout.contains("PRIVATE KEY"));
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
    let out = run_on("2026-12-01", &["apply", spec, "--root", r], 0);
    assert!(out.stdout.contains("No changes."), "{}", out.stdout);
    let out = run_on("2026-12-01", &["rotate", "start", spec, "--root", r], 0);
    assert!(out.stdout.contains("already staged"), "{}", out.stdout);
    assert_eq!(private_keys(&keys).len(), 2);

    // dns lists both selectors for both domains, the staged one with a note.
    let json = run_on(
        "2026-12-01",
        &["dns", spec, "--root", r, "--format", "json"],
        0,
    );
    assert!(
        json.stdout.contains("staged on 2026-12-01"),
        "{}",
        json.stdout
    );
    let dkim = s.dkim_records("2026-12-01");
    assert_eq!(dkim.len(), 4, "{dkim:?}");
    let old_value = value_of(&dkim, &format!("{old}._domainkey.example.com")).to_string();
    let new_value = value_of(&dkim, &format!("{new}._domainkey.example.com")).to_string();
    assert_ne!(old_value, new_value);

    // activate refuses while DNS does not serve the staged key exactly.
    let state_file = "etc/opendkim/keys/shared/rotation.json";
    let saved = s.read(state_file);
    let refused = |records: Vec<Rec>, why: &str| {
        let server = DnsServer::start(&records);
        let out = run_on(
            "2026-12-02",
            &[
                "rotate",
                "activate",
                spec,
                "--root",
                r,
                "--resolver",
                &server.resolver(),
            ],
            1,
        );
        assert!(out.stderr.contains(why), "{why}: {}", out.stderr);
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
    ];
    let (server, lagging) = (DnsServer::start(&served), DnsServer::start(&served[..1]));
    let resolver = server.resolver();
    let lagging_resolver = lagging.resolver();
    let both = [
        "rotate",
        "activate",
        spec,
        "--root",
        r,
        "--resolver",
        &resolver,
        "--resolver",
        &lagging_resolver,
    ];
    let out = run_on("2026-12-02", &both, 1);
    assert!(
        out.stderr
            .contains(&format!("{new}._domainkey.example.org: not published")),
        "{}",
        out.stderr
    );
    assert_eq!(s.read(state_file), saved, "activate changed the state");
    let activate = [
        "rotate",
        "activate",
        spec,
        "--root",
        r,
        "--resolver",
        &resolver,
    ];
    let out = run_on("2026-12-02", &activate, 0);
    assert!(
        out.stdout.contains(&format!("{new} signs from now on")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("wrote /etc/opendkim/KeyTable"),
        "{}",
        out.stdout
    );
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
    let out = run_on("2026-12-02", &activate, 0);
    assert!(out.stdout.contains("nothing staged"), "{}", out.stdout);

    // finish waits for the grace period.
    let out = run_on("2026-12-08", &["rotate", "finish", spec, "--root", r], 1);
    assert!(out.stderr.contains("until 2026-12-09"), "{}", out.stderr);
    assert!(keys.join(format!("{old}.private")).exists());

    let out = run_on("2026-12-09", &["rotate", "finish", spec, "--root", r], 0);
    assert!(
        out.stdout.contains(&format!("revoked {old}")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("PRIVATE KEY"));
    assert_eq!(private_keys(&keys), [format!("{new}.private")]);
    let archive = keys.join("archive");
    assert_eq!(private_keys(&archive), [format!("{old}.private")]);
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(s.state_of("2026-12-09", old)["revoked"], "2026-12-09");

    // dns now publishes the revocation in place of the old key.
    let zone = run_on("2026-12-09", &["dns", spec, "--root", r], 0).stdout;
    for domain in ["example.com", "example.org"] {
        assert!(
            zone.contains(&format!(
                "{old}._domainkey.{domain}.\tIN\tTXT\t\"v=DKIM1; p=\""
            )),
            "{zone}"
        );
    }
    let dkim = s.dkim_records("2026-12-09");
    assert_eq!(value_of(&dkim, &at("example.org")), new_value);

    // Nothing left to do, and the host matches the spec.
    let out = run_on("2026-12-09", &["rotate", "finish", spec, "--root", r], 0);
    assert!(out.stdout.contains("Nothing to finish"), "{}", out.stdout);
    run_on(
        "2026-12-09",
        &["plan", spec, "--root", r, "--detailed-exitcode"],
        0,
    );
}

#[test]
fn force_activates_and_finishes_without_waiting() {
    let s = Setup::new(SPEC);
    let (spec, r) = (s.spec(), s.root());
    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    run_on("2026-12-01", &["rotate", "start", spec, "--root", r], 0);
    let server = DnsServer::start(&[]);
    let out = run_on(
        "2026-12-01",
        &[
            "rotate",
            "activate",
            spec,
            "--root",
            r,
            "--resolver",
            &server.resolver(),
            "--force",
        ],
        0,
    );
    assert!(out.stdout.contains("warning: --force"), "{}", out.stdout);
    assert!(s.key_table().contains(":20261201:"));
    run_on(
        "2026-12-01",
        &["rotate", "finish", spec, "--root", r, "--force"],
        0,
    );
    assert_eq!(s.state_of("2026-12-01", "20261124")["state"], "revoked");
}

#[test]
fn auto_does_only_the_step_that_is_due() {
    let s = Setup::new(SPEC);
    let (spec, r) = (s.spec(), s.root());
    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    let auto = |day: &str, resolver: &str| {
        run_on(
            day,
            &["rotate", "auto", spec, "--root", r, "--resolver", resolver],
            0,
        )
        .stdout
    };
    let nothing = DnsServer::start(&[]);
    // Before the interval (30 days) nothing happens, silently.
    assert_eq!(auto("2026-12-10", &nothing.resolver()), "");
    assert!(!s.file("etc/opendkim/keys/shared/rotation.json").exists());
    // The interval is over: a key is staged.
    let out = auto("2026-12-24", &nothing.resolver());
    assert!(out.contains("staged 20261224"), "{out}");
    // Not served yet: it waits and says what is missing.
    let out = auto("2026-12-25", &nothing.resolver());
    assert!(out.contains("waiting to activate 20261224"), "{out}");
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
    ]);
    let out = auto("2026-12-26", &served.resolver());
    assert!(out.contains("DNS serves 20261224"), "{out}");
    assert!(s.key_table().contains(":20261224:"));
    // During the grace period: silent. After it: the old key is revoked.
    assert_eq!(auto("2027-01-01", &served.resolver()), "");
    let out = auto("2027-01-02", &served.resolver());
    assert!(out.contains("revoked 20261124"), "{out}");
    assert_eq!(auto("2027-01-03", &served.resolver()), "");
}

#[test]
fn a_second_key_on_the_same_day_gets_a_suffix() {
    let s = Setup::new(SPEC);
    let (spec, r) = (s.spec(), s.root());
    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    let out = run_on("2026-11-24", &["rotate", "start", spec, "--root", r], 0);
    assert!(out.stdout.contains("staged 20261124-2"), "{}", out.stdout);
}

#[test]
fn rotation_needs_a_dated_selector_and_an_existing_key() {
    let s = Setup::new(&SPEC.replace("  bits: 1024\n", "  bits: 1024\n  selector: mail\n"));
    let (spec, r) = (s.spec(), s.root());
    let out = run_on("2026-11-24", &["rotate", "start", spec, "--root", r], 1);
    assert!(
        out.stderr.contains("run mailsetup apply first"),
        "{}",
        out.stderr
    );
    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    let out = run_on("2026-11-24", &["rotate", "start", spec, "--root", r], 1);
    assert!(out.stderr.contains("mail-{date}"), "{}", out.stderr);
}

#[test]
fn finish_refuses_while_opendkim_still_signs_with_the_key() {
    let s = Setup::new(SPEC);
    let (spec, r) = (s.spec(), s.root());
    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    run_on("2026-12-01", &["rotate", "start", spec, "--root", r], 0);
    let server = DnsServer::start(&[]);
    run_on(
        "2026-12-01",
        &[
            "rotate",
            "activate",
            spec,
            "--root",
            r,
            "--resolver",
            &server.resolver(),
            "--force",
        ],
        0,
    );
    // A rollback puts the KeyTable of the old key back.
    run_on("2026-12-01", &["rollback", "--root", r], 0);
    assert!(s.key_table().contains(":20261124:"));
    let out = run_on(
        "2026-12-20",
        &["rotate", "finish", spec, "--root", r, "--force"],
        1,
    );
    assert!(
        out.stderr.contains("still signs with 20261124"),
        "{}",
        out.stderr
    );
    assert!(s.file("etc/opendkim/keys/shared/20261124.private").exists());
}

#[test]
fn a_tampered_rotation_state_is_refused() {
    let s = Setup::new(SPEC);
    let (spec, r) = (s.spec(), s.root());
    run_on("2026-11-24", &["apply", spec, "--root", r], 0);
    std::fs::write(
        s.file("etc/opendkim/keys/shared/rotation.json"),
        r#"{"selectors": [{"selector": "../../../etc/passwd", "state": "active", "created": null}]}"#,
    )
    .unwrap();
    let out = run_on("2026-11-24", &["plan", spec, "--root", r], 1);
    assert!(out.stderr.contains("inconsistent"), "{}", out.stderr);
}
