//! `check` agrees with the receivers: the same records, served by BIND, are
//! judged by mailsetup and by the implementations receivers run — pyspf for
//! SPF (`spf.check2`), dkimpy for DKIM (a message signed with the host's key,
//! verified against what BIND serves). A record one of them fails, the other
//! fails too; the disagreements kept are said where they are tested.

use std::process::Command;

use crate::bind::Bind;
use crate::support::{Test, path_str};

/// The host's address, as BIND serves it for the names `a` points at.
const HOST: &str = "192.0.2.10";

const SPEC: &str = "host:
  hostname: mail.example.com
domains:
  example.com:
dkim:
  bits: 1024
  selector: sel
check:
  addresses: [192.0.2.10]
aliases:
  root: ops@example.net
";

/// The judge's word: pass, or how it failed (permerror, fail, neutral…).
fn pyspf(bind: &Bind, domain: &str) -> String {
    let script = format!(
        "import dns.resolver, spf\n\
         r = dns.resolver.Resolver(configure=False)\n\
         r.nameservers = ['127.0.0.1']; r.port = {port}\n\
         dns.resolver.default_resolver = r\n\
         print(spf.check2(i='{HOST}', s='x@{domain}', h='mail.example.com')[0])\n",
        port = bind.port
    );
    let out = crate::support::succeed(Command::new("/usr/bin/python3").args(["-c", &script]));
    String::from_utf8_lossy(&out).trim().to_string()
}

/// dkimpy's verdict on a message signed with the host's key as selector
/// `sel` of example.com, the key record read from BIND.
fn dkimpy(bind: &Bind, key: &std::path::Path) -> String {
    let script = format!(
        "import dkim, dns.resolver\n\
         r = dns.resolver.Resolver(configure=False)\n\
         r.nameservers = ['127.0.0.1']; r.port = {port}\n\
         def txt(name, timeout=5):\n\
         \x20   try:\n\
         \x20       a = r.resolve(name.decode().rstrip('.'), 'TXT')\n\
         \x20   except Exception:\n\
         \x20       return None\n\
         \x20   return b''.join(b''.join(x.strings) for x in a)\n\
         msg = b'From: a@example.com\\r\\nTo: b@example.net\\r\\nSubject: s\\r\\n\\r\\nbody\\r\\n'\n\
         sig = dkim.sign(msg, b'sel', b'example.com', open('{key}', 'rb').read(), include_headers=[b'from', b'to', b'subject'])\n\
         print('pass' if dkim.verify(sig + msg, dnsfunc=txt) else 'fail')\n",
        port = bind.port,
        key = key.display()
    );
    let out = crate::support::succeed(Command::new("/usr/bin/python3").args(["-c", &script]));
    String::from_utf8_lossy(&out).trim().to_string()
}

/// mailsetup's status for `check` on `target`.
fn ours(bind: &Bind, spec: &str, root: &str, check: &str, target: &str) -> String {
    let out = Test::new()
        .args(&["check", spec, "--root", root, "--resolver", &bind.server()])
        .args(&["--format", "json"])
        .any_status()
        .run();
    let findings: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let found: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["check"] == check && f["target"] == target)
        .collect();
    assert_eq!(found.len(), 1, "{check} {target}: {findings:#?}");
    format!(
        "{} ({})",
        found[0]["status"].as_str().unwrap(),
        found[0]["detail"].as_str().unwrap()
    )
}

/// Replaces the TXT records at `name` with `values`.
fn serve(bind: &Bind, name: &str, values: &[&str]) {
    let mut commands = format!("update delete {name} TXT\n");
    for v in values {
        let quoted: Vec<String> = v
            .as_bytes()
            .chunks(200)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        commands += &format!("update add {name} 300 TXT {}\n", quoted.join(" "));
    }
    bind.nsupdate("example.com", &commands);
}

#[test]
fn check_judges_spf_and_dkim_as_pyspf_and_dkimpy_do() {
    if crate::support::missing_in_ci(&["python3"]) {
        return;
    }
    let Some(bind) = Bind::start(&["example.com"]) else {
        return;
    };
    let root = crate::support::root();
    let r = path_str(root.path()).to_string();
    let spec = root.path().join("mailsetup.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let s = path_str(&spec).to_string();
    Test::new().args(&["apply", &s, "--root", &r]).run();
    bind.nsupdate(
        "example.com",
        &format!("update delete example.com A\nupdate add example.com 300 A {HOST}\nupdate add mail.example.com 300 A {HOST}\n"),
    );

    // SPF: (the record, pass or not for both).
    for (record, passes) in [
        ("v=spf1 a -all", true),
        ("v=spf1 ip4:192.0.2.10 -all", true),
        ("v=spf1 -all", false),
        ("v=spf1 include:nowhere.example.com -all", false),
        ("v=spf1 foo:bar -all", false),
        // Three lookups that find nothing before the match: pyspf's permerror.
        (
            "v=spf1 a:g1.example.com a:g2.example.com a:g3.example.com ip4:192.0.2.10 -all",
            false,
        ),
    ] {
        serve(&bind, "example.com", &[record]);
        let theirs = pyspf(&bind, "example.com");
        let host = ours(
            &bind,
            &s,
            &r,
            "spf-host",
            &format!("example.com from {HOST}"),
        );
        let own = ours(&bind, &s, &r, "spf", "example.com");
        assert_eq!(theirs == "pass", passes, "pyspf on {record}: {theirs}");
        assert_eq!(
            host.starts_with("pass"),
            passes,
            "spf-host on {record}: {host}"
        );
        // The record finding fails what fails every sender; a record that
        // fails only this address is the spf-host finding's.
        if passes {
            assert!(
                own.starts_with("warn") || own.starts_with("pass"),
                "{record}: {own}"
            );
        }
        if record.contains("nowhere") || record.contains("foo") || record.contains("g3") {
            assert!(own.starts_with("fail"), "spf on {record}: {own}");
        }
    }
    serve(
        &bind,
        "example.com",
        &["v=spf1 a -all", "v=spf1 ip4:192.0.2.10 -all"],
    );
    assert_eq!(pyspf(&bind, "example.com"), "permerror");
    assert!(ours(&bind, &s, &r, "spf", "example.com").starts_with("fail"));

    // DKIM: the key on disk, published as it is and as verifiers refuse it.
    let key = root.path().join("etc/opendkim/keys/shared/sel.private");
    let public =
        mailsetup::keys::DkimPublicKey::from_private_pem(&std::fs::read_to_string(&key).unwrap())
            .unwrap();
    let p = public.p_value();
    let other = mailsetup::keys::DkimKey::generate(1024)
        .unwrap()
        .public()
        .p_value();
    let name = "sel._domainkey.example.com";
    // (the record, dkimpy passes it, check passes it)
    for (record, theirs_pass, ours_pass) in [
        (format!("v=DKIM1; k=rsa; p={p}"), true, true),
        (
            format!("v=DKIM1; h=sha1:sha256; s=email; p={p}"),
            true,
            true,
        ),
        (format!("v=DKIM1; k=ed25519; p={p}"), false, false),
        (format!("v=DKIM1; p={other}"), false, false),
        ("v=DKIM1; p=".to_string(), false, false),
        (format!("v=DKIM1; s=tlsrpt; p={p}"), false, false),
        // The kept disagreement: dkimpy does not read h=. RFC 6376 6.1.2 says
        // "the Verifier MUST ignore the signature and return PERMFAIL" when
        // h= lacks the signature's hash, as libopendkim does, so check fails it.
        (format!("v=DKIM1; h=sha1; p={p}"), true, false),
    ] {
        serve(&bind, name, &[&record]);
        let theirs = dkimpy(&bind, &key);
        let mine = ours(&bind, &s, &r, "dkim", name);
        assert_eq!(
            theirs == "pass",
            theirs_pass,
            "dkimpy on {record}: {theirs}"
        );
        assert_eq!(
            mine.starts_with("pass"),
            ours_pass,
            "check on {record}: {mine}"
        );
    }
    // Testing mode (t=y): dkimpy passes the signature; check passes it with a
    // warning, since some receivers treat a failure then as no signature.
    serve(&bind, name, &[&format!("v=DKIM1; t=y; p={p}")]);
    assert_eq!(dkimpy(&bind, &key), "pass");
    assert!(ours(&bind, &s, &r, "dkim", name).starts_with("warn"));
}

/// A resolver that never answers: nothing verified, so `check` exits 4 —
/// never 0 — and says which findings are unknown.
#[test]
fn check_that_could_not_look_exits_4() {
    let root = crate::support::root();
    let spec = root.path().join("mailsetup.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let r = path_str(root.path());
    Test::new()
        .args(&["apply", path_str(&spec), "--root", r])
        .run();
    // A UDP port nobody answers on (bound here, never read).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    Test::new()
        .args(&["check", path_str(&spec), "--root", r, "--resolver", &addr])
        .status(4)
        .stdout_has("0 fail")
        .stdout_has("???? = could not be checked")
        .run();
}
