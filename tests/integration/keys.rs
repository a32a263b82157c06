//! Our DKIM keys against the tools operators know: OpenSSL reads the same key,
//! and opendkim-genkey writes the same .txt record and PEM layout.

use std::path::Path;
use std::process::{Command, Stdio};

use base64ct::{Base64, Encoding};
use mailsetup::keys::{DkimKey, DkimPublicKey};

use crate::support::{missing_in_ci, succeed};

const OPENDKIM_GENKEY: &str = "/usr/sbin/opendkim-genkey";

/// Runs opendkim-genkey for one key into `dir`; returns its .private and .txt.
fn genkey(dir: &Path, bits: usize, selector: &str, domain: &str) -> (String, String) {
    let status = Command::new(OPENDKIM_GENKEY)
        .args(["-r", "-b", &bits.to_string(), "-h", "sha256"])
        .args(["-s", selector, "-d", domain, "-D"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "opendkim-genkey -b {bits} failed");
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{selector}.{ext}"))).unwrap();
    (read("private"), read("txt"))
}

#[test]
fn a_pkcs1_key_from_openssl_is_read_as_openssl_reads_it() {
    if missing_in_ci(&["openssl"]) {
        return;
    }
    let pem = succeed(Command::new("openssl").args(["genrsa", "-traditional", "1024"]));
    let pem = String::from_utf8(pem).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let public = DkimPublicKey::from_private_pem(&pem).unwrap();
    assert_eq!(public.bits(), 1024);

    // The same public key as `openssl rsa -pubout` derives.
    let mut child = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let der = child.wait_with_output().unwrap().stdout;
    assert_eq!(public.p_value(), Base64::encode_string(&der));
}

/// Sizes: 1024 (one string), 2048 (two), 2696 (exactly 500 base64 characters:
/// the trailing empty string) and 3072 (three).
#[test]
fn the_txt_record_matches_opendkim_genkey_byte_for_byte() {
    if missing_in_ci(&["opendkim-genkey"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (bits, selector, domain) in [
        (1024, "sel", "example.com"),
        (2048, "mail2026", "mail.example.org"),
        (2696, "s", "example.net"),
        (3072, "dkim-3072", "example.com"),
    ] {
        let out = dir.path().join(bits.to_string());
        std::fs::create_dir(&out).unwrap();
        let (private, txt) = genkey(&out, bits, selector, domain);
        let public = DkimPublicKey::from_private_pem(&private).unwrap();
        assert_eq!(public.bits(), bits);
        assert_eq!(public.genkey_txt(selector, domain), txt, "{bits} bits");
        if bits == 2696 {
            assert_eq!(public.p_value().len(), 500);
            assert!(txt.contains("\"\n\t  \"\" )"), "{txt}");
        }
        // The joined strings are exactly dns_value().
        let joined: String = txt.split('"').skip(1).step_by(2).collect();
        assert_eq!(joined, public.dns_value());
    }
}

/// A PEM's armor lines, and whether its body is in full 64-character lines
/// (the last 1 to 64) with LF line ends and a final newline.
fn layout(pem: &str) -> (Vec<&str>, bool) {
    let (armor, body): (Vec<&str>, Vec<&str>) = pem.lines().partition(|l| l.starts_with("-----"));
    let (last, full) = body.split_last().unwrap();
    let lines = full.iter().all(|l| l.len() == 64) && (1..=64).contains(&last.len());
    (armor, lines && !pem.contains('\r') && pem.ends_with('\n'))
}

#[test]
fn the_private_key_file_is_laid_out_as_opendkim_genkey_lays_it_out() {
    if missing_in_ci(&["opendkim-genkey"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (theirs, _) = genkey(dir.path(), 1024, "x", "example.com");
    let ours = DkimKey::generate(1024).unwrap().private_pem();
    assert_eq!(layout(&ours), layout(&theirs));
    assert_eq!(
        layout(&theirs),
        (
            vec!["-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"],
            true
        )
    );
}
