//! `dns --push` against a real BIND 9: records published by RFC 2136 updates
//! signed with TSIG, only mailsetup's records touched, nothing clobbered.

use std::os::unix::fs::PermissionsExt;

use crate::bind::Bind;
use crate::support::{DATE, Test, path_str};

/// A spec pushing to `bind`, its keys applied under a new root, and the TSIG
/// key where the spec says (mode 0600).
fn setup(bind: &Bind, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n    subdomains: [app]\n  example.org:\n\
             dmarc:\n  p: quarantine\n  rua: [dmarc@example.com]\naliases:\n  root: ops@example.com\n\
             dkim:\n  selector: \"{{date}}\"\n\
             dns:\n  server: {}\n  tsig_key: /etc/mailsetup/tsig.key\n  ttl: 600\n{extra}",
            bind.server()
        ),
    )
    .unwrap();
    let r = path_str(root.path());
    Test::new()
        .args(&[
            "apply",
            path_str(&spec),
            "--root",
            r,
            "--no-install-packages",
        ])
        .run();
    install_key(bind, root.path());
    (root, spec)
}

/// The server's TSIG key where the specs say, as an operator puts it: 0600.
fn install_key(bind: &Bind, root: &std::path::Path) {
    std::fs::create_dir_all(root.join("etc/mailsetup")).unwrap();
    let key = root.join("etc/mailsetup/tsig.key");
    std::fs::copy(bind.key_file(), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn push_publishes_every_record_and_keeps_what_is_not_mailsetups() {
    let Some(bind) = Bind::start(&["example.com", "example.org", "2.0.192.in-addr.arpa"]) else {
        return;
    };
    let (root, spec) = setup(
        &bind,
        &format!(
            "check:\n  addresses: [192.0.2.25]\n  blocklists: []\n  resolver: {}\n",
            bind.server()
        ),
    );
    let (s, r) = (path_str(&spec), path_str(root.path()));
    // Somebody else's TXT record at the apex, and an old SPF value to replace.
    bind.nsupdate(
        "example.com",
        "update add example.com 300 TXT \"google-site-verification=abc\"\n\
         update add example.com 300 TXT \"v=spf1 mx ~all\"",
    );

    // A record split at other places than 255 bytes (as opendkim-genkey's .txt
    // splits keys): the update must name it with its own strings to replace it.
    bind.nsupdate(
        "example.org",
        "update add _dmarc.example.org 300 TXT \"v=DMARC1; \" \"p=reject\"",
    );

    let dry = Test::new()
        .args(&["dns", s, "--root", r, "--push", "--dry-run"])
        .stdout_has("dry run: nothing sent")
        .stdout_has("  - example.com TXT \"v=spf1 mx ~all\"")
        .run()
        .stdout;
    assert_eq!(
        bind.txt("_dmarc.example.com"),
        Vec::<String>::new(),
        "a dry run sent something"
    );

    assert!(
        dry.contains("  - _dmarc.example.org TXT \"v=DMARC1; p=reject\""),
        "{dry}"
    );
    Test::new()
        .args(&["dns", s, "--root", r, "--push"])
        .stdout_has("8 names served as pushed")
        .stdout_has("3 names served as pushed")
        .run();
    // Every record `dns` prints is served, split values joined again.
    let json = Test::new()
        .args(&["dns", s, "--root", r, "--format", "json"])
        .run()
        .stdout;
    let records: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    // The domains', a listed subdomain's, and the mailname's SPF and DKIM.
    assert_eq!(records.len(), 11, "{json}");
    for rec in &records {
        let (name, value) = (
            rec["name"].as_str().unwrap(),
            rec["value"].as_str().unwrap(),
        );
        assert!(
            bind.txt(name).contains(&value.to_string()),
            "{name} does not serve {value}"
        );
    }
    let dkim = bind.dig(&["TXT", &format!("{DATE}._domainkey.example.com")]);
    assert!(
        dkim.contains("\" \""),
        "a 2048-bit key is one TXT record of two strings: {dkim}"
    );
    assert_eq!(
        bind.txt("example.com"),
        ["google-site-verification=abc", "v=spf1 a -all"],
        "the old SPF value is replaced, the other record kept"
    );
    let ttl = bind.dig(&["+noshort", "+noall", "+answer", "TXT", "_dmarc.example.org"]);
    assert!(ttl.contains("\t600\t"), "{ttl}");

    // `check` asks the same BIND and finds every record as it should be.
    bind.nsupdate(
        "example.com",
        "update add mail.example.com 300 A 192.0.2.25",
    );
    bind.nsupdate(
        "2.0.192.in-addr.arpa",
        "update add 25.2.0.192.in-addr.arpa 300 PTR mail.example.com.",
    );
    let check = Test::new()
        .args(&["check", s, "--root", r])
        .stdout_has("0 warn, 0 fail")
        .run()
        .stdout;
    assert_eq!(check.matches("\npass  dkim").count(), 4, "{check}");
    // This host's own name: its SPF, and SPF evaluated for its address.
    assert!(
        check.contains("pass  spf-host          mail.example.com from 192.0.2.25"),
        "{check}"
    );

    Test::new()
        .args(&["dns", s, "--root", r, "--push"])
        .stdout_has("example.com (primary")
        .stdout_has("8 names as they should be")
        .stdout_lacks("+ ")
        .stdout_lacks("- ")
        .run();
}

#[test]
fn bad_keys_unknown_zones_and_dead_servers_are_clear_and_change_nothing() {
    let Some(bind) = Bind::start(&["example.com"]) else {
        return;
    };
    let (root, spec) = setup(&bind, "  zones:\n    example.com:\n    example.org:\n");
    let (s, r) = (path_str(&spec), path_str(root.path()));

    // A zone the server does not serve stops the push before anything is sent.
    Test::new()
        .args(&["dns", s, "--root", r, "--push"])
        .status(1)
        .stderr_has("zone example.org")
        .stderr_has("REFUSED")
        .run();
    assert_eq!(
        bind.txt("_dmarc.example.com"),
        Vec::<String>::new(),
        "example.com was pushed"
    );

    // Names in none of the zones are left to their owner, and said so.
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("    example.org:\n", "");
    std::fs::write(&spec, text).unwrap();
    Test::new()
        .args(&["dns", s, "--root", r, "--push", "--dry-run"])
        .stdout_has("not pushed: _dmarc.example.org is in none of the zones (example.com)")
        .run();

    let bad = root.path().join("bad.key");
    let text = std::fs::read_to_string(bind.key_file()).unwrap();
    let secret = text.split('"').nth(3).unwrap();
    std::fs::write(
        &bad,
        text.replace(secret, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    )
    .unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = bind.txt("_dmarc.example.com");
    let push_with_bad_key = || {
        Test::new()
            .args(&[
                "dns",
                s,
                "--root",
                r,
                "--push",
                "--tsig-key",
                path_str(&bad),
            ])
            .status(1)
    };
    let e = push_with_bad_key()
        .stdout_has("did not accept the TSIG signature of key mailsetup")
        .stderr_has("not brought up to date (see above): example.com")
        .run();
    let said = format!("{}{}", e.stdout, e.stderr);
    assert!(
        !said.contains(secret) && !said.contains("AAAAAAAA"),
        "a secret in the output: {said}"
    );
    assert_eq!(bind.txt("_dmarc.example.com"), before);

    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    push_with_bad_key()
        .stderr_has("readable by others")
        .stderr_has("chmod 600")
        .run();

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    drop(std::net::TcpListener::bind(dead));
    Test::new()
        .args(&[
            "dns",
            s,
            "--root",
            r,
            "--push",
            "--server",
            &dead.to_string(),
        ])
        .status(1)
        .stderr_has("cannot reach its primary server")
        .stderr_has(dead.to_string())
        .run();

    // A server that takes the connection and never answers is named as one,
    // not as one that closed it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    Test::new()
        .args(&["dns", s, "--root", r, "--push", "--server", &silent_addr])
        .status(1)
        .stderr_has(format!(
            "the primary {silent_addr} did not answer within 5 s"
        ))
        .stderr_lacks("closed the connection")
        .run();
    drop(silent);

    // A key file of a gigabyte is refused, not read.
    let huge = root.path().join("huge.key");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    std::fs::set_permissions(&huge, std::fs::Permissions::from_mode(0o600)).unwrap();
    Test::new()
        .args(&[
            "dns",
            s,
            "--root",
            r,
            "--push",
            "--tsig-key",
            path_str(&huge),
        ])
        .status(1)
        .stderr_has("more than the 65536 bytes")
        .run();

    // Before apply there are no keys: nothing is pushed half.
    let empty = tempfile::tempdir().unwrap();
    Test::new()
        .args(&["dns", s, "--root", path_str(empty.path()), "--push"])
        .status(1)
        .stderr_has("not pushed: some keys are missing")
        .run();

    // What the server serves reaches the terminal escaped: an ESC in a TXT
    // value cannot clear the screen or overwrite the dry run's lines.
    bind.nsupdate(
        "example.com",
        "update delete _dmarc.example.com TXT\nupdate add _dmarc.example.com 300 TXT \"v=DMARC1\\027[2J\\013x\"\n",
    );
    let out = Test::new()
        .args(&["dns", s, "--root", r, "--push", "--dry-run"])
        .stdout_has("- _dmarc.example.com TXT \"v=DMARC1\\027[2J\\013x\"")
        .run();
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stdout.contains('\r'),
        "{:?}",
        out.stdout
    );
}

#[test]
fn an_edit_made_between_reading_and_updating_is_not_overwritten() {
    use mailsetup::dns::Kind;
    use mailsetup::push::{Primary, Wanted, Zone, ZoneChange, change, tsig};
    let Some(bind) = Bind::start(&["example.com"]) else {
        return;
    };
    let zone = Zone {
        name: "example.com".into(),
        server: bind.server().parse().unwrap(),
        key: tsig::parse(&std::fs::read_to_string(bind.key_file()).unwrap()).unwrap(),
    };
    let wanted = Wanted {
        name: "_dmarc.example.com".into(),
        kind: Kind::Dmarc,
        values: vec!["v=DMARC1; p=none".into()],
    };
    let primary = Primary::connect(&zone).unwrap();
    let served = primary
        .txt_sets(["_dmarc.example.com"].into_iter())
        .unwrap();
    let planned = change(&wanted, served.into_iter().next().unwrap()).unwrap();
    // Meanwhile somebody publishes their own policy.
    bind.nsupdate(
        "example.com",
        "update add _dmarc.example.com 300 TXT \"v=DMARC1; p=reject\"",
    );
    let e = primary
        .update(&ZoneChange {
            zone,
            changes: vec![planned],
            unchanged: 0,
            ttl: 300,
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("YXRRSET") && e.contains("run the push again"),
        "{e}"
    );
    assert_eq!(bind.txt("_dmarc.example.com"), ["v=DMARC1; p=reject"]);
}

#[test]
fn the_octodns_export_round_trips_through_octodns() {
    let (Some(validate), Some(sync), Some(python)) = (
        crate::support::test_tool("octodns-validate"),
        crate::support::test_tool("octodns-sync"),
        crate::support::test_tool("python3"),
    ) else {
        return;
    };
    let root = crate::support::root();
    let r = path_str(root.path());
    let spec = crate::support::example("guide.yaml");
    Test::new()
        .args(&["apply", &spec, "--root", r, "--no-install-packages"])
        .run();
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    Test::new()
        .args(&[
            "dns",
            &spec,
            "--root",
            r,
            "--format",
            "octodns",
            "--out",
            path_str(&zones),
        ])
        .stdout_has("example.com.yaml")
        .run();
    // octoDNS as a team runs it: our directory as the source, BIND zone files out.
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  mailsetup:\n    class: octodns.provider.yaml.YamlProvider\n    directory: {}\n\
             \x20 bind:\n    class: octodns_bind.ZoneFileProvider\n    directory: {}\n    file_extension: .zone\n\
             zones:\n  '*':\n    sources: [mailsetup]\n    targets: [bind]\n",
            zones.display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let tool = |program: &std::path::Path, args: &[&str]| {
        let out = crate::support::succeed(std::process::Command::new(program).args(args));
        String::from_utf8_lossy(&out).into_owned()
    };
    let config_arg = format!("--config-file={}", config.display());
    tool(&validate, &[&config_arg]);
    tool(&sync, &[&config_arg, "--doit"]);
    // Every record `dns` prints is in the zone files octoDNS wrote, and no other TXT.
    let read = "import dns.zone, glob, sys\n\
                for f in glob.glob(sys.argv[1] + '/*.zone'):\n\
                \x20   z = dns.zone.from_file(f, check_origin=False)\n\
                \x20   for name, ttl, rd in z.iterate_rdatas('TXT'):\n\
                \x20       print(name.derelativize(z.origin).to_text(omit_final_dot=True), b''.join(rd.strings).decode())\n";
    let served = tool(&python, &["-c", read, path_str(&dir.path().join("out"))]);
    let mut served: Vec<&str> = served.lines().collect();
    served.sort();
    let json = Test::new()
        .args(&["dns", &spec, "--root", r, "--format", "json"])
        .run()
        .stdout;
    let records: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let mut wanted: Vec<String> = records
        .iter()
        .map(|rec| {
            format!(
                "{} {}",
                rec["name"].as_str().unwrap(),
                rec["value"].as_str().unwrap()
            )
        })
        .collect();
    wanted.sort();
    assert_eq!(served, wanted);
}

/// A message from noreply@`domain` signed by dkimpy with the key at `private`.
fn sign(private: &std::path::Path, selector: &str, domain: &str) -> Vec<u8> {
    let script = "import dkim, sys\n\
                  msg = b'From: noreply@' + sys.argv[3].encode() + b'\\r\\nTo: a@example.net\\r\\nSubject: rotation\\r\\n\\r\\nhello\\r\\n'\n\
                  key = open(sys.argv[1], 'rb').read()\n\
                  sys.stdout.buffer.write(dkim.sign(msg, sys.argv[2].encode(), sys.argv[3].encode(), key) + msg)\n";
    crate::support::succeed(std::process::Command::new("/usr/bin/python3").args([
        "-c",
        script,
        path_str(private),
        selector,
        domain,
    ]))
}

/// Whether dkimpy verifies `message` against the keys `bind` serves.
fn verifies(bind: &Bind, message: &[u8]) -> bool {
    use std::io::Write;
    let script = "import dkim, subprocess, sys\n\
                  def dns(name, timeout=5):\n\
                  \x20   out = subprocess.run(['dig', '@127.0.0.1', '-p', sys.argv[1], '+short', 'TXT', name.decode().rstrip('.')], capture_output=True, text=True).stdout\n\
                  \x20   return ''.join(p for i, p in enumerate(out.strip().split('\"')) if i % 2).encode() or None\n\
                  try:\n\
                  \x20   ok = dkim.verify(sys.stdin.buffer.read(), dnsfunc=dns)\n\
                  except Exception as e:\n\
                  \x20   sys.exit(f'dkimpy failed: {e!r}')\n\
                  sys.exit(0 if ok else 1)\n";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script, &bind.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    // 0 verifies, 1 does not; anything else is the verifier failing.
    match child.wait().unwrap().code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("the DKIM verifier failed ({other:?})"),
    }
}

#[test]
fn rotation_runs_unattended_from_start_to_withdrawal() {
    let Some(bind) = Bind::start(&["example.com", "example.org"]) else {
        return;
    };
    let dkimpy = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import dkim"])
        .status()
        .is_ok_and(|s| s.success());
    if !crate::support::available(dkimpy, "dkimpy (python3-dkim)") {
        return;
    }
    let extra = format!("check:\n  resolver: {}\n  blocklists: []\n", bind.server());
    let (root, spec) = setup(&bind, &extra);
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "dkim:\n",
        "dkim:\n  rotation:\n    interval_days: 30\n    grace_days: 7\n    keep_revoked_days: 10\n",
    );
    std::fs::write(&spec, text).unwrap();
    let (s, r) = (path_str(&spec), path_str(root.path()));
    let keys = root.path().join("etc/opendkim/keys/shared");
    let auto = |day: &str| {
        Test::new()
            .args(&["rotate", "auto", s, "--root", r])
            .day(day)
    };
    let (old, new) = (DATE, "20261224");
    let dkim_txt = |sel: &str, domain: &str| bind.txt(&format!("{sel}._domainkey.{domain}"));

    // Day 0: nothing is due, but DNS is published with no human step — and
    // with --dry-run only said, not sent.
    auto("2026-11-24").args(&["--dry-run"]).run();
    assert!(dkim_txt(old, "example.com").is_empty(), "a dry run pushed");
    auto("2026-11-24").stdout_has("served as pushed").run();
    let before = sign(&keys.join(format!("{old}.private")), old, "example.com");
    assert!(verifies(&bind, &before), "mail signed before the rotation");
    assert_eq!(
        auto("2026-11-24").run().stdout,
        "",
        "a second run with nothing due is silent"
    );

    // Day 30: a new key is staged. With the DNS server unreachable the step
    // still happens and says so; the run fails, and the next one publishes.
    let good = std::fs::read_to_string(&spec).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &spec,
        good.replace(
            &format!("server: {}", bind.server()),
            &format!("server: {dead}"),
        ),
    )
    .unwrap();
    auto("2026-12-24")
        .status(1)
        .stdout_has(format!("staged {new}"))
        .stderr_has("DNS was not brought up to date")
        .run();
    std::fs::write(&spec, good).unwrap();
    auto("2026-12-24")
        .stdout_has(format!("+ {new}._domainkey.example.com"))
        .run();
    assert_eq!(dkim_txt(new, "example.org").len(), 1);
    Test::new()
        .args(&["rotate", "status", s, "--root", r, "--format", "json"])
        .day("2026-12-24")
        .stdout_has("\"staged\"")
        .run();

    // Day 31: the resolver serves it, so signing switches.
    auto("2026-12-25")
        .stdout_has(format!("DNS serves {new}"))
        .run();
    let during = sign(&keys.join(format!("{new}.private")), new, "example.org");
    assert!(verifies(&bind, &during), "mail signed with the new key");
    assert!(
        verifies(&bind, &before),
        "mail signed before still verifies in the grace period"
    );

    // Grace over: the old key is revoked and its p= pushed.
    auto("2027-01-01")
        .stdout_has(format!("- {old}._domainkey.example.com"))
        .run();
    assert_eq!(dkim_txt(old, "example.com"), ["v=DKIM1; p="]);
    assert!(
        !verifies(&bind, &before),
        "a revoked key no longer verifies"
    );
    assert!(verifies(&bind, &during));

    // keep_revoked_days later the revoked record is withdrawn, subdomain's too.
    auto("2027-01-11")
        .stdout_has(format!("- {old}._domainkey.app.example.com"))
        .run();
    for domain in ["example.com", "app.example.com", "example.org"] {
        assert_eq!(dkim_txt(old, domain), Vec::<String>::new(), "{domain}");
    }
    Test::new()
        .args(&["dns", s, "--root", r])
        .day("2027-01-11")
        .stdout_lacks(old)
        .run();
    assert!(verifies(&bind, &during), "after the rotation");
    assert_eq!(auto("2027-01-11").run().stdout, "", "and then silence");
}

#[test]
fn a_fleet_rotates_and_publishes_each_hosts_keys_without_touching_the_others() {
    let Some(bind) = Bind::start(&["example.com", "example.org"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("fleet.yaml");
    std::fs::write(
        &spec,
        format!(
            "hosts:\n  mta01:\n    hostname: mta01.example.com\n  mta02:\n    hostname: mta02.example.com\n\
             domains:\n  example.com:\n  example.org:\nspf:\n  a: false\n\
             aliases:\n  root: ops@example.com\n\
             dkim:\n  rotation:\n    interval_days: 30\n    grace_days: 7\n    keep_revoked_days: 10\n\
             check:\n  resolver: {0}\n\
             dns:\n  server: {0}\n  tsig_key: /etc/mailsetup/tsig.key\n",
            bind.server()
        ),
    )
    .unwrap();
    let s = path_str(&spec);
    let roots: Vec<(&str, tempfile::TempDir)> = ["mta01", "mta02"]
        .into_iter()
        .map(|host| {
            let root = tempfile::tempdir().unwrap();
            let r = path_str(root.path());
            Test::new()
                .args(&[
                    "apply",
                    s,
                    "--host",
                    host,
                    "--root",
                    r,
                    "--no-install-packages",
                ])
                .run();
            install_key(&bind, root.path());
            (host, root)
        })
        .collect();
    // Every host's nightly cron, day after day.
    let night = |day: &str| {
        for (host, root) in &roots {
            let r = path_str(root.path());
            Test::new()
                .args(&["rotate", "auto", s, "--host", host, "--root", r])
                .day(day)
                .run();
        }
    };
    let served = |selector: &str| bind.txt(&format!("{selector}._domainkey.example.org"));

    night("2026-11-24");
    assert_eq!(
        bind.txt("example.com"),
        ["v=spf1 a:mta01.example.com a:mta02.example.com -all"]
    );
    for host in ["mta01", "mta02"] {
        assert_eq!(
            served(&format!("{host}-{DATE}")).len(),
            1,
            "{host}'s key is published"
        );
    }
    for day in ["2026-12-24", "2026-12-25", "2027-01-01"] {
        night(day);
    }
    for host in ["mta01", "mta02"] {
        assert_eq!(
            served(&format!("{host}-{DATE}")),
            ["v=DKIM1; p="],
            "{host}'s old key revoked"
        );
        let table = std::fs::read_to_string(
            roots
                .iter()
                .find(|(h, _)| *h == host)
                .unwrap()
                .1
                .path()
                .join("etc/opendkim/KeyTable"),
        )
        .unwrap();
        assert!(
            table.contains(&format!(":{host}-20261224:")),
            "{host} signs with its new key"
        );
        assert_eq!(served(&format!("{host}-20261224")).len(), 1);
    }
    night("2027-01-11");
    for host in ["mta01", "mta02"] {
        assert!(
            served(&format!("{host}-{DATE}")).is_empty(),
            "{host}'s old record withdrawn"
        );
        assert_eq!(
            served(&format!("{host}-20261224")).len(),
            1,
            "{host}'s new key stays"
        );
    }
}
