//! A full disk: apply stops with a clear error, every managed file is either as
//! it was or as planned, and nothing is left behind (no staging directory, no
//! temporary file, no half-made backup). Runs on a small tmpfs, so it needs root
//! and mount; outside CI it is skipped without them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{example, path_str, tree};

/// A tmpfs mounted for the test, unmounted when dropped (even on a panic).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `file`, then frees `pages` pages of it.
fn fill_leaving(file: &Path, pages: u64) {
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(pages * 4096)).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp")
        .args(["-a", path_str(from), path_str(to)])
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a failed");
}

/// Not support::Test: a full disk may stop apply anywhere; the caller judges the status.
fn apply(spec: &Path, root: &Path) -> crate::support::Output {
    run(&["apply", path_str(spec), "--root", path_str(root)])
}

fn run(args: &[&str]) -> crate::support::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsetup"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    crate::support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A small tmpfs, or `None` (with a note) where the test cannot mount one —
/// never in CI, which runs the tests as root.
fn small_disk() -> Option<Tmpfs> {
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    if !nix::unistd::geteuid().is_root() {
        assert!(!in_ci, "CI runs the tests as root (the tmpfs needs mount)");
        eprintln!("skipping: mounting a tmpfs needs root");
        return None;
    }
    let tmpfs = Tmpfs::mount("2m");
    if tmpfs.is_none() {
        assert!(!in_ci, "mount -t tmpfs failed");
        eprintln!("skipping: mount -t tmpfs failed");
    }
    tmpfs
}

/// A temporary file or staging directory a run left behind, if any.
fn debris(tree: &std::collections::BTreeMap<PathBuf, Vec<u8>>) -> Option<String> {
    tree.keys()
        .map(|p| p.to_string_lossy().into_owned())
        .find(|name| name.contains(".mailsetup-") || name.contains("/stage"))
}

/// A full disk stops a rollback before it changes anything: every file is
/// staged before any is put back, so the managed files are all as the last
/// apply left them, or all as before it.
#[test]
fn a_full_disk_stops_rollback_before_it_changes_anything() {
    let Some(tmpfs) = small_disk() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("spec.yaml");
    let text = std::fs::read_to_string(example("guide.yaml")).unwrap();
    std::fs::write(&spec, &text).unwrap();
    let applied = work.path().join("applied");
    std::fs::create_dir(&applied).unwrap();
    assert_eq!(apply(&spec, &applied).code, 0);
    let before = tree(&applied);
    let changed = text.replace("aliases:\n", "aliases:\n  abuse: root\n  webmaster: root\n");
    std::fs::write(&spec, changed).unwrap();
    assert_eq!(apply(&spec, &applied).code, 0);
    let after = tree(&applied);
    let etc = |t: &std::collections::BTreeMap<PathBuf, Vec<u8>>| {
        t.iter()
            .filter(|(p, _)| p.starts_with("etc") && p.extension().is_none_or(|e| e != "db"))
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect::<Vec<_>>()
    };
    assert_ne!(etc(&before), etc(&after));

    let root = tmpfs.path().join("root");
    let filler = tmpfs.path().join("filler");
    for pages in 0..64 {
        let _ = std::fs::remove_file(&filler);
        copy_tree(&applied, &root);
        fill_leaving(&filler, pages);
        let out = run(&["rollback", "--root", path_str(&root)]);
        let now = tree(&root);
        if let Some(name) = debris(&now) {
            panic!("{pages} pages free: {name} left behind\n{}", out.stderr);
        }
        if out.code == 0 {
            assert_eq!(
                etc(&now),
                etc(&before),
                "{pages} pages free: not all restored"
            );
            assert!(pages > 0, "the disk was never full enough to fail");
            return;
        }
        assert!(
            out.stderr.contains("No space left on device"),
            "{pages} pages free: {}",
            out.stderr
        );
        eprintln!(
            "{pages} pages free: {}",
            out.stderr.lines().next().unwrap_or("")
        );
        // Stopped before any file changed, or after all were back (then
        // rebuilding a map database found no space): never half way.
        if out.stderr.contains("every file was put back") {
            assert_eq!(
                etc(&now),
                etc(&before),
                "{pages} pages free: not all restored"
            );
        } else {
            assert!(
                out.stderr.contains("nothing was restored"),
                "{}",
                out.stderr
            );
            assert_eq!(etc(&now), etc(&after), "{pages} pages free: half restored");
        }
    }
    panic!("rollback never succeeded with 64 pages free");
}

#[test]
fn a_full_disk_stops_apply_cleanly_at_every_point() {
    let Some(tmpfs) = small_disk() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // Before: the minimal example applied. After: more aliases and another domain,
    // so most managed files change.
    let spec = work.path().join("spec.yaml");
    let text = std::fs::read_to_string(example("minimal.yaml")).unwrap();
    std::fs::write(&spec, &text).unwrap();
    let pristine = work.path().join("pristine");
    std::fs::create_dir(&pristine).unwrap();
    assert_eq!(apply(&spec, &pristine).code, 0);
    let changed = text
        .replace("domains:\n", "domains:\n  another.example:\n")
        .replace(
            "aliases:\n",
            "aliases:\n  postmaster: root\n  abuse: root\n",
        );
    assert_ne!(changed, text);
    std::fs::write(&spec, &changed).unwrap();
    // The state a successful apply reaches, outside the tmpfs.
    let expected = work.path().join("expected");
    copy_tree(&pristine, &expected);
    let out = apply(&spec, &expected);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (before, after) = (tree(&pristine), tree(&expected));

    let root: PathBuf = tmpfs.path().join("root");
    let filler = tmpfs.path().join("filler");
    let mut failures = 0;
    let mut succeeded = false;
    for pages in 0..64 {
        let _ = std::fs::remove_file(&filler);
        copy_tree(&pristine, &root);
        fill_leaving(&filler, pages);
        let out = apply(&spec, &root);
        let now = tree(&root);
        if let Some(name) = debris(&now) {
            panic!("{pages} pages free: {name} left behind\n{}", out.stderr);
        }
        for (path, old) in &before {
            // Map databases are built by postalias, not byte-reproducible.
            if !path.starts_with("etc") || path.extension().is_some_and(|e| e == "db") {
                continue;
            }
            let have = now.get(path);
            assert!(
                have == Some(old) || have == after.get(path),
                "{pages} pages free: {} is neither old nor new\n{}",
                path.display(),
                out.stderr
            );
        }
        if out.code == 0 {
            succeeded = true;
            break;
        }
        failures += 1;
        eprintln!(
            "{pages} pages free: {}",
            out.stderr.lines().next().unwrap_or("")
        );
        assert!(
            out.stderr.contains("No space left on device"),
            "{pages} pages free: {}",
            out.stderr
        );
        if out.stderr.contains("nothing was changed") {
            for (path, old) in before.iter().filter(|(p, _)| p.starts_with("etc")) {
                assert_eq!(now.get(path), Some(old), "{}", path.display());
            }
        }
        // No backup without its manifest: every backup left can be rolled back to.
        let backups = root.join("var/lib/mailsetup/backups");
        for backup in std::fs::read_dir(&backups).into_iter().flatten() {
            let backup = backup.unwrap().path();
            assert!(
                backup.join("manifest.json").exists(),
                "{pages} pages free: half-made backup {}\n{}",
                backup.display(),
                out.stderr
            );
        }
    }
    assert!(failures > 0, "the disk was never full enough to fail");
    assert!(succeeded, "apply never succeeded with 64 pages free");
}
