//! `mailsetup status` on a log it is given: what it counts, what needs a
//! person (exit 3), and the Prometheus textfile it writes — checked by
//! Prometheus's own `promtool check metrics`. (With the real daemons and
//! receivers that defer and refuse: the end-to-end suite.)

use crate::support::{Test, example, path_str, root};

/// A day of a small server, as Postfix's maillog_file and syslog write it.
fn log(day: &str) -> String {
    format!(
        "{day} 09:10:26 mail opendkim[143]: 70113585: DKIM-Signature field added (s=20261124, d=example.com)\n\
         {day} 09:10:26 mail postfix/smtp[242]: 70113585: to=<a@gmail.com>, relay=g[192.0.2.1]:25, delay=0.1, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 OK)\n\
         {day} 09:11:00 mail opendkim[143]: 80113585: DKIM-Signature field added (s=20261124, d=example.com)\n\
         {day} 09:11:00 mail postfix/smtp[243]: 80113585: to=<b@outlook.com>, relay=o[192.0.2.2]:25, delay=1, delays=0/0/0/0, dsn=4.7.650, status=deferred (host o[192.0.2.2] said: 451 4.7.650 The mail server [198.51.100.7] has been temporarily rate limited due to IP reputation. (in reply to MAIL FROM command))\n"
    )
}

#[test]
fn status_counts_the_log_and_writes_metrics_promtool_accepts() {
    let host = root();
    let r = path_str(host.path());
    Test::new()
        .args(&["apply", &example("minimal.yaml"), "--root", r])
        .run();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mail.log");
    // The tests' day is 2026-11-24 (noon UTC).
    std::fs::write(&file, log("Nov 24")).unwrap();
    let status = |extra: &[&str]| {
        Test::new()
            .args(&["status", &example("minimal.yaml"), "--root", r])
            .args(&["--log", path_str(&file)])
            .args(extra)
    };
    status(&[])
        .stdout_has("gmail.com")
        .stdout_has("1× deferred 451 4.7.650 The mail server […] has been temporarily rate limited")
        .stdout_has("2 signed (example.com 2); 0 left unsigned")
        .stdout_has("Nothing needs attention.")
        .run();
    let json: serde_json::Value =
        serde_json::from_str(&status(&["--format", "json"]).run().stdout).unwrap();
    assert_eq!(json["format"], "mailsetup-status/1");
    assert_eq!(json["log"]["receivers"]["outlook.com"]["deferred"], 1);

    // A message sent on unsigned needs a person: exit 3, and the metric says 1.
    std::fs::write(
        &file,
        log("Nov 24")
            + "Nov 24 09:12:00 mail postfix/smtp[244]: 90113585: to=<c@gmail.com>, relay=g[192.0.2.1]:25, delay=0.1, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 OK)\n",
    )
    .unwrap();
    status(&[])
        .status(3)
        .stdout_has("1 message(s) left without a DKIM signature (queue ids 90113585)")
        .run();
    let out = tempfile::tempdir().unwrap();
    let wrote = status(&["--format", "prometheus", "--out", path_str(out.path())])
        .status(3)
        .run();
    assert_eq!(
        wrote.stdout.len() + wrote.stderr.len(),
        0,
        "--out is silent"
    );
    let prom = std::fs::read_to_string(out.path().join("mailsetup.prom")).unwrap();
    for line in [
        "mailsetup_unsigned_messages 1",
        "mailsetup_deliveries{outcome=\"sent\",receiver=\"gmail.com\"} 2",
        "mailsetup_dkim_key_age_seconds{set=\"shared\",selector=\"20261124\"} 0",
        "mailsetup_rotation_next_step_seconds{set=\"shared\",step=\"rotate start\"} 15552000",
        "mailsetup_attention 1",
    ] {
        assert!(prom.contains(line), "{line} missing from:\n{prom}");
    }
    if crate::support::missing_in_ci(&["promtool"]) {
        return;
    }
    let checked = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(out.path().join("mailsetup.prom")).unwrap())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Run as an unprivileged user: the queue and the log are read,
/// the keys and state (root's) are not, and it says so: exit 4, not "all
/// good". Run by root with a key gone: that needs a person, exit 3.
#[test]
fn status_says_what_it_could_not_read_and_a_missing_key() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::support::root_or_skip() || crate::support::missing_in_ci(&["setpriv"]) {
        return;
    }
    let host = root();
    let r = path_str(host.path());
    Test::new()
        .args(&["apply", &example("minimal.yaml"), "--root", r])
        .run();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("mail.log");
    std::fs::write(&file, log("Nov 24")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mailsetup"))
        .args(["status", &example("minimal.yaml"), "--root", r])
        .args(["--log", path_str(&file)])
        .env("SOURCE_DATE_EPOCH", "1795521600") // 2026-11-24 12:00 UTC
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stdout.contains("gmail.com") && stdout.contains("Not read as this user"),
        "{stdout}"
    );
    assert!(
        stderr.contains("not read as this user: the DKIM keys"),
        "{stderr}"
    );

    let key = std::fs::read_dir(host.path().join("etc/opendkim/keys/shared"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "private"))
        .unwrap();
    std::fs::remove_file(key).unwrap();
    Test::new()
        .args(&["status", &example("minimal.yaml"), "--root", r])
        .args(&["--log", path_str(&file)])
        .status(3)
        .stdout_has("key set shared: its key 20261124 does not exist (mailsetup apply makes it)")
        .run();
}
