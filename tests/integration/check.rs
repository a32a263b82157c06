//! `mailsetup check` against a real DNS server on loopback: the records
//! `mailsetup dns` prints pass; each deliberately wrong one gets its status.

use crate::dns_server::{DnsServer, Rec, published};
use crate::support::{Test, path_str, root};

const SPEC: &str = "host:
  hostname: mail.example.com
domains:
  example.com:
dmarc:
  p: reject
  rua: [dmarc@reports.example.net]
dkim:
  bits: 1024
check:
  addresses: [192.0.2.10]
  blocklists: [bl.example.net]
aliases:
  root: ops@example.net
";

/// An applied host and the zone that publishes exactly what `mailsetup dns` says.
struct Host {
    root: tempfile::TempDir,
    spec: String,
    zone: Vec<Rec>,
}

impl Host {
    fn new() -> Host {
        let root = root();
        let spec = root.path().join("mailsetup.yaml");
        std::fs::write(&spec, SPEC).unwrap();
        let spec = path_str(&spec).to_string();
        let r = path_str(root.path());
        Test::new().args(&["apply", &spec, "--root", r]).run();
        let json = Test::new()
            .args(&["dns", &spec, "--root", r, "--format", "json"])
            .run()
            .stdout;
        let mut zone: Vec<Rec> = published(&json)
            .into_iter()
            .map(|(_, name, value)| Rec::txt(&name, &value))
            .collect();
        zone.extend([
            Rec::addr("example.com", "192.0.2.10"),
            Rec::addr("mail.example.com", "192.0.2.10"),
            Rec::ptr("192.0.2.10", "mail.example.com"),
        ]);
        Host { root, spec, zone }
    }

    /// The zone with every record at `name` replaced by `records`.
    fn with(&self, name: &str, records: &[Rec]) -> Vec<Rec> {
        let mut zone: Vec<Rec> = self
            .zone
            .iter()
            .filter(|r| match r {
                Rec::Txt(n, _) | Rec::Addr(n, _) => n != name,
                Rec::Ptr(..) => true,
            })
            .cloned()
            .collect();
        zone.extend_from_slice(records);
        zone
    }

    /// `check --format json` against `zone`: the findings and the exit status.
    fn check(&self, zone: &[Rec], expect: i32) -> Vec<(String, String, String, String)> {
        let server = DnsServer::start(zone);
        let out = Test::new()
            .args(&[
                "check",
                &self.spec,
                "--root",
                path_str(self.root.path()),
                "--resolver",
                &server.resolver(),
                "--format",
                "json",
            ])
            .status(expect)
            .run();
        let findings: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        findings
            .iter()
            .map(|f| {
                let field = |k: &str| f[k].as_str().unwrap().to_string();
                (
                    field("check"),
                    field("target"),
                    field("status"),
                    field("detail"),
                )
            })
            .collect()
    }
}

/// The status and detail of the one finding of `check` on `target`.
fn find(
    findings: &[(String, String, String, String)],
    check: &str,
    target: &str,
) -> (String, String) {
    let found: Vec<_> = findings
        .iter()
        .filter(|f| f.0 == check && f.1 == target)
        .collect();
    assert_eq!(found.len(), 1, "{check} {target} in {findings:#?}");
    (found[0].2.clone(), found[0].3.clone())
}

#[test]
fn the_published_records_pass_every_check() {
    let host = Host::new();
    let findings = host.check(&host.zone, 0);
    let dkim = findings
        .iter()
        .find(|f| f.0 == "dkim")
        .expect("a dkim finding");
    for (check, target, status, detail) in &findings {
        let expected = if check == "daemon" || check == "milter-socket" {
            "skip"
        } else {
            "pass"
        };
        assert_eq!(status, expected, "{check} {target}: {detail}");
    }
    let kinds: Vec<&str> = findings.iter().map(|f| f.0.as_str()).collect();
    for kind in [
        "spf",
        "spf-host",
        "dkim",
        "dmarc",
        "dmarc-report-auth",
        "fcrdns",
        "blocklist",
        "daemon",
        "milter-socket",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(dkim.1.ends_with("._domainkey.example.com"), "{dkim:?}");
}

#[test]
fn a_missing_spf_record_fails() {
    let host = Host::new();
    let findings = host.check(
        &host.with("example.com", &[Rec::addr("example.com", "192.0.2.10")]),
        3,
    );
    let (status, detail) = find(&findings, "spf", "example.com");
    assert_eq!(status, "fail");
    assert!(detail.contains("no SPF record"), "{detail}");
    let (status, _) = find(&findings, "spf-host", "example.com from 192.0.2.10");
    assert_eq!(status, "fail");
}

#[test]
fn two_spf_records_fail() {
    let host = Host::new();
    let zone = host.with(
        "example.com",
        &[
            Rec::addr("example.com", "192.0.2.10"),
            Rec::txt("example.com", "v=spf1 a -all"),
            Rec::txt("example.com", "v=spf1 mx -all"),
        ],
    );
    let findings = host.check(&zone, 3);
    let (status, detail) = find(&findings, "spf", "example.com");
    assert_eq!(status, "fail");
    assert!(detail.contains("2 SPF records"), "{detail}");
}

#[test]
fn spf_that_does_not_cover_this_host_fails_and_a_drift_warns() {
    let host = Host::new();
    let zone = host.with(
        "example.com",
        &[
            Rec::addr("example.com", "192.0.2.10"),
            Rec::txt("example.com", "v=spf1 ip4:198.51.100.0/24 -all"),
        ],
    );
    let findings = host.check(&zone, 3);
    let (status, detail) = find(&findings, "spf", "example.com");
    assert_eq!(status, "warn");
    assert!(
        detail.contains("differs from the spec's `v=spf1 a -all`"),
        "{detail}"
    );
    let (status, detail) = find(&findings, "spf-host", "example.com from 192.0.2.10");
    assert_eq!(status, "fail");
    assert!(detail.starts_with("fail"), "{detail}");
}

#[test]
fn a_dkim_key_that_differs_from_the_one_on_disk_fails() {
    let host = Host::new();
    let other = mailsetup::keys::DkimKey::generate(1024).unwrap().public();
    let name = format!("{}._domainkey.example.com", crate::support::DATE);
    let findings = host.check(&host.with(&name, &[Rec::txt(&name, &other.dns_value())]), 3);
    let (status, detail) = find(&findings, "dkim", &name);
    assert_eq!(status, "fail");
    assert!(detail.contains("different key"), "{detail}");
    // Not published at all: also a failure for the key that signs.
    let findings = host.check(&host.with(&name, &[]), 3);
    let (status, detail) = find(&findings, "dkim", &name);
    assert_eq!(status, "fail");
    assert!(detail.contains("not published"), "{detail}");
}

#[test]
fn bad_dmarc_syntax_fails() {
    let host = Host::new();
    let name = "_dmarc.example.com";
    let findings = host.check(
        &host.with(name, &[Rec::txt(name, "v=DMARC1; p=rejected")]),
        3,
    );
    let (status, detail) = find(&findings, "dmarc", name);
    assert_eq!(status, "fail");
    assert!(detail.contains("not a policy"), "{detail}");
}

#[test]
fn missing_report_authorization_warns() {
    let host = Host::new();
    let name = "example.com._report._dmarc.reports.example.net";
    let findings = host.check(&host.with(name, &[]), 0);
    let (status, detail) = find(&findings, "dmarc-report-auth", name);
    assert_eq!(status, "warn");
    assert!(detail.contains("has not authorized"), "{detail}");
}

#[test]
fn reverse_dns_that_does_not_confirm_fails() {
    let host = Host::new();
    let mut zone: Vec<Rec> = host
        .zone
        .iter()
        .filter(|r| !matches!(r, Rec::Ptr(..)))
        .cloned()
        .collect();
    zone.push(Rec::ptr("192.0.2.10", "unrelated.example.net"));
    let findings = host.check(&zone, 3);
    let (status, detail) = find(&findings, "fcrdns", "192.0.2.10");
    assert_eq!(status, "fail");
    assert!(detail.contains("does not resolve back"), "{detail}");
}

#[test]
fn a_listed_address_fails_and_the_text_report_says_so() {
    let host = Host::new();
    let mut zone = host.zone.clone();
    zone.extend([
        Rec::addr("10.2.0.192.bl.example.net", "127.0.0.2"),
        Rec::txt("10.2.0.192.bl.example.net", "listed for testing"),
    ]);
    let findings = host.check(&zone, 3);
    let (status, detail) = find(&findings, "blocklist", "192.0.2.10 in bl.example.net");
    assert_eq!(status, "fail");
    assert!(
        detail.contains("127.0.0.2") && detail.contains("listed for testing"),
        "{detail}"
    );

    let server = DnsServer::start(&zone);
    Test::new()
        .args(&[
            "check",
            &host.spec,
            "--root",
            path_str(host.root.path()),
            "--resolver",
            &server.resolver(),
        ])
        .status(3)
        .stdout_has("FAIL  blocklist")
        .stdout_has(", 1 fail, 3 skip")
        .run();
}
