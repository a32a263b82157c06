//! DKIM selectors, the leaf the rotation, the records and the checks share:
//! where a selector is in its life, what is published for it, and what DNS
//! serves at it (RFC 6376 3.6.1) — `check` reports it, `rotate activate`
//! switches signing only once the new key is served.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::keys::DkimPublicKey;
use crate::resolve::{Dns, LookupError};

/// Where a selector is in its life. The order is the order they are listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    Staged,
    Retiring,
    Revoked,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Active => "active",
            State::Staged => "staged",
            State::Retiring => "retiring",
            State::Revoked => "revoked",
        })
    }
}

/// One DKIM selector of a key set and what to publish for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimSelector {
    pub set: String,
    pub selector: String,
    pub state: State,
    pub value: DkimValue,
    /// Why it is published, for selectors other than the active one.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DkimValue {
    Key(DkimPublicKey),
    Revoked,
    /// The key is not on the host: why, and what to do.
    Missing(String),
}

/// A selector's record as DNS serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// No DKIM record at that name.
    Missing,
    Key(DkimPublicKey),
    /// `p=` is empty: the key is withdrawn.
    Revoked,
}

/// Why the record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServedError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{0} DKIM records are published: verifiers cannot tell which key applies")]
    Several(usize),
    #[error("the record is not a valid DKIM key record: {0}")]
    Invalid(String),
}

pub fn served(dns: &dyn Dns, name: &str) -> Result<Served, ServedError> {
    served_record(dns, name).map(|(served, _)| served)
}

/// What DNS serves at `name`, and the record's text when there is one.
pub fn served_record(dns: &dyn Dns, name: &str) -> Result<(Served, Option<String>), ServedError> {
    let txt = dns.txt(name)?;
    let records: Vec<&String> = txt.iter().filter(|t| looks_like_dkim(t)).collect();
    match records.as_slice() {
        [] => Ok((Served::Missing, None)),
        [one] => parse(one)
            .map(|s| (s, Some(one.to_string())))
            .map_err(ServedError::Invalid),
        several => Err(ServedError::Several(several.len())),
    }
}

fn looks_like_dkim(txt: &str) -> bool {
    tags(txt).any(|(name, _)| name == "v" || name == "p")
}

fn tags(txt: &str) -> impl Iterator<Item = (&str, &str)> {
    txt.split(';').filter_map(|t| {
        let (name, value) = t.split_once('=')?;
        Some((name.trim(), value.trim()))
    })
}

/// A key record as a verifier reads it (RFC 6376 3.6.1): a tag twice, a
/// hash list without sha256 (what OpenDKIM signs with), a service list
/// without email, a key type but rsa, or a key under 1024 bits (RFC 8301)
/// fails every signature, so each is an error here too.
fn parse(txt: &str) -> Result<Served, String> {
    let mut p = None;
    let mut seen: Vec<&str> = Vec::new();
    for (i, (name, value)) in tags(txt).enumerate() {
        if seen.contains(&name) {
            return Err(format!("the {name}= tag appears twice (RFC 6376 3.2)"));
        }
        seen.push(name);
        let list = || value.split(':').map(str::trim);
        match name {
            "v" if i != 0 => return Err("v= must be the first tag".into()),
            "v" if value != "DKIM1" => return Err(format!("v={value}: must be DKIM1")),
            "k" if value != "rsa" => {
                return Err(format!("k={value}: only rsa keys are made here"));
            }
            "h" if !list().any(|h| h.eq_ignore_ascii_case("sha256")) => {
                return Err(format!(
                    "h={value}: the key refuses sha256, which OpenDKIM signs with: every \
                     signature fails"
                ));
            }
            "s" if !list().any(|s| s == "*" || s.eq_ignore_ascii_case("email")) => {
                return Err(format!(
                    "s={value}: the key is not for email (s=email or s=*): verifiers ignore it"
                ));
            }
            "p" => p = Some(value),
            _ => {}
        }
    }
    let p = p.ok_or("there is no p= tag")?;
    if p.is_empty() {
        return Ok(Served::Revoked);
    }
    let key = DkimPublicKey::from_p_value(p).map_err(|e| e.to_string())?;
    if key.bits() < 1024 {
        return Err(format!(
            "a {}-bit key: verifiers refuse keys under 1024 bits (RFC 8301 3.2)",
            key.bits()
        ));
    }
    Ok(Served::Key(key))
}

/// The `t=` flags of a key record that receivers act on: `y` (testing: some
/// verifiers then treat failures as unsigned mail).
pub fn testing(txt: &str) -> bool {
    tags(txt).any(|(name, value)| name == "t" && value.split(':').any(|f| f.trim() == "y"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::fake::FakeDns;
    use crate::keys::DkimKey;

    /// What verifiers refuse in a key record is refused here, named.
    #[test]
    fn records_verifiers_refuse_are_invalid() {
        let key = DkimKey::generate(1024).unwrap().public();
        let p = key.p_value();
        for (record, why) in [
            (format!("v=DKIM1; h=sha1; k=rsa; p={p}"), "h=sha1"),
            (format!("v=DKIM1; s=tlsrpt; p={p}"), "not for email"),
            (format!("v=DKIM1; k=ed25519; p={p}"), "k=ed25519"),
            (format!("v=DKIM1; p={p}; p={p}"), "appears twice"),
            (format!("k=rsa; v=DKIM1; p={p}"), "first tag"),
        ] {
            let e = parse(&record).unwrap_err();
            assert!(e.contains(why), "{record}: {e}");
        }
        // What they accept.
        for ok in [
            format!("v=DKIM1; h=sha1:sha256; s=email:tlsrpt; p={p}"),
            format!("v=DKIM1; s=*; t=s; p={p}"),
            format!("p={p}"),
        ] {
            assert!(matches!(parse(&ok), Ok(Served::Key(_))), "{ok}");
        }
        assert!(testing(&format!("v=DKIM1; t=y:s; p={p}")));
        assert!(!testing(&format!("v=DKIM1; t=s; p={p}")));
    }

    #[test]
    fn served_reads_keys_revocations_and_problems() {
        let key = DkimKey::generate(1024).unwrap().public();
        let dns = FakeDns::default()
            .txt("k._domainkey.example.com", &key.dns_value())
            .txt("r._domainkey.example.com", "v=DKIM1; p=")
            .txt("two._domainkey.example.com", "v=DKIM1; p=")
            .txt("two._domainkey.example.com", &key.dns_value())
            .txt("bad._domainkey.example.com", "v=DKIM1; k=ed25519; p=abc")
            .txt("other._domainkey.example.com", "hello")
            .fail("down._domainkey.example.com");
        let get = |sel: &str| served(&dns, &format!("{sel}._domainkey.example.com"));
        assert_eq!(get("k").unwrap(), Served::Key(key));
        assert_eq!(get("r").unwrap(), Served::Revoked);
        assert_eq!(get("none").unwrap(), Served::Missing);
        assert_eq!(get("other").unwrap(), Served::Missing);
        assert_eq!(get("two").unwrap_err(), ServedError::Several(2));
        assert!(
            matches!(get("bad").unwrap_err(), ServedError::Invalid(e) if e.contains("k=ed25519"))
        );
        assert!(matches!(get("down").unwrap_err(), ServedError::Lookup(_)));
    }
}
