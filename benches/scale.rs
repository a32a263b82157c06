//! How every command scales to 100,000 domains, and what an apply costs next to
//! `opendkim-genkey`.
//!
//! `cargo bench --bench scale` runs the built binary (release settings) on specs
//! of 1,000, 10,000 and 100,000 domains (one shared key, one alias per domain)
//! and prints, per command, the wall time, the peak memory (max RSS of the
//! process), the 100k/10k time ratio (linear is about 10) and the time at 100k
//! next to plan's. Then it compares a first apply of a one-domain spec (its key
//! included) and an apply that changes only /etc/aliases with the wall time of
//! `opendkim-genkey` alone. Last, `status` reads a busy server's day of mail
//! log — 100,000, 300,000 and 1,000,000 lines (6 a message: smtpd, cleanup,
//! OpenDKIM, qmgr, the delivery, the removal; 1 in 20 deferred, 1 in 50
//! bounced; a thousand receivers). `MAILSETUP_BENCH_MAX=10000` stops at 10,000
//! domains and 300,000 lines.
//!
//! Peak memory is measured by running each command under this benchmark's own
//! binary in `--measure` mode, which waits for it and reads its rusage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mailsetup");

fn spec_text(domains: usize) -> String {
    let mut s = String::from("host:\n  hostname: mail.example.com\ndomains:\n");
    for i in 0..domains {
        s += &format!("  d{i}.example.com:\n");
    }
    s += "dkim:\n  selector: mail\naliases:\n  root: ops@example.net\n";
    for i in 0..domains {
        s += &format!("  u{i}: ops{i}@example.net\n");
    }
    s
}

/// One run of a command: wall time and peak memory.
#[derive(Clone, Copy)]
struct Run {
    time: Duration,
    max_rss_kib: u64,
}

/// Runs `args` as a child of a `--measure` copy of this benchmark, so its max
/// RSS is the only child's.
fn measure(program: &str, args: &[&str]) -> Run {
    let me = std::env::current_exe().unwrap();
    let out = Command::new(me)
        .arg("--measure")
        .arg(program)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (Some(ns), Some(rss), Some(code)) = (parts.next(), parts.next(), parts.next()) else {
        panic!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(
        code,
        "0",
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        time: Duration::from_nanos(ns.parse().unwrap()),
        max_rss_kib: rss.parse().unwrap(),
    }
}

/// `--measure PROGRAM ARGS…`: run it, print "nanoseconds max-rss-KiB exit-code".
fn measure_child(args: &[String]) {
    let start = Instant::now();
    let out = Command::new(&args[0]).args(&args[1..]).output().unwrap();
    let time = start.elapsed();
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    println!(
        "{} {} {}",
        time.as_nanos(),
        usage.max_rss(),
        out.status.code().unwrap_or(-1)
    );
}

/// The median of `n` runs (each made by `f`), by time; memory of that run.
fn median(n: usize, mut f: impl FnMut() -> Run) -> Run {
    let mut runs: Vec<Run> = (0..n).map(|_| f()).collect();
    runs.sort_by_key(|r| r.time);
    runs[runs.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

const COMMANDS: &[&str] = &["validate", "plan", "dns", "bundle", "public-keys", "apply"];

/// Every command at `domains`, in the order of COMMANDS.
fn commands_at(domains: usize, work: &Path) -> Vec<Run> {
    let spec = work.join(format!("spec-{domains}.yaml"));
    std::fs::write(&spec, spec_text(domains)).unwrap();
    let spec = spec.to_str().unwrap();
    let applied = work.join(format!("applied-{domains}"));
    std::fs::create_dir_all(&applied).unwrap();
    let applied_str = applied.to_str().unwrap();
    // The applied root first: plan, dns, bundle and public-keys read it.
    measure(BIN, &["apply", spec, "--root", applied_str]);
    let runs = if domains >= 100_000 { 1 } else { 3 };
    let mut out = Vec::new();
    for command in COMMANDS {
        let run = median(runs, || {
            let fresh = tempfile::tempdir_in(work).unwrap();
            let f = fresh.path().to_str().unwrap();
            let bundle = format!("{f}/b.tar.gz");
            let args: Vec<&str> = match *command {
                "validate" => vec!["validate", spec],
                "plan" => vec!["plan", spec, "--root", applied_str],
                "dns" => vec!["dns", spec, "--root", applied_str, "--format", "json"],
                "bundle" => vec!["bundle", spec, "--root", applied_str, "--out", &bundle],
                "public-keys" => vec!["public-keys", spec, "--root", applied_str, "--out", f],
                "apply" => vec!["apply", spec, "--root", f],
                _ => unreachable!(),
            };
            measure(BIN, &args)
        });
        out.push(run);
    }
    out
}

fn genkey_once(dir: &Path) -> Run {
    let out = tempfile::tempdir_in(dir).unwrap();
    measure(
        "opendkim-genkey",
        &[
            "-r",
            "-b",
            "2048",
            "-h",
            "sha256",
            "-s",
            "mail",
            "-d",
            "example.com",
            "-D",
            out.path().to_str().unwrap(),
        ],
    )
}

fn versus_genkey(work: &Path) {
    let have_genkey = ["/usr/sbin", "/usr/bin"]
        .iter()
        .any(|d| Path::new(d).join("opendkim-genkey").exists());
    if !have_genkey {
        println!("\nopendkim-genkey is not installed: apt-get install opendkim-tools");
        return;
    }
    let spec = work.join("one.yaml");
    std::fs::write(&spec, spec_text(1)).unwrap();
    let spec = spec.to_str().unwrap().to_string();
    let genkey = median(9, || genkey_once(work));
    let first = median(9, || {
        let root = tempfile::tempdir_in(work).unwrap();
        measure(
            BIN,
            &["apply", &spec, "--root", root.path().to_str().unwrap()],
        )
    });
    // Apply, then change only the aliases, back and forth.
    let root: PathBuf = work.join("aliases-root");
    std::fs::create_dir_all(&root).unwrap();
    let r = root.to_str().unwrap().to_string();
    measure(BIN, &["apply", &spec, "--root", &r]);
    let mut flip = false;
    let aliases_only = median(9, || {
        flip = !flip;
        let text = spec_text(1) + if flip { "  extra: root\n" } else { "" };
        std::fs::write(&spec, text).unwrap();
        measure(BIN, &["apply", &spec, "--root", &r])
    });
    println!(
        "\n{:<44} {:>9} {:>13}",
        "median of 9", "seconds", "× genkey"
    );
    for (name, run) in [
        ("opendkim-genkey -b 2048", genkey),
        ("first apply, 1 domain, key included", first),
        ("apply changing only /etc/aliases", aliases_only),
    ] {
        println!(
            "{name:<44} {:>9.3} {:>13.2}",
            secs(run.time),
            secs(run.time) / secs(genkey.time)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure") {
        return measure_child(&args[1..]);
    }
    let max: usize = std::env::var("MAILSETUP_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sizes: Vec<usize> = [1_000, 10_000, 100_000]
        .into_iter()
        .filter(|n| *n <= max)
        .collect();
    let work = tempfile::tempdir().unwrap();
    let results: Vec<(usize, Vec<Run>)> = sizes
        .iter()
        .map(|&n| (n, commands_at(n, work.path())))
        .collect();

    println!(
        "{:<12} {:>8} {:>10} {:>10}",
        "command", "domains", "seconds", "peak MiB"
    );
    for (i, command) in COMMANDS.iter().enumerate() {
        for (n, runs) in &results {
            println!(
                "{command:<12} {n:>8} {:>10.3} {:>10.1}",
                secs(runs[i].time),
                runs[i].max_rss_kib as f64 / 1024.0
            );
        }
    }
    if let (Some((_, small)), Some((big_n, big))) = (
        results.iter().find(|(n, _)| *n == 10_000),
        results
            .iter()
            .find(|(n, _)| *n == max.min(100_000) && *n > 10_000),
    ) {
        let plan = COMMANDS.iter().position(|c| *c == "plan").unwrap();
        let apply = COMMANDS.iter().position(|c| *c == "apply").unwrap();
        println!(
            "\n{:<12} {:>12} {:>14}   (at {big_n} domains)",
            "command", "100k / 10k", "× plan's time"
        );
        for (i, command) in COMMANDS.iter().enumerate() {
            println!(
                "{command:<12} {:>12.1} {:>14.1}",
                secs(big[i].time) / secs(small[i].time),
                secs(big[i].time) / secs(big[plan].time)
            );
        }
        println!(
            "apply's peak memory: {:.1}× plan's",
            big[apply].max_rss_kib as f64 / big[plan].max_rss_kib as f64
        );
    }
    versus_genkey(work.path());
    status_log(work.path(), if max < 100_000 { 300_000 } else { 1_000_000 });
}

/// A day of a busy server's log, `lines` long, ending now (ISO timestamps,
/// as `journalctl -o short-iso-precise` and rsyslog write them).
fn day_of_log(lines: usize) -> String {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(23);
    let messages = lines / 6;
    // Spread over 23 hours, well inside the window.
    let step = jiff::SignedDuration::from_hours(23) / messages.max(1) as i32;
    let mut out = String::with_capacity(lines * 190);
    for i in 0..messages {
        let at = start + step * i as i32;
        let t = at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00");
        let id = format!("{:X}", 0x1000_0000 + i);
        let to = format!("u{i}@r{}.example", i % 1000);
        let (status, dsn, reason) = match i % 100 {
            0 | 50 => (
                "bounced",
                "5.1.1",
                "host r.example[192.0.2.7] said: 550 5.1.1 <user> unknown (in reply to RCPT TO command)",
            ),
            n if n % 20 == 1 => (
                "deferred",
                "4.7.650",
                "host r.example[192.0.2.7] said: 451 4.7.650 The mail server [198.51.100.7] has been temporarily rate limited due to IP reputation. (in reply to MAIL FROM command)",
            ),
            _ => ("sent", "2.0.0", "250 2.0.0 OK"),
        };
        out += &format!(
            "{t} mail postfix/smtpd[1001]: {id}: client=localhost[127.0.0.1]\n\
             {t} mail postfix/cleanup[1002]: {id}: message-id=<{i}@example.com>\n\
             {t} mail opendkim[143]: {id}: DKIM-Signature field added (s=mail, d=example.com)\n\
             {t} mail postfix/qmgr[1003]: {id}: from=<noreply@example.com>, size=1200, nrcpt=1 (queue active)\n\
             {t} mail postfix/smtp[1004]: {id}: to=<{to}>, relay=r.example[192.0.2.7]:25, delay=0.2, delays=0/0/0.1/0.1, dsn={dsn}, status={status} ({reason})\n\
             {t} mail postfix/qmgr[1003]: {id}: removed\n"
        );
    }
    out
}

/// `status` over growing logs: time, peak memory, lines per second.
fn status_log(work: &Path, most: usize) {
    let spec = work.join("status.yaml");
    std::fs::write(&spec, spec_text(1)).unwrap();
    let spec = spec.to_str().unwrap().to_string();
    let root = work.join("status-root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap().to_string();
    measure(BIN, &["apply", &spec, "--root", &root]);
    println!(
        "\n{:<28} {:>10} {:>10} {:>14}",
        "status --since 24h --log", "seconds", "peak MiB", "lines/s"
    );
    for lines in [100_000, 300_000, 1_000_000]
        .into_iter()
        .filter(|n| *n <= most)
    {
        let log = work.join(format!("mail-{lines}.log"));
        std::fs::write(&log, day_of_log(lines)).unwrap();
        let log = log.to_str().unwrap().to_string();
        let args = [
            "status", &spec, "--root", &root, "--log", &log, "--format", "json",
        ];
        let run = median(3, || measure(BIN, &args));
        // The figures count only if every line was read as in the window.
        let out = Command::new(BIN).args(args).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["log"]["in_window"],
            (lines / 6 * 6) as u64,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "{:<28} {:>10.3} {:>10.1} {:>14.0}",
            format!("{lines} lines"),
            secs(run.time),
            run.max_rss_kib as f64 / 1024.0,
            lines as f64 / secs(run.time)
        );
        std::fs::remove_file(&log).unwrap();
    }
}
