//! The time-of-check/time-of-use race, run for real: while mailsetup applies,
//! rotates and rolls back, another thread swaps each directory on the way
//! that a user other than root could own (opendkim's key directories, and
//! the configuration directories above them) for a symlink to a copy of it
//! outside the tree — atomically (`renameat2(RENAME_EXCHANGE)`), thousands of
//! times. mailsetup may fail (it meets a symlink) or succeed (it missed the
//! swap), but nothing it writes may land outside: the copies stay byte for
//! byte as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::support::{path_str, root, snapshot};

/// 1024-bit keys, so each run is quick and the race gets many of them.
const SPEC: &str = "host:
  hostname: mail.example.com
domains:
  example.com:
dkim:
  selector: \"{date}\"
  bits: 1024
aliases:
  root: ops@example.net
";

/// Directories on the way that another account could own, innermost last.
const SWAPPED: &[&str] = &[
    "etc",
    "etc/postfix",
    "etc/opendkim",
    "etc/opendkim/keys",
    "etc/opendkim/keys/shared",
    "var/spool/postfix/opendkim",
];

fn run(args: &[&str], day: &str) -> i32 {
    let epoch = format!("{day}T12:00:00Z")
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    std::process::Command::new(env!("CARGO_BIN_EXE_mailsetup"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

#[test]
fn swapping_directories_for_symlinks_never_leads_a_write_outside() {
    let host = root();
    let r = path_str(host.path()).to_string();
    let spec = host.path().join("mailsetup.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let s = path_str(&spec).to_string();
    assert_eq!(run(&["apply", &s, "--root", &r], "2026-11-24"), 0);

    // For each directory: a copy outside, and a symlink to it beside the
    // real one, to swap with it.
    let outside = tempfile::tempdir().unwrap();
    let mut pairs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (i, dir) in SWAPPED.iter().enumerate() {
        let real = host.path().join(dir);
        let copy = outside.path().join(i.to_string());
        copy_tree(&real, &copy);
        let link = host.path().join(format!("{dir}.swap"));
        std::os::unix::fs::symlink(&copy, &link).unwrap();
        pairs.push((real, link));
    }
    let before = snapshot(outside.path());

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, swaps, pairs) = (stop.clone(), swaps.clone(), pairs.clone());
        std::thread::spawn(move || {
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (real, link) = &pairs[turn % pairs.len()];
                // Swapped in for a moment, then out for a while that varies:
                // runs get far enough to be between a check and a use.
                let pause = [50, 50, 300, 1000][turn % 4];
                for wait in [50, pause] {
                    if renameat2(AT_FDCWD, real, AT_FDCWD, link, RenameFlags::RENAME_EXCHANGE)
                        .is_ok()
                    {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_micros(wait));
                }
                turn += 1;
            }
        })
    };

    // Each round writes everywhere: a key staged (key file, record, state,
    // backup), the spec applied again with another alias, and both rolled back.
    let (mut ok, mut refused) = (0, 0);
    for round in 0..40 {
        let alias = format!("{SPEC}  u{round}: ops@example.net\n");
        std::fs::write(&spec, alias).unwrap();
        for args in [
            vec!["rotate", "start", &s, "--root", &r],
            vec!["apply", &s, "--root", &r],
            vec!["rollback", "--root", &r],
            vec!["rollback", "--root", &r],
        ] {
            match run(&args, "2026-12-01") {
                0 => ok += 1,
                _ => refused += 1,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();
    // Put every real directory back where it belongs.
    for (real, link) in pairs.iter().rev() {
        if real.symlink_metadata().unwrap().file_type().is_symlink() {
            renameat2(AT_FDCWD, real, AT_FDCWD, link, RenameFlags::RENAME_EXCHANGE).unwrap();
        }
    }

    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!("{swaps} swaps; {ok} runs went through, {refused} met a symlink and stopped");
    assert!(swaps > 1000, "only {swaps} swaps: the race was not run");
    assert!(refused > 0, "no run ever met a swapped directory");
    crate::support::assert_unchanged(
        &before,
        &snapshot(outside.path()),
        "mailsetup wrote outside the tree, through a swapped directory",
    );
}
