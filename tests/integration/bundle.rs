//! Bundles for CI: reproducible bytes, verified before use, no private keys by
//! default, applied on a host with `apply --bundle`.

use std::path::Path;

use crate::support::{DATE, Test, example, members, path_str, root, tree};

/// Rebuilds an archive from members (the way an attacker or a broken copy would).
fn rebuild(members: &[(String, Vec<u8>)], out: &Path) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data) in members {
        let mut header = tar::Header::new_old();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Written by hand: the tar crate itself refuses names with `..`.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// `bundle SPEC --out OUT EXTRA…`, for the caller to add its checks and run.
fn bundle_of(spec: &str, out: &Path, extra: &[&str]) -> Test {
    Test::new()
        .args(&["bundle", spec, "--out", path_str(out)])
        .args(extra)
}

#[test]
fn bundles_are_byte_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.tar.gz");
    let b = dir.path().join("b.tar.gz");
    bundle_of(&example("guide.yaml"), &a, &[]).run();
    // Built apart in time: a second later, file times and "now" differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    bundle_of(&example("guide.yaml"), &b, &[]).run();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let names: Vec<String> = members(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "manifest.json");
    assert!(names.contains(&"files/etc/postfix/main.cf".to_string()));
    assert!(
        names.contains(&"dns/records.zone".to_string())
            && names.contains(&"dns/records.json".to_string())
    );
}

#[test]
fn the_manifest_lists_path_and_checksum_of_every_file_and_the_signing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.tar.gz");
    bundle_of(&example("guide.yaml"), &b, &[]).run();
    let all = members(&b);
    let manifest: serde_json::Value = serde_json::from_slice(&all[0].1).unwrap();
    let files = manifest["files"].as_array().unwrap();
    let keytable = files
        .iter()
        .find(|f| f["path"] == "/etc/opendkim/KeyTable")
        .unwrap();
    // Modes and owners come from the host's table, never from a bundle.
    assert!(keytable.get("mode").is_none() && keytable.get("owner").is_none());
    assert_eq!(manifest["keys"][0]["set"], "shared");
    let content = &all
        .iter()
        .find(|(n, _)| n == "files/etc/opendkim/KeyTable")
        .unwrap()
        .1;
    assert_eq!(keytable["sha256"], mailsetup::plan::sha256_hex(content));
}

#[test]
fn a_date_selector_needs_keys_or_a_fixed_date() {
    let dir = tempfile::tempdir().unwrap();
    bundle_of(&example("guide.yaml"), &dir.path().join("x.tgz"), &[])
        .env_remove("SOURCE_DATE_EPOCH")
        .status(1)
        .stderr_has("SOURCE_DATE_EPOCH")
        .run();
    assert!(!dir.path().join("x.tgz").exists());
}

#[test]
fn no_private_keys_unless_asked_and_dns_carries_exported_public_keys() {
    let host = root();
    let h = path_str(host.path());
    Test::new()
        .args(&["apply", &example("guide.yaml"), "--root", h])
        .run();
    let dir = tempfile::tempdir().unwrap();

    // Without keys: the DNS output says clearly what is missing.
    let plain = dir.path().join("plain.tar.gz");
    bundle_of(&example("guide.yaml"), &plain, &[])
        .stderr_has("public-keys")
        .run();
    let zone = members(&plain)
        .into_iter()
        .find(|(n, _)| n == "dns/records.zone")
        .unwrap()
        .1;
    assert!(String::from_utf8_lossy(&zone).contains("; MISSING"));

    // With the public keys the host exported: the real p=.
    let exported = dir.path().join("public");
    Test::new()
        .args(&[
            "public-keys",
            &example("guide.yaml"),
            "--root",
            h,
            "--out",
            path_str(&exported),
        ])
        .run();
    let with_keys = dir.path().join("keys.tar.gz");
    bundle_of(
        &example("guide.yaml"),
        &with_keys,
        &["--public-keys", path_str(&exported)],
    )
    .run();
    let pem = std::fs::read_to_string(
        host.path()
            .join(format!("etc/opendkim/keys/shared/{DATE}.private")),
    )
    .unwrap();
    let public = mailsetup::keys::DkimPublicKey::from_private_pem(&pem).unwrap();
    let all = members(&with_keys);
    let json = &all.iter().find(|(n, _)| n == "dns/records.json").unwrap().1;
    assert!(String::from_utf8_lossy(json).contains(&public.dns_value()));
    let secret_line = pem.lines().nth(1).unwrap();
    for (name, data) in all.iter().chain(members(&plain).iter()) {
        let text = String::from_utf8_lossy(data);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(secret_line),
            "{name} holds key material"
        );
    }
    for (entry, content) in tree(&exported) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".txt") || name == "signing-server.example.com",
            "exported {}",
            entry.display()
        );
        assert!(!String::from_utf8_lossy(&content).contains("PRIVATE"));
    }

    // Asked for explicitly: shipped with a warning, and the bundle file is 0600.
    let secret = dir.path().join("secret.tar.gz");
    bundle_of(
        &example("guide.yaml"),
        &secret,
        &["--root", h, "--include-private-keys"],
    )
    .stderr_has("private key")
    .run();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        members(&secret)
            .iter()
            .any(|(_, d)| String::from_utf8_lossy(d).contains("PRIVATE KEY"))
    );
}

#[test]
fn apply_bundle_sets_up_the_host_and_generates_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.tar.gz");
    bundle_of(&example("smarthost.yaml"), &b, &[]).run();
    let host = root();
    let h = path_str(host.path());
    let out = Test::new()
        .args(&["apply", "--bundle", path_str(&b), "--root", h])
        .stdout_has("New DKIM keys were made on this host; publish")
        .run();
    let key = host
        .path()
        .join(format!("etc/opendkim/keys/example.com/app1-{DATE}.private"));
    let public =
        mailsetup::keys::DkimPublicKey::from_private_pem(&std::fs::read_to_string(&key).unwrap())
            .unwrap();
    assert!(
        out.stdout
            .contains(&format!("app1-{DATE}._domainkey.example.com.")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&public.p_value()[..200]),
        "{}",
        out.stdout
    );
    // The relay credentials were rendered here, from this host's password file.
    let sasl = std::fs::read_to_string(host.path().join("etc/postfix/sasl_passwd")).unwrap();
    assert!(sasl.contains(crate::support::RELAY_PASSWORD));
    // The host now matches the spec the bundle was built from.
    Test::new()
        .args(&[
            "plan",
            &example("smarthost.yaml"),
            "--root",
            h,
            "--detailed-exitcode",
        ])
        .run();
    Test::new()
        .args(&["apply", "--bundle", path_str(&b), "--root", h])
        .stdout_has("No changes.")
        .run();
}

#[test]
fn tampered_truncated_or_escaping_bundles_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tar.gz");
    bundle_of(&example("minimal.yaml"), &good, &[]).run();
    let original = members(&good);
    let bad = dir.path().join("bad.tar.gz");

    let refuse = |why: &str| {
        let out = crate::support::apply_bundle_to_a_new_root(&bad, &[], 1);
        assert!(
            out.stderr.contains(why),
            "expected {why:?}:\n{}",
            out.stderr
        );
    };

    // One changed byte in main.cf.
    let mut tampered = original.clone();
    let main_cf = tampered
        .iter_mut()
        .find(|(n, _)| n == "files/etc/postfix/main.cf")
        .unwrap();
    main_cf.1 = String::from_utf8(main_cf.1.clone())
        .unwrap()
        .replace("loopback-only", "all")
        .into_bytes();
    rebuild(&tampered, &bad);
    refuse("does not match its checksum");

    // Cut short.
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    refuse("not a complete mailsetup bundle");

    // A manifest (with consistent checksums) naming a file outside the managed tree.
    let mut escaping = original.clone();
    let payload = b"root::0:0::/root:/bin/bash\n".to_vec();
    let sha = mailsetup::plan::sha256_hex(&payload);
    escaping.push(("files/etc/passwd".into(), payload));
    let manifest = &mut escaping[0].1;
    let mut m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    m["files"].as_array_mut().unwrap().push(serde_json::json!({
        "path": "/etc/passwd", "mode": "0644", "owner": {"user": "root", "group": "root"},
        "sha256": sha
    }));
    m["members"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "files/etc/passwd", "sha256": sha}));
    *manifest = serde_json::to_vec(&m).unwrap();
    rebuild(&escaping, &bad);
    refuse("not a file mailsetup manages");

    // A member with a path that climbs out.
    let mut climbing = original.clone();
    climbing.push(("files/../../x".into(), b"x".to_vec()));
    rebuild(&climbing, &bad);
    refuse("plain relative name");
}

#[test]
fn a_staged_key_is_exported_but_the_bundle_keeps_signing_with_the_active_one() {
    let host = root();
    let h = path_str(host.path());
    let spec = example("guide.yaml");
    Test::new().args(&["apply", &spec, "--root", h]).run();
    // A day later a new key is staged on the host: published first, signing later.
    Test::new()
        .args(&["rotate", "start", &spec, "--root", h])
        .day("2026-11-25")
        .run();
    assert!(
        host.path()
            .join("etc/opendkim/keys/shared/20261125.private")
            .exists()
    );

    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("public");
    Test::new()
        .args(&[
            "public-keys",
            &spec,
            "--root",
            h,
            "--out",
            path_str(&exported),
        ])
        .run();
    assert!(
        exported.join("shared/20261125.txt").exists(),
        "the staged key is exported"
    );
    let b = dir.path().join("b.tar.gz");
    bundle_of(&spec, &b, &["--public-keys", path_str(&exported)]).run();
    let keytable = members(&b)
        .into_iter()
        .find(|(n, _)| n == "files/etc/opendkim/KeyTable")
        .unwrap()
        .1;
    let keytable = String::from_utf8(keytable).unwrap();
    assert!(
        keytable.contains(&format!(":{DATE}:")) && !keytable.contains("20261125"),
        "{keytable}"
    );
}

/// A bundle whose records publish a key (CI had the host's export) must meet
/// that key on the host: a host without it, or with another under the same
/// selector, is refused with what to do — never given a different key under
/// a published name. Carrying the key, or publishing none, is fine.
#[test]
fn a_bundle_publishing_a_key_the_host_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = root();
    let f = path_str(first.path());
    Test::new()
        .args(&["apply", &example("guide.yaml"), "--root", f])
        .run();
    let exported = dir.path().join("public");
    Test::new()
        .args(&[
            "public-keys",
            &example("guide.yaml"),
            "--root",
            f,
            "--out",
            path_str(&exported),
        ])
        .run();
    let b = dir.path().join("b.tar.gz");
    bundle_of(
        &example("guide.yaml"),
        &b,
        &["--public-keys", path_str(&exported)],
    )
    .run();

    // A new host, without the key: refused, nothing written.
    let out = crate::support::apply_bundle_to_a_new_root(&b, &[], 1);
    for said in [
        format!("its records publish {DATE}._domainkey."),
        "has no private key".into(),
        "mailsetup public-keys".into(),
        "nothing was written".into(),
    ] {
        assert!(out.stderr.contains(&said), "{said}: {}", out.stderr);
    }

    // Another host with its own key under the same selector: refused.
    let other = root();
    Test::new()
        .args(&[
            "apply",
            &example("guide.yaml"),
            "--root",
            path_str(other.path()),
        ])
        .run();
    Test::new()
        .args(&[
            "apply",
            "--bundle",
            path_str(&b),
            "--root",
            path_str(other.path()),
        ])
        .status(1)
        .stderr_has("with another key than this host's")
        .run();

    // The host the keys came from: applied.
    Test::new()
        .args(&["apply", "--bundle", path_str(&b), "--root", f])
        .stdout_lacks("New DKIM keys")
        .run();

    // The same bundle carrying the key: a new host takes it.
    let secret = dir.path().join("secret.tar.gz");
    bundle_of(
        &example("guide.yaml"),
        &secret,
        &["--root", f, "--include-private-keys"],
    )
    .run();
    crate::support::apply_bundle_to_a_new_root(&secret, &[], 0);
}
