//! Bad input in every kind of field: a clear error naming file, line and field,
//! exit 1, and nothing written by validate, plan or apply.

use crate::support::{Test, path_str, root, tree};

const BASE: &str = "\
host:
  hostname: mail.example.com
  relay:
    host: smtp.provider.example
    auth:
      username: user@example.com
      password_file: /etc/mailsetup/relay-password
domains:
  example.com:
dkim:
  selector: mail
aliases:
  root: ops@example.net
apticron:
  subject: System updates.
";

/// (what to replace in BASE, its replacement, the field path the error must name)
const CASES: &[(&str, &str, &str)] = &[
    (
        "hostname: mail.example.com",
        "hostname: \"mail.example.com\\nrelayhost = evil\"",
        "host.hostname",
    ),
    (
        "hostname: mail.example.com",
        "hostname: \"mail example.com\"",
        "host.hostname",
    ),
    (
        "hostname: mail.example.com",
        "hostname: \"../../etc/x\"",
        "host.hostname",
    ),
    (
        "hostname: mail.example.com",
        "hostname: mail.example.com\n  mailname: \"a,b.example.com\"",
        "host.mailname",
    ),
    (
        "hostname: mail.example.com",
        "hostname: mail.example.com\n  networks: [\"127.0.0.0/8 0.0.0.0/0\"]",
        "host.networks",
    ),
    (
        "hostname: mail.example.com",
        "hostname: mail.example.com\n  interfaces: [\"127.0.0.1\\ninet_interfaces = all\"]",
        "host.interfaces",
    ),
    (
        "hostname: mail.example.com",
        "hostname: mail.example.com\n  maillog_file: \"/var/log/x\\nrelayhost=evil\"",
        "host.maillog_file",
    ),
    (
        "hostname: mail.example.com",
        "hostname: mail.example.com\n  maillog_file: /var/log/../../etc/shadow",
        "host.maillog_file",
    ),
    (
        "host: smtp.provider.example",
        "host: \"smtp.provider.example\\n\"",
        "host.relay.host",
    ),
    (
        "host: smtp.provider.example",
        "host: \"smtp provider\"",
        "host.relay.host",
    ),
    (
        "username: user@example.com",
        "username: \"user\\nrelayhost = evil\"",
        "host.relay.auth.username",
    ),
    (
        "password_file: /etc/mailsetup/relay-password",
        "password_file: relay-password",
        "host.relay.auth.password_file",
    ),
    (
        "password_file: /etc/mailsetup/relay-password",
        "password_file: /etc/mailsetup/../../root/.ssh/id_rsa",
        "host.relay.auth.password_file",
    ),
    (
        "  example.com:\n",
        "  \"example.com\\nevil.com\":\n",
        "domains",
    ),
    (
        "  example.com:\n",
        "  \"example.com,evil.com\":\n",
        "domains",
    ),
    ("  example.com:\n", "  \"../../etc\":\n", "domains"),
    ("  example.com:\n", "  \"example.com=x\":\n", "domains"),
    ("  example.com:\n", "  \"ex#ample.com\":\n", "domains"),
    (
        "  example.com:\n",
        "  example.com:\n    dmarc:\n      rua: [\"a@b.com;p=none\"]\n",
        "domains.example.com.dmarc.rua",
    ),
    (
        "  example.com:\n",
        "  example.com:\n    spf:\n      include: [\"x.com -all\"]\n",
        "domains.example.com.spf.include",
    ),
    (
        "selector: mail",
        "selector: \"../../../tmp/x\"",
        "dkim.selector",
    ),
    (
        "selector: mail",
        "selector: \"mail\\nevil\"",
        "dkim.selector",
    ),
    ("selector: mail", "selector: \"a/b\"", "dkim.selector"),
    (
        "selector: mail",
        "selector: mail\n  oversign_headers: [\"From\\nX-Evil\"]",
        "dkim.oversign_headers",
    ),
    (
        "selector: mail",
        "selector: mail\n  trusted_hosts: [\"127.0.0.1\\n0.0.0.0/0\"]",
        "dkim.trusted_hosts",
    ),
    ("selector: mail", "selector: mail\n  bits: 512", "dkim.bits"),
    (
        "selector: mail",
        "selector: mail\n  algorithms: [rsa, ed25519]",
        "dkim.algorithms",
    ),
    (
        "root: ops@example.net",
        "root: \"|/bin/sh -c evil\"",
        "aliases.root",
    ),
    (
        "root: ops@example.net",
        "root: /tmp/mailbox",
        "aliases.root",
    ),
    (
        "root: ops@example.net",
        "root: \":include:/etc/passwd\"",
        "aliases.root",
    ),
    (
        "root: ops@example.net",
        "root: \"a@example.net, b@evil.net\"",
        "aliases.root",
    ),
    (
        "root: ops@example.net",
        "root: ops@example.net\n  \"evil:\": root",
        "aliases",
    ),
    (
        "root: ops@example.net",
        "root: ops@example.net\n  \"x\\ny\": root",
        "aliases",
    ),
    (
        "subject: System updates.",
        "subject: \"x\\\" ; rm -rf / ; \\\"\"",
        "apticron.subject",
    ),
    (
        "subject: System updates.",
        "subject: \"$(reboot)\"",
        "apticron.subject",
    ),
    (
        "subject: System updates.",
        "subject: \"a\\nEMAIL=evil\"",
        "apticron.subject",
    ),
    (
        "subject: System updates.",
        "subjct: System updates.",
        "apticron.subjct",
    ),
    // A YAML tag would be dropped silently.
    (
        "hostname: mail.example.com",
        "hostname: !relay mail.example.com",
        "host.hostname",
    ),
];

#[test]
fn every_bad_value_is_refused_with_its_location_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for (from, to, field) in CASES {
        assert!(BASE.contains(from), "case {from:?} does not apply");
        let spec = dir.path().join("bad.yaml");
        std::fs::write(&spec, BASE.replacen(from, to, 1)).unwrap();
        let s = path_str(&spec);
        let out = Test::new().args(&["validate", s]).status(1).run();
        let first = out.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("error: {s}:")) && first.contains(field),
            "case {to:?}: expected an error at {field} with file and line, got:\n{}",
            out.stderr
        );
        let line_col: Vec<&str> = first[format!("error: {s}:").len()..]
            .splitn(3, ':')
            .collect();
        assert!(
            line_col[0].parse::<usize>().is_ok() && line_col[1].parse::<usize>().is_ok(),
            "no line:column in {first}"
        );
        for cmd in ["plan", "apply"] {
            let root = root();
            let before = tree(root.path());
            Test::new()
                .args(&[cmd, s, "--root", path_str(root.path())])
                .status(1)
                .run();
            assert_eq!(tree(root.path()), before, "case {to:?}: {cmd} wrote files");
        }
    }
}

#[test]
fn the_good_base_passes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("good.yaml");
    std::fs::write(&spec, BASE).unwrap();
    Test::new().args(&["validate", path_str(&spec)]).run();
}

#[test]
fn a_missing_file_and_broken_yaml_are_clear() {
    Test::new()
        .args(&["validate", "/nonexistent/mailsetup.yaml"])
        .status(1)
        .stderr_has("cannot read /nonexistent/mailsetup.yaml")
        .run();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("broken.yaml");
    std::fs::write(&spec, "host: [\n").unwrap();
    Test::new()
        .args(&["validate", path_str(&spec)])
        .status(1)
        .stderr_has("broken.yaml:")
        .run();

    // The cause is said once, not once per layer of context.
    let out = Test::new()
        .args(&["validate", "/nonexistent/mailsetup.yaml"])
        .status(1)
        .run();
    assert_eq!(
        out.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        out.stderr
    );
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"host:\n  hostname: m\xe4il.example.com\n").unwrap();
    let out = Test::new()
        .args(&["validate", path_str(&latin1)])
        .status(1)
        .run();
    assert_eq!(
        out.stderr.matches("did not contain valid UTF-8").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn a_spec_saved_with_a_byte_order_mark_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bom.yaml");
    std::fs::write(&spec, format!("\u{feff}{BASE}")).unwrap();
    Test::new().args(&["validate", path_str(&spec)]).run();
}

#[test]
fn apply_prints_each_spec_warning_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("warn.yaml");
    // More than 2048 bits: a warning.
    std::fs::write(
        &spec,
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  bits: 3072\n  selector: mail\naliases:\n  root: ops@example.net\n",
    )
    .unwrap();
    let root = root();
    let out = Test::new()
        .args(&["apply", path_str(&spec), "--root", path_str(root.path())])
        .run();
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("dkim.bits"), "{}", out.stderr);
}

#[test]
fn a_missing_relay_password_file_is_an_error_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("relay.yaml");
    std::fs::write(&spec, BASE).unwrap();
    let root = tempfile::tempdir().unwrap();
    Test::new()
        .args(&["apply", path_str(&spec), "--root", path_str(root.path())])
        .status(1)
        .stderr_has("relay-password")
        .run();
    assert!(tree(root.path()).is_empty());
}

/// The typical YAML mistakes, each with the place and the words the user
/// should get: (what is wrong, spec text, `file:line:column`, a phrase of
/// the message). No message may use the parser's or serde's own terms.
const MISTAKES: &[(&str, &str, &str, &str)] = &[
    (
        "a tab",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\naliases:\n\troot: ops@example.net\n",
        ":6:1:",
        "a tab character: YAML indents with spaces only",
    ),
    (
        "a key indented into the value above",
        "host:\n  hostname: mail.example.com\n    mailname: mail.example.com\ndomains:\n  example.com:\naliases:\n  root: ops@example.net\n",
        ":3:5:",
        "`mailname:` is indented deeper than `hostname:`",
    ),
    (
        "an over-indented key in dkim",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  selector: mail\n    bits: 2048\naliases:\n  root: ops@example.net\n",
        ":7:5:",
        "`bits:` is indented deeper than `selector:`",
    ),
    (
        "a key indented less than the one before",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n    selector: mail\n  bits: 2048\naliases:\n  root: ops@example.net\n",
        ":7:3:",
        "not indented like the keys around it",
    ),
    (
        "an alias with no value",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\naliases:\n  root:\n",
        ":6:8:",
        "aliases.root: has no value",
    ),
    (
        "a bad selector, not the mapping's first key",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  key: shared\n  selector: \"x y\"\n  bits: 2048\naliases:\n  root: ops@example.net\n",
        ":7:3:",
        "dkim.selector:",
    ),
    (
        "bad bits, third in its mapping",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  key: shared\n  selector: mail\n  bits: 512\naliases:\n  root: ops@example.net\n",
        ":8:3:",
        "dkim.bits:",
    ),
    (
        "a quote never closed",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  selector: \"{date}\n  bits: 2048\naliases:\n  root: ops@example.net\n",
        ":6:13:",
        "this quote is never closed",
    ),
    (
        "a quote closed lines later by another",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  selector: \"{date}\n  bits: 2048\naliases:\n  root: \"ops@example.net\"\n",
        ":6:13:",
        "the quote after `selector:` is not closed on this line",
    ),
    (
        "a key given twice",
        "host:\n  hostname: mail.example.com\n  hostname: other.example.com\ndomains:\n  example.com:\naliases:\n  root: ops@example.net\n",
        ":3:3:",
        "`hostname` is given twice",
    ),
    (
        "a list where a mapping belongs",
        "host:\n  hostname: mail.example.com\ndomains:\n  - example.com\naliases:\n  root: ops@example.net\n",
        ":4:3:",
        "domains: is a list (`- item` lines), where a mapping (`key: value` lines) belongs",
    ),
    (
        "text where a number belongs",
        "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\ndkim:\n  bits: lots\naliases:\n  root: ops@example.net\n",
        ":6:9:",
        "dkim.bits: is the text \"lots\", where a whole number belongs",
    ),
    (
        "a misspelled field",
        "host:\n  hostname: mail.example.com\n  hostnme: x\ndomains:\n  example.com:\naliases:\n  root: ops@example.net\n",
        ":3:3:",
        "did you mean `hostname`?",
    ),
];

#[test]
fn typical_yaml_mistakes_are_told_in_the_users_words_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    for (what, text, place, phrase) in MISTAKES {
        let spec = dir.path().join("mailsetup.yaml");
        std::fs::write(&spec, text).unwrap();
        let out = Test::new()
            .args(&["validate", path_str(&spec)])
            .status(1)
            .run();
        let err = out.stderr.trim();
        assert!(
            err.contains(&format!("mailsetup.yaml{place}")) && err.contains(phrase),
            "{what}: {err}"
        );
        for jargon in [
            "invalid type",
            "unit value",
            "sequence",
            "did not find expected",
            "while scanning",
            "cannot start any token",
            "u64",
        ] {
            assert!(!err.contains(jargon), "{what}: {jargon:?} in {err}");
        }
    }
    // Windows line endings are read as they are meant.
    let crlf = dir.path().join("crlf.yaml");
    std::fs::write(
        &crlf,
        "host:\r\n  hostname: mail.example.com\r\ndomains:\r\n  example.com:\r\naliases:\r\n  root: ops@example.net\r\n",
    )
    .unwrap();
    Test::new()
        .args(&["validate", path_str(&crlf)])
        .stdout_has("valid (1 domain)")
        .run();
}
