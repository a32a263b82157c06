//! The trust boundary, tried as an attacker who can write a saved plan or a
//! bundle would: every hostile input is refused with nothing written, modes and
//! owners come from the managed-file table, no credential (nor a digest of one)
//! reaches any output, and signed bundles interoperate with OpenSSH.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    RELAY_PASSWORD, Test, apply_bundle_to_a_new_root, assert_unchanged, example, members,
    missing_in_ci, path_str, root, snapshot, write_password,
};

fn sha256(data: &[u8]) -> String {
    mailsetup::plan::sha256_hex(data)
}

/// A directory holding a root (`DIR/root`, with the relay password file) and a
/// saved plan of the smart-host example for it (`DIR/plan.json`).
fn saved_plan() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("root");
    std::fs::create_dir_all(host.join("etc/mailsetup")).unwrap();
    write_password(&host.join("etc/mailsetup/relay-password"), RELAY_PASSWORD);
    let plan = dir.path().join("plan.json");
    Test::new()
        .args(&[
            "plan",
            &example("smarthost.yaml"),
            "--root",
            path_str(&host),
            "--out",
            path_str(&plan),
        ])
        .run();
    (dir, host, plan)
}

/// Applies `plan` into `host` expecting a refusal that mentions `why`, and
/// checks that nothing changed in the directory holding both (so neither
/// inside nor beside the root).
fn refused_plan(host: &Path, plan: &Path, why: &str) {
    let outer = host.parent().unwrap();
    let before = snapshot(outer);
    Test::new()
        .args(&["apply", "--plan", path_str(plan), "--root", path_str(host)])
        .status(1)
        .stderr_has(why)
        .run();
    assert_unchanged(&before, &snapshot(outer), "a refused plan wrote files");
}

/// Edits the saved plan's JSON in place.
fn edit(plan: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plan).unwrap()).unwrap();
    change(&mut value);
    std::fs::write(plan, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

fn step_of<'a>(value: &'a mut serde_json::Value, path: &str) -> &'a mut serde_json::Value {
    value["plan"]["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["path"] == path)
        .unwrap()
}

#[test]
fn hand_edited_saved_plans_are_refused_and_write_nothing() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "/etc/cron.d/evil",
            Box::new(|v| {
                let step = step_of(v, "/etc/aliases");
                step["path"] = "/etc/cron.d/evil".into();
                step["content"] = "* * * * * root touch /pwned\n".into();
            }),
        ),
        (
            "/../ESCAPED",
            Box::new(|v| step_of(v, "/etc/aliases")["path"] = "/../ESCAPED".into()),
        ),
        (
            "/etc/postfix/main.cf",
            Box::new(|v| step_of(v, "/etc/postfix/main.cf")["mode"] = "0777".into()),
        ),
        (
            "/etc/postfix/master.cf",
            Box::new(|v| {
                let step = step_of(v, "/etc/postfix/master.cf");
                step["content"] = "pwn unix - n n - - pipe argv=/bin/sh -c id\n".into();
            }),
        ),
        (
            "opendkim",
            Box::new(|v| {
                let step = step_of(v, "/etc/opendkim");
                step["owner"] = serde_json::json!({"user": "root", "group": "root"});
            }),
        ),
        (
            "step",
            Box::new(|v| {
                let steps = v["plan"]["steps"].as_array_mut().unwrap();
                steps.push(serde_json::json!({"step": "add-to-group", "user": "www-data", "group": "root"}));
            }),
        ),
        (
            "generate DKIM key",
            Box::new(|v| {
                let steps = v["plan"]["steps"].as_array_mut().unwrap();
                let key = steps
                    .iter_mut()
                    .find(|s| s["step"] == "generate-key")
                    .unwrap();
                key["private_path"] = "/etc/cron.d/x.private".into();
            }),
        ),
    ];
    for (why, change) in cases {
        let (_dir, host, plan) = saved_plan();
        edit(&plan, change);
        refused_plan(&host, &plan, why);
    }
}

#[test]
fn a_saved_plan_cannot_widen_what_its_spec_allows() {
    // The spec inside a saved plan is a spec like any other: checked as strictly.
    let (_dir, host, plan) = saved_plan();
    edit(&plan, |v| {
        let text = v["source"]["spec_text"].as_str().unwrap().replace(
            "hostname: app1.example.com",
            "hostname: \"app1.example.com\\nmynetworks = 0.0.0.0/0\"",
        );
        assert!(text.contains("mynetworks"));
        v["source"]["spec_text"] = text.into();
    });
    refused_plan(&host, &plan, "the spec saved in it");
    // Template overrides in a saved plan change content, which the steps then
    // no longer match.
    let (_dir, host, plan) = saved_plan();
    edit(&plan, |v| {
        v["source"]["templates"] =
            serde_json::json!([["master.cf.tera", "pwn unix - n n - - pipe argv=/bin/id\n"]]);
    });
    refused_plan(&host, &plan, "master.cf");
}

#[test]
fn no_credential_nor_its_digest_in_any_output() {
    let host = root();
    let h = path_str(host.path());
    let dir = tempfile::tempdir().unwrap();
    let spec = example("smarthost.yaml");
    let plan_file = dir.path().join("plan.json");
    let text = Test::new()
        .args(&["plan", &spec, "--root", h, "--out", path_str(&plan_file)])
        .run();
    let json = Test::new()
        .args(&["plan", &spec, "--root", h, "--format", "json"])
        .run();
    Test::new().args(&["apply", &spec, "--root", h]).run();
    let sasl = std::fs::read(host.path().join("etc/postfix/sasl_passwd")).unwrap();
    assert!(String::from_utf8_lossy(&sasl).contains(RELAY_PASSWORD));
    let secrets = [RELAY_PASSWORD.to_string(), sha256(&sasl)];

    // A changed password: the plan says so without showing either.
    std::fs::write(
        host.path().join("etc/mailsetup/relay-password"),
        "another-password\n",
    )
    .unwrap();
    let changed = Test::new()
        .args(&["plan", &spec, "--root", h])
        .stdout_has("update /etc/postfix/sasl_passwd")
        .stdout_has("credentials changed")
        .run();
    let changed_json = Test::new()
        .args(&["plan", &spec, "--root", h, "--format", "json"])
        .run();
    let bundle = dir.path().join("b.tar.gz");
    Test::new()
        .args(&["bundle", &spec, "--out", path_str(&bundle)])
        .run();
    let mut bundle_text = Vec::new();
    flate2::read::GzDecoder::new(&std::fs::read(&bundle).unwrap()[..])
        .read_to_end(&mut bundle_text)
        .unwrap();
    let applied = std::fs::read(host.path().join("var/lib/mailsetup/applied.json")).unwrap();

    let outputs = [
        ("plan", text.stdout + &text.stderr),
        ("plan --format json", json.stdout),
        ("saved plan", std::fs::read_to_string(&plan_file).unwrap()),
        ("plan after a change", changed.stdout),
        ("json after a change", changed_json.stdout.clone()),
        ("bundle", String::from_utf8_lossy(&bundle_text).into_owned()),
        (
            "applied.json",
            String::from_utf8_lossy(&applied).into_owned(),
        ),
    ];
    for (what, output) in &outputs {
        for secret in &secrets {
            assert!(!output.contains(secret.as_str()), "{what} holds {secret}");
        }
        assert!(
            !output.contains("another-password"),
            "{what} holds the password"
        );
    }
    let value: serde_json::Value = serde_json::from_str(&changed_json.stdout).unwrap();
    let step = value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "/etc/postfix/sasl_passwd")
        .unwrap();
    assert!(step["old_sha256"].is_null() && step["new_sha256"].is_null());
    // The applied record still tells a hand edit of the file from mailsetup's own.
    std::fs::write(
        host.path().join("etc/mailsetup/relay-password"),
        format!("{RELAY_PASSWORD}\n"),
    )
    .unwrap();
    Test::new()
        .args(&["plan", &spec, "--root", h])
        .stdout_lacks("edited by hand")
        .run();
    std::fs::write(host.path().join("etc/postfix/sasl_passwd"), "edited\n").unwrap();
    Test::new()
        .args(&["plan", &spec, "--root", h])
        .stdout_has("/etc/postfix/sasl_passwd was edited by hand")
        .run();
}

#[test]
fn a_symlinked_directory_in_the_tree_is_never_written_through() {
    let host = root();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), host.path().join("etc/opendkim")).unwrap();
    Test::new()
        .args(&[
            "apply",
            &example("minimal.yaml"),
            "--root",
            path_str(host.path()),
        ])
        .status(1)
        .stderr_has("symlink")
        .run();
    assert!(
        snapshot(elsewhere.path()).is_empty(),
        "wrote through the symlink"
    );
    assert!(!host.path().join("etc/postfix/main.cf").exists());
}

// --- bundles -------------------------------------------------------------

/// Writes a bundle from members, each with a header made by `kind` (the way an
/// attacker would, with any entry type).
fn forge(members: &[(String, Vec<u8>, tar::EntryType)], out: &Path) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data, kind) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Regular {
            header.set_size(data.len() as u64);
        } else {
            header.set_size(0);
            header.set_link_name("/etc/shadow").unwrap();
        }
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        let body: &[u8] = if *kind == tar::EntryType::Regular {
            data
        } else {
            &[]
        };
        tar.append(&header, body).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// The members with a consistent manifest: what someone able to change members
/// (but not the signing key) can produce.
fn with_manifest(mut members: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut manifest: serde_json::Value = serde_json::from_slice(&members[0].1).unwrap();
    let mut listed = Vec::new();
    for (name, data) in &members[1..] {
        listed.push(serde_json::json!({"name": name, "sha256": sha256(data)}));
        if let Some(path) = name.strip_prefix("files")
            && let Some(file) = manifest["files"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|f| f["path"] == path)
        {
            file["sha256"] = sha256(data).into();
        }
    }
    manifest["members"] = listed.into();
    members[0].1 = serde_json::to_vec(&manifest).unwrap();
    members
}

fn regular(members: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>, tar::EntryType)> {
    members
        .into_iter()
        .map(|(n, d)| (n, d, tar::EntryType::Regular))
        .collect()
}

fn refused_bundle(bundle: &Path, why: &str) {
    let out = apply_bundle_to_a_new_root(bundle, &[], 1);
    assert!(
        out.stderr.contains(why),
        "expected {why:?}:\n{}",
        out.stderr
    );
}

#[test]
fn hostile_bundles_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tar.gz");
    Test::new()
        .args(&["bundle", &example("minimal.yaml"), "--out", path_str(&good)])
        .run();
    let original = members(&good);
    let bad = dir.path().join("bad.tar.gz");

    // Content changed with its checksums fixed up: the host's own render differs.
    let mut changed = original.clone();
    let master = changed
        .iter_mut()
        .find(|(n, _)| n == "files/etc/postfix/master.cf")
        .unwrap();
    master.1 = b"pwn unix - n n - - pipe argv=/bin/sh -c id\n".to_vec();
    forge(&regular(with_manifest(changed)), &bad);
    refused_bundle(&bad, "not what its spec renders");

    // A manifest asking for a world-writable main.cf, consistent with itself.
    let mut loose = original.clone();
    let mut manifest: serde_json::Value = serde_json::from_slice(&loose[0].1).unwrap();
    for file in manifest["files"].as_array_mut().unwrap() {
        file["mode"] = "0777".into();
        file["owner"] = serde_json::json!({"user": "nobody", "group": "nogroup"});
    }
    loose[0].1 = serde_json::to_vec(&manifest).unwrap();
    forge(&regular(loose), &bad);
    let host = root();
    Test::new()
        .args(&[
            "apply",
            "--bundle",
            path_str(&bad),
            "--root",
            path_str(host.path()),
        ])
        .run();
    let mode = std::fs::metadata(host.path().join("etc/postfix/main.cf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "a bundle chose a mode");

    // Links and devices in place of a file.
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Link,
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let mut forged = regular(original.clone());
        let at = forged
            .iter()
            .position(|(n, _, _)| n == "files/etc/aliases")
            .unwrap();
        forged[at].2 = kind;
        forge(&forged, &bad);
        refused_bundle(&bad, "not a plain file");
    }

    // Absolute and climbing names.
    for name in ["/etc/passwd", "files/../../etc/passwd", "./manifest.json"] {
        let mut forged = original.clone();
        forged.push((name.to_string(), b"x".to_vec()));
        forge(&regular(forged), &bad);
        refused_bundle(&bad, "plain relative name");
    }

    // The same member twice.
    let mut twice = original.clone();
    let aliases = twice
        .iter()
        .find(|(n, _)| n == "files/etc/aliases")
        .unwrap()
        .clone();
    twice.push(aliases);
    forge(&regular(twice), &bad);
    refused_bundle(&bad, "appears twice");

    // A member the manifest does not list.
    let mut unlisted = original.clone();
    unlisted.push(("dns/extra.txt".into(), b"x".to_vec()));
    forge(&regular(unlisted), &bad);
    refused_bundle(&bad, "not listed in the manifest");

    // A key placed somewhere its spec does not use, listed consistently.
    let mut key = original.clone();
    key.push((
        "keys/etc/opendkim/keys/shared/other.private".into(),
        b"-----BEGIN PRIVATE KEY-----\n".to_vec(),
    ));
    forge(&regular(with_manifest(key)), &bad);
    refused_bundle(&bad, "which its spec does not use");

    // Gzip bombs: small files that inflate past any real bundle, as one member
    // or as many.
    let bomb = dir.path().join("bomb.tar.gz");
    for (count, size) in [(1u64, 256u64 << 20), (6, 60 << 20)] {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&bomb).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for i in 0..count {
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            tar.append_data(
                &mut header,
                format!("dns/{i}"),
                std::io::repeat(0).take(size),
            )
            .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        assert!(std::fs::metadata(&bomb).unwrap().len() < 2 << 20);
        refused_bundle(&bomb, "inflates");
    }
}

// --- signatures ------------------------------------------------------------

fn ssh_keygen(args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args);
    if let Some(file) = stdin {
        cmd.stdin(std::fs::File::open(file).unwrap());
    }
    cmd.output().expect("run ssh-keygen")
}

/// A new key pair of `kind` in `dir` and an allowed_signers line for it.
fn key(dir: &Path, kind: &str, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let mut args = vec!["-q", "-t", kind, "-N", "", "-C", name, "-f", path_str(&key)];
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    assert!(ssh_keygen(&args, None).status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, format!("{name}@ci {}", public.trim()))
}

fn apply_signed(bundle: &Path, signers: &Path, expect: i32) -> crate::support::Output {
    apply_bundle_to_a_new_root(bundle, &["--allowed-signers", path_str(signers)], expect)
}

#[test]
fn signatures_interoperate_with_ssh_keygen_both_ways() {
    if missing_in_ci(&["ssh-keygen"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for kind in ["ed25519", "rsa"] {
        let (key, line) = key(dir.path(), kind, kind);
        let signers = dir.path().join(format!("{kind}.allowed"));
        std::fs::write(&signers, format!("{line}\n")).unwrap();
        let bundle = dir.path().join(format!("{kind}.tar.gz"));
        Test::new()
            .args(&[
                "bundle",
                &example("minimal.yaml"),
                "--out",
                path_str(&bundle),
                "--sign",
                path_str(&key),
            ])
            .run();
        let ours = std::fs::read(dir.path().join(format!("{kind}.tar.gz.sig"))).unwrap();

        // ssh-keygen makes the same bytes and accepts ours.
        let theirs_dir = tempfile::tempdir().unwrap();
        let copy = theirs_dir.path().join("b.tar.gz");
        std::fs::copy(&bundle, &copy).unwrap();
        let signed = ssh_keygen(
            &[
                "-Y",
                "sign",
                "-f",
                path_str(&key),
                "-n",
                "mailsetup-bundle",
                path_str(&copy),
            ],
            None,
        );
        assert!(signed.status.success(), "{signed:?}");
        let theirs = std::fs::read(theirs_dir.path().join("b.tar.gz.sig")).unwrap();
        assert_eq!(ours, theirs, "{kind}: not what ssh-keygen -Y sign writes");
        let verified = ssh_keygen(
            &[
                "-Y",
                "verify",
                "-f",
                path_str(&signers),
                "-I",
                &format!("{kind}@ci"),
                "-n",
                "mailsetup-bundle",
                "-s",
                &format!("{}.sig", path_str(&bundle)),
            ],
            Some(&bundle),
        );
        assert!(verified.status.success(), "{verified:?}");

        // mailsetup accepts ssh-keygen's signature.
        std::fs::copy(
            theirs_dir.path().join("b.tar.gz.sig"),
            format!("{}.sig", path_str(&bundle)),
        )
        .unwrap();
        let out = apply_signed(&bundle, &signers, 0);
        assert!(
            out.stderr.contains(&format!("signed by {kind}@ci")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn unsigned_wrong_key_wrong_namespace_and_tampered_bundles_are_refused() {
    if missing_in_ci(&["ssh-keygen"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ci_key, ci_line) = key(dir.path(), "ed25519", "ci");
    let (other_key, _) = key(dir.path(), "ed25519", "other");
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, format!("# the CI key\n{ci_line}\n")).unwrap();
    let bundle = dir.path().join("b.tar.gz");
    let sig = dir.path().join("b.tar.gz.sig");
    let make = |key: &Path| {
        Test::new()
            .args(&[
                "bundle",
                &example("minimal.yaml"),
                "--out",
                path_str(&bundle),
                "--sign",
                path_str(key),
            ])
            .run();
    };

    make(&ci_key);
    apply_signed(&bundle, &signers, 0);

    std::fs::remove_file(&sig).unwrap();
    let out = apply_signed(&bundle, &signers, 1);
    assert!(out.stderr.contains("not signed"), "{}", out.stderr);

    make(&other_key);
    let out = apply_signed(&bundle, &signers, 1);
    assert!(out.stderr.contains("does not list"), "{}", out.stderr);

    make(&ci_key);
    std::fs::remove_file(&sig).unwrap();
    let signed = ssh_keygen(
        &[
            "-Y",
            "sign",
            "-f",
            path_str(&ci_key),
            "-n",
            "git",
            path_str(&bundle),
        ],
        None,
    );
    assert!(signed.status.success());
    let out = apply_signed(&bundle, &signers, 1);
    assert!(out.stderr.contains("namespace"), "{}", out.stderr);

    // A namespace restriction on the signer's line is honoured.
    make(&ci_key);
    let restricted = dir.path().join("restricted");
    std::fs::write(
        &restricted,
        ci_line.replacen(' ', " namespaces=\"git\" ", 1) + "\n",
    )
    .unwrap();
    let out = apply_signed(&bundle, &restricted, 1);
    assert!(
        out.stderr.contains("does not allow namespace"),
        "{}",
        out.stderr
    );

    // One byte changed after signing.
    make(&ci_key);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&bundle, &bytes).unwrap();
    let out = apply_signed(&bundle, &signers, 1);
    assert!(
        out.stderr.contains("changed after it was signed"),
        "{}",
        out.stderr
    );

    // Set once on the host: no flag needed, and unsigned bundles are refused.
    make(&ci_key);
    let host = root();
    std::fs::copy(&signers, host.path().join("etc/mailsetup/allowed_signers")).unwrap();
    let h = path_str(host.path());
    Test::new()
        .args(&["apply", "--bundle", path_str(&bundle), "--root", h])
        .run();
    std::fs::remove_file(&sig).unwrap();
    Test::new()
        .args(&["apply", "--bundle", path_str(&bundle), "--root", h])
        .status(1)
        .stderr_has("not signed")
        .run();
}

#[test]
fn the_relay_password_comes_only_from_a_private_file() {
    let host = root();
    let h = path_str(host.path());
    let dir = tempfile::tempdir().unwrap();
    // A spec naming another file than a password file: its first line would go
    // to the relay. /etc/shadow is root:shadow 0640 on Debian.
    let shadow = host.path().join("etc/shadow");
    std::fs::write(&shadow, "root:$y$j9T$secret:19000:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o640)).unwrap();
    let spec = dir.path().join("spec.yaml");
    let text = std::fs::read_to_string(example("smarthost.yaml")).unwrap();
    std::fs::write(
        &spec,
        text.replace("/etc/mailsetup/relay-password", "/etc/shadow"),
    )
    .unwrap();
    let before = snapshot(host.path());
    for cmd in ["plan", "apply"] {
        Test::new()
            .args(&[cmd, path_str(&spec), "--root", h])
            .status(1)
            .stderr_has("readable by others")
            .stderr_lacks("secret")
            .run();
    }
    assert_unchanged(
        &before,
        &snapshot(host.path()),
        "a refused apply wrote files",
    );
    // The operator's own file, left world-readable: refused with the fix.
    let password = host.path().join("etc/mailsetup/relay-password");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    Test::new()
        .args(&["apply", &example("smarthost.yaml"), "--root", h])
        .status(1)
        .stderr_has("chmod 600")
        .run();
}
