//! Signed bundles: SSH signatures (SSHSIG) in namespace `mailsetup-bundle`, as
//! `ssh-keygen -Y sign -n mailsetup-bundle` makes them and `ssh-keygen -Y verify`
//! checks them, against an OpenSSH allowed_signers file. CI holds the private key;
//! hosts hold allowed_signers.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::host::local;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The SSHSIG namespace of bundle signatures: a signature made for anything else
/// (a git commit, a file) does not verify as a bundle's.
pub const NAMESPACE: &str = "mailsetup-bundle";

/// The host's allowed signers (under the root), used when `--allowed-signers`
/// is not given: once it exists, every bundle must be signed by one of them.
pub const HOST_ALLOWED_SIGNERS: &str = "/etc/mailsetup/allowed_signers";

/// No allowed_signers or key file comes near this; larger ones are refused unread.
const MAX_FILE: u64 = 1 << 20;
/// Nor a signature (an RSA-4096 one is under 2 KiB).
const MAX_SIGNATURE: u64 = 64 << 10;

/// Where the signature of `bundle` lives: `BUNDLE.sig`, as ssh-keygen writes it.
pub fn signature_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The signature beside a bundle, if there is one: a plain file (no symlink,
/// no FIFO) of at most 64 KiB, read before anything of the bundle.
pub fn read_signature(bundle: &Path) -> Result<Option<String>> {
    let path = signature_path(bundle);
    Ok(
        local::read_if_present(&path, "the signature", MAX_SIGNATURE, local::Follow::No)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    )
}

/// Signs `data` with the OpenSSH private key in `key_file`; returns the armored
/// signature, byte for byte what `ssh-keygen -Y sign` writes.
pub fn sign(data: &[u8], key_file: &Path) -> Result<String> {
    let bytes = local::read(key_file, "the signing key", MAX_FILE, local::Follow::Yes)?;
    let text = String::from_utf8_lossy(&bytes);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an OpenSSH private key ({e}); make one with `ssh-keygen -t ed25519`",
            key_file.display()
        )
    })?;
    if key.is_encrypted() {
        bail!(
            "{}: the key is protected by a passphrase, which mailsetup cannot ask for; \
             keep the CI key without one (in the CI's secret store), or sign with \
             `ssh-keygen -Y sign -f KEY -n {NAMESPACE} BUNDLE` (the same format)",
            key_file.display()
        );
    }
    let signature = key
        .sign(NAMESPACE, HashAlg::Sha512, data)
        .map_err(|e| anyhow::anyhow!("sign with {}: {e}", key_file.display()))?;
    signature
        .to_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encode the signature: {e}"))
}

/// One line of an allowed_signers file.
#[derive(Debug)]
struct Signer {
    line: usize,
    principals: String,
    namespaces: Option<String>,
    valid_after: Option<jiff::Timestamp>,
    valid_before: Option<jiff::Timestamp>,
    key: PublicKey,
}

/// An OpenSSH allowed_signers file (`man ssh-keygen`, ALLOWED SIGNERS): lines of
/// `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`. The options honoured are
/// `namespaces="…"`, `valid-after="…"` and `valid-before="…"`; `cert-authority`
/// lines are skipped (mailsetup checks plain keys, not certificates).
#[derive(Debug)]
pub struct AllowedSigners {
    file: PathBuf,
    signers: Vec<Signer>,
}

impl AllowedSigners {
    /// The file, read only if no one but root could have written it (see
    /// `local::read_strict`).
    pub fn read(file: &Path) -> Result<AllowedSigners> {
        let bytes = local::read_strict(file, "the allowed signers file", MAX_FILE)?;
        Self::parse(&String::from_utf8_lossy(&bytes), file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<AllowedSigners> {
        let mut signers = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_start_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |msg: String| anyhow::anyhow!("{}:{}: {msg}", file.display(), i + 1);
            let (principals, rest) = token(line).map_err(at)?;
            let rest = rest.trim_start_matches([' ', '\t']);
            // A key follows the principals directly, or after one options field.
            let (options, key) = match PublicKey::from_openssh(rest) {
                Ok(key) => (None, key),
                Err(_) => {
                    let (options, key_text) = token(rest).map_err(at)?;
                    let key = PublicKey::from_openssh(key_text.trim_start_matches([' ', '\t']))
                        .map_err(|e| at(format!("not a public key after the options: {e}")))?;
                    (Some(options), key)
                }
            };
            let mut signer = Signer {
                line: i + 1,
                principals,
                namespaces: None,
                valid_after: None,
                valid_before: None,
                key,
            };
            let mut cert_authority = false;
            for option in split_options(options.as_deref().unwrap_or("")) {
                let (name, value) = match option.split_once('=') {
                    Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v).map_err(at)?)),
                    None => (option.to_ascii_lowercase(), None),
                };
                match (name.as_str(), value) {
                    ("cert-authority", None) => cert_authority = true,
                    ("namespaces", Some(v)) if signer.namespaces.is_none() => {
                        signer.namespaces = Some(v)
                    }
                    ("valid-after", Some(v)) => signer.valid_after = Some(time(&v).map_err(at)?),
                    ("valid-before", Some(v)) => signer.valid_before = Some(time(&v).map_err(at)?),
                    _ => return Err(at(format!("unknown or repeated option {option:?}"))),
                }
            }
            if !cert_authority {
                signers.push(signer);
            }
        }
        Ok(AllowedSigners {
            file: file.to_path_buf(),
            signers,
        })
    }

    /// Verifies an armored signature of `data`; returns who signed (the principals
    /// of the matching line).
    pub fn verify(&self, data: &[u8], signature: &str, now: jiff::Timestamp) -> Result<String> {
        let signature: SshSig = signature
            .parse()
            .map_err(|e| anyhow::anyhow!("not an SSH signature: {e}"))?;
        let fingerprint =
            PublicKey::from(signature.public_key().clone()).fingerprint(HashAlg::Sha256);
        let mut refusals = Vec::new();
        for signer in self
            .signers
            .iter()
            .filter(|s| s.key.key_data() == signature.public_key())
        {
            let line = format!("{}:{}", self.file.display(), signer.line);
            if let Some(patterns) = &signer.namespaces
                && !matches_list(patterns, NAMESPACE)
            {
                refusals.push(format!("{line} does not allow namespace {NAMESPACE}"));
                continue;
            }
            if signer.valid_after.is_some_and(|t| now < t) {
                refusals.push(format!("{line}: the key is not valid yet"));
                continue;
            }
            if signer.valid_before.is_some_and(|t| now > t) {
                refusals.push(format!("{line}: the key has expired"));
                continue;
            }
            return match signer.key.verify(NAMESPACE, data, &signature) {
                Ok(()) => Ok(signer.principals.clone()),
                Err(ssh_key::Error::Namespace) => bail!(
                    "the signature was made for namespace {:?}, not {NAMESPACE:?}: it signs \
                     something else, not a mailsetup bundle",
                    signature.namespace()
                ),
                Err(_) => bail!(
                    "the signature by {} ({fingerprint}) does not match the bundle: \
                     the bundle was changed after it was signed",
                    signer.principals
                ),
            };
        }
        if refusals.is_empty() {
            bail!(
                "signed by {fingerprint}, a key {} does not list",
                self.file.display()
            );
        }
        bail!("signed by {fingerprint}, but {}", refusals.join("; "))
    }
}

/// One whitespace-delimited field, or a double-quoted one; returns it and the rest.
fn token(text: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted.find('"').ok_or("unterminated quote")?;
        let rest = &quoted[end + 1..];
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return Err("text right after a closing quote".into());
        }
        return Ok((quoted[..end].to_string(), rest));
    }
    let mut in_quotes = false;
    let end = text
        .char_indices()
        .find(|&(_, c)| {
            if c == '"' {
                in_quotes = !in_quotes;
            }
            !in_quotes && (c == ' ' || c == '\t')
        })
        .map_or(text.len(), |(i, _)| i);
    if in_quotes {
        return Err("unterminated quote".into());
    }
    Ok((text[..end].to_string(), &text[end..]))
}

/// Comma-separated options; commas inside quotes belong to the value.
fn split_options(options: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quotes) = (0, false);
    for (i, c) in options.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < options.len() {
        out.push(&options[start..]);
    }
    out
}

/// Option values must be quoted, as OpenSSH requires.
fn unquote(value: &str) -> Result<String, String> {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(|v| v.replace("\\\"", "\""))
        .ok_or_else(|| format!("the option value {value} must be in double quotes"))
}

/// `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`; without `Z`, local time.
fn time(text: &str) -> Result<jiff::Timestamp, String> {
    let (digits, utc) = match text.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (text, false),
    };
    let bad = || format!("{text:?} is not a time (YYYYMMDD[HHMM[SS]][Z])");
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let padded = format!("{digits:0<14}");
    let civil = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", &padded).map_err(|_| bad())?;
    let zone = if utc {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::system()
    };
    zone.to_timestamp(civil).map_err(|_| bad())
}

/// An ssh_config pattern list: comma-separated, `*` and `?` wildcards, `!` negates.
fn matches_list(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

/// `*` and `?` wildcards, in time linear in pattern × name (a pattern of
/// many `*` cannot make it exponential): on a mismatch, only the last `*` is
/// tried one byte further.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn allowed_signers_lines_and_options() {
        let text = format!(
            "# CI\n\
             ci@example.com {KEY} the CI key\n\
             \"some one,*@x\" namespaces=\"mailsetup-*,!git\",valid-after=\"20260101\" {KEY}\n\
             ca@x cert-authority {KEY}\n"
        );
        let signers = AllowedSigners::parse(&text, Path::new("as")).unwrap();
        assert_eq!(signers.signers.len(), 2);
        assert_eq!(signers.signers[0].principals, "ci@example.com");
        assert_eq!(signers.signers[1].principals, "some one,*@x");
        assert_eq!(
            signers.signers[1].namespaces.as_deref(),
            Some("mailsetup-*,!git")
        );
        assert!(signers.signers[1].valid_after.is_some());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for bad in [
            format!("a namespaces=mailsetup-bundle {KEY}"),
            format!("a bogus=\"x\" {KEY}"),
            format!("a valid-before=\"2026\" {KEY}"),
            "a ssh-ed25519 notbase64".to_string(),
            format!("\"a {KEY}"),
            format!("\"a\",b {KEY}"),
        ] {
            let err = AllowedSigners::parse(&format!("\n{bad}\n"), Path::new("as")).unwrap_err();
            assert!(err.to_string().starts_with("as:2: "), "{bad}: {err}");
        }
    }

    #[test]
    fn namespace_patterns() {
        assert!(matches_list("mailsetup-bundle", NAMESPACE));
        assert!(matches_list("git,mailsetup-*", NAMESPACE));
        assert!(!matches_list("mailsetup-*,!mailsetup-bundle", NAMESPACE));
        assert!(!matches_list("git", NAMESPACE));
        assert!(matches_list("*", NAMESPACE));
        assert!(matches_list("mail?etup-bundle", NAMESPACE));
        assert!(matches_list("m*l*-*e", NAMESPACE));
        assert!(!matches_list("m*l*-*x", NAMESPACE));
        assert!(glob(b"", b"") && glob(b"**", b"") && !glob(b"?", b""));
    }

    /// A pattern of 40 `*` against a long name that almost matches: the
    /// recursive matcher took exponential time here (never finished).
    #[test]
    fn many_stars_take_linear_time() {
        let pattern = format!("{}b", "*a".repeat(40));
        let name = "a".repeat(200);
        assert!(!glob(pattern.as_bytes(), name.as_bytes()));
        assert!(glob(pattern.as_bytes(), format!("{name}b").as_bytes()));
    }

    #[test]
    fn times() {
        assert_eq!(
            time("20261130Z").unwrap(),
            "2026-11-30T00:00:00Z".parse().unwrap()
        );
        assert_eq!(
            time("202611301201Z").unwrap(),
            "2026-11-30T12:01:00Z".parse().unwrap()
        );
        assert!(time("2026113").is_err());
        assert!(time("20261340").is_err());
    }
}
