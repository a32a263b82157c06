//! TSIG keys in BIND's syntax, as `tsig-keygen` writes them:
//!
//! ```text
//! key "mailsetup" {
//!     algorithm hmac-sha256;
//!     secret "base64…";
//! };
//! ```

use std::fmt;

use crate::keys::Zeroizing;
use base64ct::{Base64, Encoding};

/// The HMACs a key may use: those of RFC 8945's "mandatory"/"recommended" set
/// that are not broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        })
    }
}

/// A TSIG key. The secret is never printed (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub algorithm: Algorithm,
    pub secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} {})", self.name, self.algorithm)
    }
}

/// Reads the first `key` statement of a BIND key file. Errors say what is wrong
/// without quoting the secret.
pub fn parse(text: &str) -> Result<Key, String> {
    let tokens = tokens(text)?;
    let mut it = tokens.iter().map(String::as_str).peekable();
    if it.next() != Some("key") {
        return Err("expected `key \"NAME\" { algorithm …; secret \"…\"; };`".into());
    }
    let name = it
        .next()
        .filter(|n| !matches!(*n, "{" | "}" | ";"))
        .ok_or("the key has no name")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() || !name.split('.').all(valid_label) {
        // Not quoted back: in a garbled file it could be the secret.
        return Err("the key's name is not a DNS name".into());
    }
    if it.next() != Some("{") {
        return Err("expected `{` after the key name".into());
    }
    let (mut algorithm, mut secret) = (None, None);
    loop {
        match it.next() {
            Some("}") => break,
            Some("algorithm") => {
                let value = it.next().ok_or("`algorithm` has no value")?;
                algorithm = Some(match value.to_ascii_lowercase().as_str() {
                    "hmac-sha256" => Algorithm::HmacSha256,
                    "hmac-sha384" => Algorithm::HmacSha384,
                    "hmac-sha512" => Algorithm::HmacSha512,
                    // Not quoted back either.
                    _ => {
                        return Err(
                            "the algorithm is not supported: use hmac-sha256, hmac-sha384 or \
                             hmac-sha512 (tsig-keygen -a hmac-sha256)"
                                .into(),
                        );
                    }
                });
            }
            Some("secret") => {
                let value = it.next().ok_or("`secret` has no value")?;
                let bytes = Base64::decode_vec(value)
                    .map_err(|_| "the secret is not base64".to_string())?;
                if bytes.len() < 16 {
                    return Err("the secret is shorter than 128 bits".into());
                }
                secret = Some(Zeroizing::new(bytes));
            }
            // Not quoted back: a stray word could be a secret.
            Some(_) => {
                return Err(
                    "unexpected word in the key statement: expected `algorithm` or `secret`".into(),
                );
            }
            None => return Err("the key statement has no closing `}`".into()),
        }
        if it.next() != Some(";") {
            return Err("expected `;` after each setting".into());
        }
    }
    Ok(Key {
        name,
        algorithm: algorithm.ok_or("the key has no `algorithm`")?,
        secret: secret.ok_or("the key has no `secret`")?,
    })
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Words, quoted strings (unquoted) and the punctuation `{ } ;`; comments
/// (`#`, `//`, `/* */`) skipped.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'/') => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                loop {
                    match chars.next() {
                        Some('/') if last == '*' => break,
                        Some(c) => last = c,
                        None => return Err("a comment is not closed".into()),
                    }
                }
            }
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("a quoted string is not closed".into()),
                    }
                }
                out.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(c) =
                    chars.next_if(|c| !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"'))
                {
                    s.push(c);
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = "key \"mailsetup\" {\n\talgorithm hmac-sha256;\n\tsecret \"b3Uwq1SNW2UwSx0TBcGnUN0p1kVUQ0PCQjl0eLxTiWc=\";\n};\n";

    #[test]
    fn reads_what_tsig_keygen_writes() {
        let key = parse(KEYGEN).unwrap();
        assert_eq!(key.name, "mailsetup");
        assert_eq!(key.algorithm, Algorithm::HmacSha256);
        assert_eq!(key.secret.len(), 32);
        assert_eq!(format!("{key:?}"), "Key(mailsetup hmac-sha256)");
        let commented = format!(
            "# made by tsig-keygen\n/* x */ {}",
            KEYGEN.replace("mailsetup", "Up.Example.")
        );
        assert_eq!(parse(&commented).unwrap().name, "up.example");
    }

    #[test]
    fn bad_keys_say_why_without_the_secret() {
        let md5 = KEYGEN.replace("hmac-sha256", "hmac-md5");
        assert!(parse(&md5).unwrap_err().contains("not supported"));
        let short = KEYGEN.replace("b3Uwq1SNW2UwSx0TBcGnUN0p1kVUQ0PCQjl0eLxTiWc=", "YWJj");
        assert!(parse(&short).unwrap_err().contains("shorter"));
        let garbage = KEYGEN.replace(
            "b3Uwq1SNW2UwSx0TBcGnUN0p1kVUQ0PCQjl0eLxTiWc=",
            "not base64!",
        );
        let e = parse(&garbage).unwrap_err();
        assert!(
            e.contains("not base64") && !e.contains("not base64!"),
            "{e}"
        );
        assert!(
            parse("key \"k\" { algorithm hmac-sha256; };")
                .unwrap_err()
                .contains("no `secret`")
        );
        assert!(
            parse("key \"k\" { algorithm hmac-sha256 }")
                .unwrap_err()
                .contains("`;`")
        );
        assert!(parse("zone \"x\" {};").is_err());
        assert!(
            parse("key \"a b\" {};")
                .unwrap_err()
                .contains("name is not a DNS name")
        );
        // No word of the file comes back in an error: a garbled file (lines
        // swapped, a secret where the name or algorithm goes) stays secret.
        let secret = "b3Uwq1SNW2UwSx0TBcGnUN0p1kVUQ0PCQjl0eLxTiWc=";
        for garbled in [
            format!("key \"{secret}/x\" {{}};"),
            format!("key \"k\" {{ algorithm {secret}; }};"),
            format!("key \"k\" {{ {secret}; }};"),
            format!("key {{ secret \"{secret}\"; }};"),
        ] {
            let e = parse(&garbled).unwrap_err();
            assert!(!e.contains(&secret[..8]), "{garbled}: {e}");
        }
    }
}
