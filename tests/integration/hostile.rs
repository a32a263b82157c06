//! What root reads and writes, tried as an attacker would: a user who owns a
//! directory on the way or can plant files (symlinks, FIFOs, hard links, huge
//! files), a template override that would print the relay password, debris a
//! killed run left. Each is refused with the reason — or removed — and nothing
//! is written outside the tree or beside what was asked.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{
    RELAY_PASSWORD, Test, assert_unchanged, example, path_str, root, snapshot, tree,
};

/// A public key for allowed_signers lines that need not sign anything.
const SIGNER: &str =
    "ci@example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

fn apply(spec: &str, root: &Path) -> Test {
    Test::new().args(&["apply", spec, "--root", path_str(root)])
}

/// A file of `len` bytes that takes no space (sparse), mode `mode`.
fn huge(path: &Path, len: u64, mode: u32) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A `.db` planted beside a table, as a symlink to a file elsewhere: the map
/// tool would write the table (the relay password's) through it. Refused
/// before any file changes, and the target is untouched.
#[test]
fn planted_map_databases_are_refused_before_anything_is_written() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    for (spec, db) in [
        ("minimal.yaml", "etc/aliases.db"),
        ("smarthost.yaml", "etc/postfix/sasl_passwd.db"),
    ] {
        let host = root();
        std::fs::create_dir_all(host.path().join("etc/postfix")).unwrap();
        std::os::unix::fs::symlink(&victim, host.path().join(db)).unwrap();
        let before = snapshot(&host.path().join("etc"));
        let name = db.rsplit('/').next().unwrap();
        apply(&example(spec), host.path())
            .status(1)
            .stderr_has(format!("{name} is a symlink"))
            .stderr_has("nothing was changed")
            .run();
        let after = snapshot(&host.path().join("etc"));
        assert_unchanged(&before, &after, "a refused apply wrote");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
    // Another user's database is refused too (chown needs root).
    if nix::unistd::geteuid().is_root() {
        let host = root();
        apply(&example("minimal.yaml"), host.path()).run();
        let db = host.path().join("etc/aliases.db");
        nix::unistd::chown(&db, Some(nix::unistd::Uid::from_raw(12345)), None).unwrap();
        let spec = outside.path().join("more.yaml");
        std::fs::write(
            &spec,
            std::fs::read_to_string(example("minimal.yaml")).unwrap() + "  abuse: root\n",
        )
        .unwrap();
        apply(path_str(&spec), host.path())
            .status(1)
            .stderr_has("aliases.db belongs to uid 12345, not root")
            .run();
    }
}

/// The signature beside a bundle is read first and must be a small plain
/// file: a FIFO is refused at once (it hung apply before), a 200 MB one and a
/// 1 GiB bundle are refused by their size, unread.
#[test]
fn fifo_and_huge_signatures_and_bundles_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar.gz");
    Test::new()
        .args(&[
            "bundle",
            &example("minimal.yaml"),
            "--out",
            path_str(&bundle),
        ])
        .run();
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, format!("{SIGNER}\n")).unwrap();
    let sig = dir.path().join("b.tar.gz.sig");
    let host = root();
    let apply_signed = || {
        Test::new()
            .args(&["apply", "--bundle", path_str(&bundle)])
            .args(&["--root", path_str(host.path())])
            .args(&["--allowed-signers", path_str(&signers)])
            .status(1)
    };
    nix::unistd::mkfifo(&sig, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    apply_signed().stderr_has("not a regular file").run();
    std::fs::remove_file(&sig).unwrap();
    huge(&sig, 200 << 20, 0o644);
    apply_signed().stderr_has("more than the 65536 bytes").run();
    std::fs::remove_file(&sig).unwrap();
    std::os::unix::fs::symlink(&signers, &sig).unwrap();
    apply_signed().stderr_has("b.tar.gz.sig is a symlink").run();

    huge(&bundle, 1 << 30, 0o644);
    Test::new()
        .args(&["apply", "--bundle", path_str(&bundle)])
        .args(&["--root", path_str(host.path())])
        .status(1)
        .stderr_has("more than the 268435456 bytes")
        .run();
}

/// A secret file of a gigabyte (a wrong path, or a planted one) is refused
/// by its size, not read into memory.
#[test]
fn secrets_of_a_gigabyte_are_refused_unread() {
    let host = root();
    huge(
        &host.path().join("etc/mailsetup/relay-password"),
        1 << 30,
        0o600,
    );
    Test::new()
        .args(&[
            "plan",
            &example("smarthost.yaml"),
            "--root",
            path_str(host.path()),
        ])
        .status(1)
        .stderr_has("more than the 65536 bytes")
        .run();
}

/// Template overrides are read beneath their directory: a symlink there (to
/// a file someone else controls) is refused, not followed.
#[test]
fn symlinked_templates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    let elsewhere = dir.path().join("elsewhere.tera");
    std::fs::write(&elsewhere, "{{ host.hostname }}\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, templates.join("mailname.tera")).unwrap();
    let host = root();
    Test::new()
        .args(&[
            "plan",
            &example("minimal.yaml"),
            "--root",
            path_str(host.path()),
        ])
        .args(&["--templates", path_str(&templates)])
        .status(1)
        .stderr_has("mailname.tera is not a plain file")
        .run();
}

/// Output directories are written beneath their handle: a symlink planted as
/// a key set's directory in a public-keys export, or as a zone file of the
/// octoDNS export, is refused or replaced — never written through.
#[test]
fn outputs_are_made_beneath_their_directory() {
    let host = root();
    apply(&example("minimal.yaml"), host.path()).run();
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    std::os::unix::fs::symlink(outside.path(), export.join("shared")).unwrap();
    Test::new()
        .args(&["public-keys", &example("minimal.yaml")])
        .args(&["--root", path_str(host.path()), "--out", path_str(&export)])
        .status(1)
        .stderr_has("shared is a symlink")
        .run();
    assert!(tree(outside.path()).is_empty(), "wrote through the symlink");

    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let victim = outside.path().join("victim.yaml");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, zones.join("example.com.yaml")).unwrap();
    Test::new()
        .args(&[
            "dns",
            &example("minimal.yaml"),
            "--root",
            path_str(host.path()),
        ])
        .args(&["--format", "octodns", "--out", path_str(&zones)])
        .run();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let written = zones.join("example.com.yaml");
    assert!(written.symlink_metadata().unwrap().is_file());
}

/// The apply lock is opened without following a symlink planted in its place.
#[test]
fn the_lock_file_is_not_followed() {
    let host = root();
    apply(&example("minimal.yaml"), host.path()).run();
    let outside = tempfile::tempdir().unwrap();
    let lock = host.path().join("var/lib/mailsetup/lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(outside.path().join("made"), &lock).unwrap();
    Test::new()
        .args(&["rollback", "--root", path_str(host.path())])
        .status(1)
        .stderr_has("lock is a symlink")
        .run();
    assert!(!outside.path().join("made").exists());
}

/// `allowed_signers` decides what root applies, so it is read only when no
/// one else could have written it, as sshd's StrictModes: a world-writable
/// file, another user's, a symlink, or a group-writable directory on the way
/// is refused with the reason.
#[test]
fn allowed_signers_are_taken_only_when_no_one_else_can_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar.gz");
    Test::new()
        .args(&[
            "bundle",
            &example("minimal.yaml"),
            "--out",
            path_str(&bundle),
        ])
        .run();
    let host = root();
    let try_with = |signers: &Path, why: &str| {
        Test::new()
            .args(&["apply", "--bundle", path_str(&bundle)])
            .args(&["--root", path_str(host.path())])
            .args(&["--allowed-signers", path_str(signers)])
            .status(1)
            .stderr_has(why)
            .run();
    };
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, format!("{SIGNER}\n")).unwrap();
    std::fs::set_permissions(&signers, std::fs::Permissions::from_mode(0o666)).unwrap();
    try_with(&signers, "is writable by others (uid");
    std::fs::set_permissions(&signers, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Signed or not, a sound file lets the check go on (to the missing signature).
    try_with(&signers, "not signed");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&signers, &link).unwrap();
    try_with(&link, "link is a symlink");

    let open_dir = dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(&signers, open_dir.join("allowed_signers")).unwrap();
    try_with(
        &open_dir.join("allowed_signers"),
        "open is writable by others",
    );

    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&signers, Some(nix::unistd::Uid::from_raw(12345)), None).unwrap();
        try_with(&signers, "is another user's (uid 12345");
        // The host's own file, under the root, the same way.
        nix::unistd::chown(&signers, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        let on_host = host.path().join("etc/mailsetup/allowed_signers");
        std::fs::copy(&signers, &on_host).unwrap();
        std::fs::set_permissions(&on_host, std::fs::Permissions::from_mode(0o664)).unwrap();
        Test::new()
            .args(&["apply", "--bundle", path_str(&bundle)])
            .args(&["--root", path_str(host.path())])
            .status(1)
            .stderr_has("allowed_signers is refused")
            .run();
    }
}

/// A template override of the credentials file that fails with the relay
/// password in its message (`throw`, a failing `get`): the error names the
/// template and the failing call, never the password — in plan, apply and a
/// bundle applied on the host.
#[test]
fn credentials_never_appear_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (n, template) in [
        "{{ throw(message=\"pw=\" ~ sasl.password) }}\n",
        "{{ sasl | get(key=sasl.password) }}\n",
    ]
    .iter()
    .enumerate()
    {
        let templates = dir.path().join(format!("t{n}"));
        std::fs::create_dir(&templates).unwrap();
        // Only on the host, where the password is known (CI renders it empty).
        std::fs::write(
            templates.join("sasl_passwd.tera"),
            format!("{{% if sasl.password != \"\" %}}{template}{{% endif %}}"),
        )
        .unwrap();
        let host = root();
        let h = path_str(host.path());
        let t = path_str(&templates);
        let spec = example("smarthost.yaml");
        let failed = |cmd: Test| {
            let out = cmd
                .status(1)
                .stderr_has("sasl_passwd.tera")
                .stderr_has("is not shown")
                .run();
            assert!(
                !format!("{}{}", out.stdout, out.stderr).contains(RELAY_PASSWORD),
                "the password in the output: {}",
                out.stderr
            );
        };
        failed(Test::new().args(&["plan", &spec, "--root", h, "--templates", t]));
        failed(Test::new().args(&["apply", &spec, "--root", h, "--templates", t]));
        let bundle = dir.path().join(format!("b{n}.tar.gz"));
        Test::new()
            .args(&[
                "bundle",
                &spec,
                "--templates",
                t,
                "--out",
                path_str(&bundle),
            ])
            .run();
        failed(Test::new().args(&["apply", "--bundle", path_str(&bundle), "--root", h]));
    }
}

/// What a killed apply left — a temporary file beside a managed file, a half
/// made key in the key directory, a staging directory — is removed by the
/// next apply, under the lock.
#[test]
fn debris_of_a_killed_apply_is_removed() {
    let host = root();
    let h = host.path();
    for dir in [
        "etc/postfix",
        "etc/opendkim/keys/shared",
        "var/lib/mailsetup/stage-1",
    ] {
        std::fs::create_dir_all(h.join(dir)).unwrap();
    }
    let state = h.join("var/lib/mailsetup");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let debris = [
        "etc/.mailname.mailsetup-new-0123456789abcdef",
        "etc/postfix/.main.cf.mailsetup-new-0123456789abcdef",
        "etc/opendkim/keys/shared/.20261124.private.mailsetup-new-0123456789abcdef",
        "var/lib/mailsetup/.20261124.private.mailsetup-new-0123456789abcdef",
        "var/lib/mailsetup/stage-1/main.cf",
    ];
    for file in debris {
        std::fs::write(h.join(file), "half").unwrap();
    }
    apply(&example("minimal.yaml"), h).run();
    for file in debris {
        assert!(!h.join(file).exists(), "{file} survived the apply");
    }
    assert!(!h.join("var/lib/mailsetup/stage-1").exists());
}

/// A managed file given other names (a hard link planted by the owner of
/// its directory, opendkim's /etc/opendkim, to a root file they want root to
/// give away when it fixes the owner and mode): refused, left as it is.
#[test]
fn hard_linked_files_are_not_given_away() {
    let host = root();
    let h = host.path();
    apply(&example("minimal.yaml"), h).run();
    let table = h.join("etc/opendkim/TrustedHosts");
    let victim = h.join("victim");
    std::fs::copy(&table, &victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::remove_file(&table).unwrap();
    std::fs::hard_link(&victim, &table).unwrap();
    apply(&example("minimal.yaml"), h)
        .status(1)
        .stderr_has("hard links")
        .run();
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}
