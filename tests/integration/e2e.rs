//! End-to-end proof with Debian's real Postfix and OpenDKIM: every spec in
//! `examples/` is applied by the real binary to the real paths inside private
//! mount/net/pid namespaces (the machine's own /etc, spool and processes are
//! untouched), the daemons are started, and `tests/e2e/driver.py` sends mail
//! through `sendmail` and SMTP to an SMTP sink on loopback and verifies every
//! DKIM signature with dkimpy against the records `mailsetup dns --format json`
//! prints. The driver's header lists every check and the test-only changes it
//! makes to the spec (the relay points at the sink). A fleet spec (`hosts:`)
//! gets one run per host, each its own machine (`--host NAME`).
//!
//! Needs root, util-linux `unshare`, postfix, opendkim, iproute2, openssl and
//! /usr/bin/python3 with the Debian modules dkim, aiosmtpd, yaml, authheaders and spf
//! (`tests/run.sh` installs them). Missing prerequisites skip the test, except
//! in CI (`CI=true`), where they fail it.
//!
//! `MAILSETUP_E2E_ONLY=guide,minimal` limits the examples; `MAILSETUP_E2E_KEEP=1`
//! keeps every work directory (failed runs keep theirs anyway) with the
//! generated configs and logs under `artifacts/`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One run takes about 15 s here (17 s for all at once); this only stops a hung run.
const TIMEOUT: Duration = Duration::from_secs(240);
const PYTHON: &str = "/usr/bin/python3";
const NAMESPACES: [&str; 6] = [
    "--mount",
    "--net",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (euid 0)".to_owned());
    }
    for program in [
        "unshare", "mount", "ip", "postfix", "postconf", "postmap", "sendmail", "opendkim",
        "openssl",
    ] {
        if !crate::support::installed(program) {
            missing.push(program.to_owned());
        }
    }
    let python = Command::new(PYTHON)
        .args(["-c", "import dkim, aiosmtpd, yaml, authheaders, spf"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(python, Ok(s) if s.success()) {
        missing.push(format!(
            "{PYTHON} with the modules dkim, aiosmtpd, yaml, authheaders and spf"
        ));
    }
    if missing.is_empty() {
        let probe = Command::new("unshare")
            .args(NAMESPACES)
            .arg("true")
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => missing.push(format!(
                "mount/net/pid namespaces (unshare: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => missing.push(format!("mount/net/pid namespaces (unshare: {e})")),
        }
    }
    missing
}

fn examples() -> Vec<PathBuf> {
    let only = std::env::var("MAILSETUP_E2E_ONLY").unwrap_or_default();
    let only: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut specs: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("examples"))
        .expect("read examples/")
        .map(|entry| entry.expect("read examples/").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| only.is_empty() || only.iter().any(|o| p.file_stem().is_some_and(|s| s == *o)))
        .collect();
    specs.sort();
    specs
}

/// What the e2e runs must not change on the machine itself: the files apply
/// writes and the daemons it starts (all of that happens inside namespaces).
fn host_fingerprint() -> Vec<String> {
    let mut seen = Vec::new();
    for path in [
        "/etc/postfix/main.cf",
        "/etc/postfix/master.cf",
        "/etc/postfix/sasl_passwd",
        "/etc/opendkim.conf",
        "/etc/opendkim",
        "/etc/default/opendkim",
        "/etc/mailname",
        "/etc/aliases",
        "/etc/aliases.db",
        "/etc/group",
        "/etc/gshadow",
        "/etc/mailsetup",
        "/var/spool/postfix/opendkim",
        "/var/spool/postfix/maildrop",
        "/var/lib/mailsetup",
        "/var/log/postfix.log",
        "/run/opendkim",
    ] {
        let state = std::fs::symlink_metadata(path).map(|m| {
            use std::os::unix::fs::MetadataExt;
            format!(
                "len {} mtime {}.{} mode {:o}",
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.mode()
            )
        });
        seen.push(format!(
            "{path}: {}",
            state.unwrap_or_else(|e| e.kind().to_string())
        ));
    }
    // Daemons of the machine itself only: in its own PID namespace (not a
    // container's), and not descended from this test process (the namespaced
    // runs, and the short-lived `opendkim -n` checks other tests run meanwhile);
    // a daemon that escaped would have been re-parented away from us.
    let processes = processes();
    let machine = std::fs::read_link("/proc/self/ns/pid").ok();
    let on_machine = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == machine;
    let ours = |mut pid: u32| loop {
        if pid == std::process::id() {
            return true;
        }
        match processes.get(&pid) {
            Some((_, parent)) if *parent != 0 && *parent != pid => pid = *parent,
            _ => return false,
        }
    };
    let mut daemons: Vec<String> = processes
        .iter()
        .filter(|(_, (comm, _))| comm == "opendkim" || comm == "master")
        .filter(|(pid, _)| on_machine(**pid) && !ours(**pid))
        .map(|(_, (comm, _))| comm.clone())
        .collect();
    daemons.sort();
    seen.push(format!("host daemons: {daemons:?}"));
    seen
}

/// Every process on the machine: pid -> (command name, parent pid).
fn processes() -> std::collections::HashMap<u32, (String, u32)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let (head, tail) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let parent = tail.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, (comm, parent)))
        })
        .collect()
}

/// The runs for one example: one, or one per host of a fleet spec (`hosts:`),
/// each in its own namespaces as its own machine.
fn runs_for(spec: &Path) -> Vec<(PathBuf, Option<String>)> {
    // Not support::Test: the driver runs the binary; it only gets its path.
    let out = Command::new(PYTHON)
        .arg(driver())
        .arg("--mailsetup")
        .arg(env!("CARGO_BIN_EXE_mailsetup"))
        .arg("--spec")
        .arg(spec)
        .arg("--list-hosts")
        .output()
        .expect("run driver.py --list-hosts");
    assert!(
        out.status.success(),
        "driver.py --list-hosts {}: {}",
        spec.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let hosts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    if hosts.is_empty() {
        vec![(spec.to_owned(), None)]
    } else {
        hosts
            .into_iter()
            .map(|h| (spec.to_owned(), Some(h)))
            .collect()
    }
}

/// Whether a test with these prerequisites missing is skipped (said on
/// stderr); in CI (`CI=true`) a missing one fails it instead.
fn skipped(test: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return false;
    }
    let what = missing.join(", ");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: prerequisites missing in CI: {what}"
    );
    eprintln!("skipping {test}: missing {what}");
    true
}

fn driver() -> PathBuf {
    manifest_dir().join("tests/e2e/driver.py")
}

/// The outbound policy's driver (DANE, limits, Received: privacy).
fn outbound_driver() -> PathBuf {
    manifest_dir().join("tests/e2e/outbound.py")
}

struct Outcome {
    name: String,
    success: bool,
    output: String,
    seconds: f64,
    kept: Option<PathBuf>,
}

/// Run `driver` for one example in fresh namespaces; its stdout and stderr
/// go to one file so that the order of the lines is kept.
fn run_example(driver: &Path, spec: &Path, host: Option<&str>) -> Outcome {
    let mut name = spec.file_name().unwrap().to_string_lossy().into_owned();
    if let Some(host) = host {
        name.push_str(&format!(" --host {host}"));
    }
    let work = tempfile::Builder::new()
        .prefix("mailsetup-e2e-")
        .tempdir()
        .expect("create a work directory");
    let log_path = work.path().join("driver.log");
    let log = File::create(&log_path).expect("create driver.log");
    let start = Instant::now();
    // Not support::Test: the driver runs the binary inside the namespaces.
    let mut child = Command::new("unshare")
        .args(NAMESPACES)
        .arg(PYTHON)
        .arg(driver)
        .arg("--mailsetup")
        .arg(env!("CARGO_BIN_EXE_mailsetup"))
        .arg("--spec")
        .arg(spec)
        .arg("--work")
        .arg(work.path())
        .args(host.map(|h| ["--host", h]).into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone driver.log"))
        .stderr(log)
        .spawn()
        .expect("start unshare");
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the driver") {
            break Some(status);
        }
        if start.elapsed() > TIMEOUT {
            // --kill-child: the whole namespace dies with unshare.
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let mut output = std::fs::read_to_string(&log_path).unwrap_or_default();
    if timed_out {
        output.push_str(&format!(
            "FAIL driver: killed after {} s\n",
            TIMEOUT.as_secs()
        ));
    }
    let success = status.is_some_and(|s| s.success());
    let kept = (!success || std::env::var_os("MAILSETUP_E2E_KEEP").is_some()).then(|| work.keep());
    Outcome {
        name,
        success,
        output,
        seconds: start.elapsed().as_secs_f64(),
        kept,
    }
}

#[test]
fn every_example_works_with_real_postfix_and_opendkim() {
    if skipped("e2e", &missing_prerequisites()) {
        return;
    }
    let specs = examples();
    assert!(!specs.is_empty(), "no examples/*.yaml to test");
    let runs: Vec<(PathBuf, Option<String>)> = specs.iter().flat_map(|s| runs_for(s)).collect();
    let _alone = crate::support::DAEMONS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let host_before = host_fingerprint();

    // Each run has its own namespaces, ports and work directory, so runs do not
    // clash: all four examples at once on 2 cores take 16 s, one alone 15 s
    // (most of a run is waiting for the daemons).
    let parallel = 8;
    let mut outcomes = Vec::new();
    for batch in runs.chunks(parallel) {
        let handles: Vec<_> = batch
            .iter()
            .cloned()
            .map(|(spec, host)| {
                thread::spawn(move || run_example(&driver(), &spec, host.as_deref()))
            })
            .collect();
        outcomes.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("e2e runner thread")),
        );
    }

    let host_after = host_fingerprint();
    let changed: Vec<String> = host_before
        .iter()
        .zip(&host_after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("{b}  ->  {a}"))
        .collect();

    let mut failed = Vec::new();
    for o in &outcomes {
        println!(
            "===== e2e {} ({:.1} s): {}",
            o.name,
            o.seconds,
            if o.success { "ok" } else { "FAILED" }
        );
        print!("{}", o.output);
        if let Some(dir) = &o.kept {
            println!("work directory kept: {}", dir.display());
        }
        if !o.success {
            failed.push(o.name.as_str());
        }
    }
    assert!(
        changed.is_empty(),
        "the e2e runs changed the machine outside their namespaces:\n{}",
        changed.join("\n")
    );
    assert!(
        failed.is_empty(),
        "e2e failed for {}; the FAIL lines above say why",
        failed.join(", ")
    );
}

/// `examples/outbound.yaml` delivered straight to receivers found through a
/// DNSSEC-signed zone (BIND 9) by way of a validating unbound: DANE verifies
/// or defers, MTA-STS (served over HTTPS) enforces where DANE is not
/// published and never overrides it, a limited group is paced, an application server's submission
/// leaves without its address; apply refuses DANE without a validating local
/// resolver. `tests/e2e/outbound.py` lists every check.
#[test]
fn outbound_policy_holds_against_real_receivers() {
    let mut missing = missing_prerequisites();
    for program in [
        "named",
        "unbound",
        "dnssec-signzone",
        "dnssec-keygen",
        "dig",
    ] {
        if !crate::support::installed(program) {
            missing.push(program.to_owned());
        }
    }
    if skipped("the outbound e2e", &missing) {
        return;
    }
    let _alone = crate::support::DAEMONS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let o = run_example(
        &outbound_driver(),
        &manifest_dir().join("examples/outbound.yaml"),
        None,
    );
    print!("{}", o.output);
    if let Some(dir) = &o.kept {
        println!("work directory kept: {}", dir.display());
    }
    assert!(
        o.success,
        "the outbound e2e failed; the FAIL lines above say why"
    );
}

/// The same proof on Debian 13 (Postfix 3.10, unbound 1.2x, BIND 9.20,
/// postfix-mta-sts-resolver 1.4): the
/// driver runs chrooted into a Debian 13 root that has the release's own
/// packages (tests/outbound/debian.sh). This machine's release is the test above.
#[test]
fn outbound_policy_holds_on_debian_13() {
    if !crate::support::root_or_skip() || crate::support::missing_in_ci(&["mmdebstrap", "unshare"])
    {
        return;
    }
    let _alone = crate::support::DAEMONS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    crate::support::run_script(
        "tests/outbound/debian.sh",
        &[env!("CARGO_BIN_EXE_mailsetup"), "trixie"],
        " 0 failed,",
    );
}
