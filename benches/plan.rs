//! How long a plan takes as the number of domains grows.
//!
//! `cargo bench --bench plan` prints, for specs of 1 to 10,000 domains (shared
//! key and one key per domain), the median time of the whole plan pipeline
//! (parse → desired → actual → plan → text), once against an empty root and
//! once against a root already applied (the "nothing to do" case), and the
//! cost per domain, which stays flat when the cost grows linearly.

use std::path::Path;
use std::time::{Duration, Instant};

use mailsetup::desired::HostFacts;
use mailsetup::host::{Host, HostMut, ReadOnly, System};
use mailsetup::templates::Templates;
use mailsetup::{actual, desired, plan, show, spec};

fn spec_text(domains: usize, per_domain: bool) -> String {
    let mut s = String::from("host:\n  hostname: mail.example.com\ndomains:\n");
    for i in 0..domains {
        s += &format!("  d{i}.example.com:\n");
    }
    s += "dkim:\n  selector: mail\n";
    if per_domain {
        s += "  key: per-domain\n";
    }
    s += "aliases:\n  root: ops@example.net\n";
    s
}

/// One plan, end to end; returns the number of steps so nothing is optimized away.
fn plan_once(text: &str, root: &Path, templates: &Templates) -> usize {
    let spec = spec::parse(text, Path::new("bench.yaml"))
        .unwrap()
        .0
        .for_host(None)
        .unwrap();
    let system = ReadOnly::new(root).unwrap();
    let facts = HostFacts {
        key_selectors: mailsetup::keysets::key_selectors(&system).unwrap(),
        signing_selectors: Default::default(),
        relay_password: None,
        today: "2026-11-24".parse().unwrap(),
    };
    let desired = desired::desired(&spec, templates, &facts).unwrap();
    let actual = actual::read(&system, &desired).unwrap();
    let plan = plan::plan("/", desired, actual);
    show::plan_text(&plan).len() + plan.steps.len()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let templates = Templates::load(None).unwrap();
    println!(
        "{:>8} {:>12} {:>14} {:>14} {:>16}",
        "domains", "keys", "empty root", "applied root", "per domain"
    );
    for per_domain in [false, true] {
        for domains in [1, 10, 100, 1_000, 10_000] {
            let text = spec_text(domains, per_domain);
            let runs = if domains >= 1_000 { 5 } else { 20 };
            let empty = tempfile::tempdir().unwrap();
            let cold = time(runs, || {
                std::hint::black_box(plan_once(&text, empty.path(), &templates));
            });
            // An applied root: every file and key already there, so the plan is empty.
            let applied = tempfile::tempdir().unwrap();
            apply_without_commands(&text, applied.path(), &templates);
            let warm = time(runs, || {
                std::hint::black_box(plan_once(&text, applied.path(), &templates));
            });
            println!(
                "{domains:>8} {:>12} {:>12.1}ms {:>12.1}ms {:>14.1}µs",
                if per_domain { "per-domain" } else { "shared" },
                cold.as_secs_f64() * 1e3,
                warm.as_secs_f64() * 1e3,
                warm.as_secs_f64() * 1e6 / domains as f64,
            );
        }
    }
}

/// Writes the desired files and stand-in key files, so the next plan is empty
/// (real keys would make the setup dominated by RSA key generation).
fn apply_without_commands(text: &str, root: &Path, templates: &Templates) {
    let spec = spec::parse(text, Path::new("bench.yaml"))
        .unwrap()
        .0
        .for_host(None)
        .unwrap();
    let facts = HostFacts {
        key_selectors: Default::default(),
        signing_selectors: Default::default(),
        relay_password: None,
        today: "2026-11-24".parse().unwrap(),
    };
    let desired = desired::desired(&spec, templates, &facts).unwrap();
    let system = System::new(root).unwrap();
    for dir in &desired.dirs {
        std::fs::create_dir_all(system.path(&dir.path)).unwrap();
        system.set_meta(&dir.path, dir.mode, None).unwrap();
    }
    for key in &desired.keys {
        std::fs::write(system.path(&key.private_path), "stand-in").unwrap();
    }
    for file in &desired.files {
        system
            .write_file(&file.path, file.content.as_bytes(), file.mode, None)
            .unwrap();
    }
}
