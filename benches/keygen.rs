//! 2048-bit DKIM key generation: `mailsetup::keys::DkimKey::generate` (pure-Rust `rsa`)
//! against `opendkim-genkey` and `openssl genrsa`, when those are installed.
//!
//! Run with `cargo bench --bench keygen`; `KEYGEN_RUNS` sets the number of runs (default 10).
//! Plain `std::time`, no harness: each run is timed once, and the table shows the median,
//! minimum and maximum in seconds, plus each tool's median relative to `rsa`'s.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailsetup::keys::DkimKey;

const BITS: usize = 2048;

struct Row {
    name: String,
    times: Vec<Duration>,
}

impl Row {
    fn sorted_secs(&self) -> Vec<f64> {
        let mut s: Vec<f64> = self.times.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        s
    }
    fn median(&self) -> f64 {
        let s = self.sorted_secs();
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }
    fn min(&self) -> f64 {
        self.sorted_secs()[0]
    }
    fn max(&self) -> f64 {
        *self.sorted_secs().last().unwrap()
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Time `runs` runs of `f`, which must panic on failure so a broken run is not timed as fast.
fn time_runs(name: &str, runs: usize, mut f: impl FnMut(usize)) -> Row {
    eprint!("{name}: ");
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        f(i);
        times.push(start.elapsed());
        eprint!(".");
    }
    eprintln!();
    Row {
        name: name.to_string(),
        times,
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

fn main() {
    let runs: usize = match std::env::var("KEYGEN_RUNS") {
        Ok(v) => match v.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("KEYGEN_RUNS must be a positive integer, got {v:?}");
                std::process::exit(2);
            }
        },
        Err(_) => 10,
    };
    // cargo passes `--bench` (and any filter) to harness = false benches; nothing to parse.
    if cfg!(debug_assertions) {
        eprintln!("warning: not an optimised build; use `cargo bench --bench keygen`");
    }
    println!("{BITS}-bit RSA key generation, {runs} runs each");

    let mut rows = Vec::new();

    rows.push(time_runs("mailsetup (rsa crate)", runs, |_| {
        let key = DkimKey::generate(BITS).expect("DkimKey::generate");
        assert_eq!(key.public().bits(), BITS);
        std::hint::black_box(key);
    }));

    let tmp = tempfile::tempdir().expect("temporary directory");

    match find_tool("opendkim-genkey") {
        Some(genkey) => rows.push(time_runs("opendkim-genkey", runs, |i| {
            let dir = tmp.path().join(format!("genkey-{i}"));
            std::fs::create_dir(&dir).expect("mkdir");
            run_ok(
                Command::new(&genkey)
                    .args(["-r", "-b", &BITS.to_string(), "-h", "sha256"])
                    .args(["-s", "bench", "-d", "example.com", "-D"])
                    .arg(&dir),
                "opendkim-genkey",
            );
            assert!(dir.join("bench.private").is_file() && dir.join("bench.txt").is_file());
        })),
        None => println!("(opendkim-genkey not found: skipped)"),
    }

    match find_tool("openssl") {
        Some(openssl) => rows.push(time_runs("openssl genrsa", runs, |i| {
            let out = tmp.path().join(format!("openssl-{i}.pem"));
            run_ok(
                Command::new(&openssl)
                    .arg("genrsa")
                    .arg("-out")
                    .arg(&out)
                    .arg(BITS.to_string()),
                "openssl genrsa",
            );
            assert!(out.is_file());
        })),
        None => println!("(openssl not found: skipped)"),
    }

    let base = rows[0].median();
    println!();
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>12}",
        "generator", "median s", "min s", "max s", "median/rsa"
    );
    for row in &rows {
        println!(
            "{:<24} {:>10.3} {:>10.3} {:>10.3} {:>11.2}x",
            row.name,
            row.median(),
            row.min(),
            row.max(),
            row.median() / base
        );
    }
}
