//! Fleets: several hosts sending for the same domains, each with its own
//! hostname, key and selector.

use crate::support::{DATE, Test, example, path_str, root};

#[test]
fn each_host_signs_with_its_own_selector_and_dns_covers_them_all() {
    let spec = example("fleet.yaml");
    Test::new()
        .args(&["plan", &spec, "--root", "/"])
        .status(1)
        .stderr_has("pick one with --host")
        .run();
    Test::new()
        .args(&["plan", &spec, "--host", "mta09", "--root", "/"])
        .status(1)
        .stderr_has("mta01, mta02")
        .run();

    // Both hosts' keys in one tree, as `dns` sees them on a machine holding both.
    let both = root();
    let r = path_str(both.path());
    for host in ["mta01", "mta02"] {
        Test::new()
            .args(&["apply", &spec, "--host", host, "--root", r])
            .run();
    }
    let keytable = std::fs::read_to_string(both.path().join("etc/opendkim/KeyTable")).unwrap();
    assert!(
        keytable.contains("example.com example.com:mta02:/etc/opendkim/keys/shared/mta02.private"),
        "{keytable}"
    );
    let main_cf = std::fs::read_to_string(both.path().join("etc/postfix/main.cf")).unwrap();
    assert!(main_cf.contains("myhostname = mta02.example.com"));

    let json: serde_json::Value = serde_json::from_str(
        &Test::new()
            .args(&["dns", &spec, "--root", r, "--format", "json"])
            .run()
            .stdout,
    )
    .unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for name in [
        format!("mta01-{DATE}._domainkey.example.com"),
        "mta02._domainkey.example.com".to_string(),
        format!("mta01-{DATE}._domainkey.example.org"),
        "mta02._domainkey.example.org".to_string(),
    ] {
        assert!(
            names.contains(&name.as_str()),
            "{name} missing from {names:?}"
        );
    }
    let spf: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "spf")
        .map(|r| (r["name"].as_str().unwrap(), r["value"].as_str().unwrap()))
        .collect();
    // The domains name every host; each host's own name has its own record
    // (its HELO, bounces and root@ pass SPF).
    assert_eq!(
        spf,
        [
            (
                "example.com",
                "v=spf1 a:mta01.example.com a:mta02.example.com -all"
            ),
            (
                "example.org",
                "v=spf1 a:mta01.example.com a:mta02.example.com -all"
            ),
            ("mta01.example.com", "v=spf1 a -all"),
            ("mta02.example.com", "v=spf1 a -all"),
        ]
    );
    // Only one host's DKIM record when asked.
    Test::new()
        .args(&["dns", &spec, "--root", r, "--host", "mta02"])
        .stdout_has("mta02._domainkey")
        .stdout_lacks("mta01-")
        .run();
}

#[test]
fn a_host_bundle_carries_that_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("mta01.tar.gz");
    Test::new()
        .args(&[
            "bundle",
            &example("fleet.yaml"),
            "--host",
            "mta01",
            "--out",
            path_str(&bundle),
        ])
        .run();
    let host = root();
    Test::new()
        .args(&[
            "apply",
            "--bundle",
            path_str(&bundle),
            "--root",
            path_str(host.path()),
        ])
        .run();
    let main_cf = std::fs::read_to_string(host.path().join("etc/postfix/main.cf")).unwrap();
    assert!(main_cf.contains("myhostname = mta01.example.com"));
    assert!(
        host.path()
            .join(format!("etc/opendkim/keys/shared/mta01-{DATE}.private"))
            .exists()
    );
    Test::new()
        .args(&[
            "plan",
            &example("fleet.yaml"),
            "--host",
            "mta01",
            "--root",
            path_str(host.path()),
            "--detailed-exitcode",
        ])
        .run();
}

#[test]
fn ci_prints_every_hosts_records_from_what_each_host_exported() {
    let spec = example("fleet.yaml");
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("public-keys");
    let mut expected = Vec::new();
    for host in ["mta01", "mta02"] {
        // Each host is its own machine with its own tree.
        let machine = root();
        let m = path_str(machine.path());
        Test::new()
            .args(&["apply", &spec, "--host", host, "--root", m])
            .run();
        Test::new()
            .args(&[
                "public-keys",
                &spec,
                "--host",
                host,
                "--root",
                m,
                "--out",
                path_str(&exported),
            ])
            .run();
        let selector = if host == "mta01" {
            format!("mta01-{DATE}")
        } else {
            "mta02".to_string()
        };
        let pem = std::fs::read_to_string(
            machine
                .path()
                .join(format!("etc/opendkim/keys/shared/{selector}.private")),
        )
        .unwrap();
        expected.push((
            selector,
            mailsetup::keys::DkimPublicKey::from_private_pem(&pem)
                .unwrap()
                .dns_value(),
        ));
    }
    let out = Test::new()
        .args(&[
            "dns",
            &spec,
            "--public-keys",
            path_str(&exported),
            "--format",
            "json",
        ])
        .run();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for (selector, value) in expected {
        for domain in ["example.com", "example.org"] {
            let name = format!("{selector}._domainkey.{domain}");
            let record = json
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name.as_str());
            assert_eq!(
                record.map(|r| r["value"].as_str().unwrap()),
                Some(value.as_str()),
                "{name}"
            );
        }
    }
}
