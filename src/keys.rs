//! DKIM keys: generation, the PEM file OpenDKIM reads, and the DNS forms of the public half.
//!
//! Keys are RSA with public exponent 65537, as `opendkim-genkey` makes them (it runs
//! `openssl genrsa`). The private key is written as PKCS#8 PEM, which is what
//! `opendkim-genkey` leaves in `SELECTOR.private` on OpenSSL 3; keys brought by operators may
//! also be PKCS#1 (`BEGIN RSA PRIVATE KEY`), which OpenDKIM reads as well.
//!
//! Nothing in this module prints private key material: [`DkimKey`] has a hand-written `Debug`
//! that shows only the size, and [`KeyError`] messages never quote their input.

use std::fmt;

use base64ct::{Base64, Encoding};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::{Decode, pem};
use rsa::pkcs8::{
    DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding, ObjectIdentifier,
    PrivateKeyInfoRef, SubjectPublicKeyInfoRef,
};
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::traits::PublicKeyParts;
use rsa::{Generate, PrivateKey, PublicKey};

/// A `String` that is wiped from memory when dropped; what [`DkimKey::private_pem`] returns.
pub use rsa::pkcs8::der::zeroize::Zeroizing;

/// RFC 8301: keys below this are refused.
pub const MIN_BITS: usize = 1024;
/// Larger keys are allowed but many receivers/DNS providers choke on the record size.
pub const MAX_RECOMMENDED_BITS: usize = 2048;
/// Largest key [`check_bits`] accepts: the `rsa` crate's limit, and far beyond what DKIM
/// verifiers are required to handle.
pub const MAX_BITS: usize = 8192;

/// The tags before `p=` in the TXT record, in the order `opendkim-genkey -r -h sha256` writes.
const TAGS: &str = "v=DKIM1; h=sha256; k=rsa; s=email; ";
/// `opendkim-genkey` cuts the base64 key into strings of this many characters.
const GENKEY_CHUNK: usize = 250;

/// Why a key could not be made or read. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{bits}-bit DKIM keys are refused: keys below {MIN_BITS} bits are insecure (RFC 8301) \
         and verifiers must reject them; use 2048"
    )]
    TooSmall { bits: usize },
    #[error(
        "{bits}-bit DKIM keys are refused: the largest supported size is {MAX_BITS} bits, and \
         verifiers are only required to handle keys up to 2048 bits (RFC 6376 section 3.3.3); \
         use 2048"
    )]
    TooLarge { bits: usize },
    #[error(
        "{bits} bits is not a whole number of bytes; DKIM key sizes are multiples of 8 \
         (usually 2048, sometimes 1024, 3072 or 4096)"
    )]
    NotMultipleOf8 { bits: usize },
    #[error("DKIM key generation failed: {0}")]
    Generate(String),
    #[error("cannot read the DKIM key: {0}")]
    Parse(String),
    #[error("the DKIM p= value is empty, which means the key is revoked (RFC 6376 section 3.6.1)")]
    Revoked,
}

/// Validate a key size for generation.
///
/// * below [`MIN_BITS`] (1024): `Err(KeyError::TooSmall)`, citing RFC 8301;
/// * above [`MAX_BITS`] (8192): `Err(KeyError::TooLarge)`;
/// * not a multiple of 8: `Err(KeyError::NotMultipleOf8)` — legal RSA, but never what anyone
///   means, and it catches typos such as `2084`;
/// * above [`MAX_RECOMMENDED_BITS`] (2048): `Ok(Some(warning))` — allowed, but verifiers need
///   only support keys up to 2048 bits and some DNS providers reject the longer record;
/// * otherwise `Ok(None)`.
///
/// The checks are made in that order, so `1023` is reported as too small.
pub fn check_bits(bits: usize) -> Result<Option<String>, KeyError> {
    if bits < MIN_BITS {
        return Err(KeyError::TooSmall { bits });
    }
    if bits > MAX_BITS {
        return Err(KeyError::TooLarge { bits });
    }
    if !bits.is_multiple_of(8) {
        return Err(KeyError::NotMultipleOf8 { bits });
    }
    if bits > MAX_RECOMMENDED_BITS {
        return Ok(Some(format!(
            "{bits}-bit DKIM keys work with many receivers, but verifiers are only required to \
             support keys up to {MAX_RECOMMENDED_BITS} bits (RFC 6376 section 3.3.3), some DNS \
             providers reject TXT records this long, and large records need DNS over TCP; \
             {MAX_RECOMMENDED_BITS} bits is the widely supported choice"
        )));
    }
    Ok(None)
}

/// A freshly generated private key.
///
/// Holds the key only as its PKCS#8 PEM (wiped on drop) plus the public half. `Debug` prints
/// nothing but the size: `DkimKey { bits: 2048 }`.
pub struct DkimKey {
    bits: usize,
    pem: Zeroizing<String>,
    public: DkimPublicKey,
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey").field("bits", &self.bits).finish()
    }
}

impl DkimKey {
    /// Generate an RSA key of `bits` bits (exponent 65537) from the operating system's random
    /// number generator. Runs [`check_bits`] first and returns its errors; its warning (for
    /// sizes above 2048) is not returned here, so callers that want to show it call
    /// [`check_bits`] themselves.
    pub fn generate(bits: usize) -> Result<DkimKey, KeyError> {
        check_bits(bits)?;
        let mut rng = OsRng::default();
        let key = PrivateKey::new(&mut rng, bits).map_err(|e| match (e, rng.failure.take()) {
            (rsa::Error::Rng, Some(why)) => {
                KeyError::Generate(format!("the operating system's random generator: {why}"))
            }
            (e, _) => KeyError::Generate(e.to_string()),
        })?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(format!("encoding the private key: {e}")))?;
        let public = DkimPublicKey::from_rsa(&key.to_public_key())
            .map_err(|e| KeyError::Generate(format!("encoding the public key: {e}")))?;
        Ok(DkimKey {
            bits: public.bits(),
            pem,
            public,
        })
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), 64-character lines,
    /// LF line endings and a final newline — the layout `opendkim-genkey` writes. The copy
    /// returned is wiped from memory when dropped; it derefs to `&str`.
    pub fn private_pem(&self) -> Zeroizing<String> {
        self.pem.clone()
    }

    /// The public half, for DNS and `SELECTOR.txt`.
    pub fn public(&self) -> DkimPublicKey {
        self.public.clone()
    }
}

/// The public half, which is what DNS and the .txt file need.
///
/// Two values are equal when they hold the same RSA modulus and exponent. `Debug` shows the
/// size and the `p=` value (public data).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DkimPublicKey {
    bits: usize,
    /// DER SubjectPublicKeyInfo as the `rsa` crate encodes it (the same bytes OpenSSL writes),
    /// so equal keys have equal bytes whatever form they were read from.
    spki: Vec<u8>,
}

impl fmt::Debug for DkimPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimPublicKey")
            .field("bits", &self.bits)
            .field("p", &self.p_value())
            .finish()
    }
}

impl DkimPublicKey {
    fn from_rsa(key: &PublicKey) -> Result<DkimPublicKey, String> {
        let spki = key.to_public_key_der().map_err(|e| e.to_string())?;
        Ok(DkimPublicKey {
            bits: key.n().bit_width() as usize,
            spki: spki.into_vec(),
        })
    }

    /// Read the public half from a private key PEM on disk: accept PKCS#8 ("BEGIN PRIVATE KEY")
    /// and PKCS#1 ("BEGIN RSA PRIVATE KEY"), since OpenDKIM reads both and operators may bring
    /// keys made by openssl or opendkim-genkey.
    ///
    /// Leading and trailing whitespace and LF or CRLF line endings are accepted. The whole
    /// private key is decoded and checked for consistency. Encrypted keys, public keys and
    /// non-RSA keys (Ed25519, EC, RSASSA-PSS) are refused with a message saying which.
    pub fn from_private_pem(pem: &str) -> Result<DkimPublicKey, KeyError> {
        let parse = |msg: String| KeyError::Parse(msg);
        let pem = pem.trim();
        if pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(parse(
                "the private key is encrypted with a passphrase, which OpenDKIM cannot use; \
                 decrypt it first (openssl pkey -in KEY -out KEY.plain)"
                    .into(),
            ));
        }
        if !pem.contains("-----BEGIN ") {
            return Err(parse(
                "not a PEM file: there is no \"-----BEGIN PRIVATE KEY-----\" or \
                 \"-----BEGIN RSA PRIVATE KEY-----\" line"
                    .into(),
            ));
        }
        let (label, der) = pem::decode_vec(pem.as_bytes())
            .map_err(|e| parse(format!("not a valid PEM file: {e}")))?;
        let der = Zeroizing::new(der);
        let key = match label {
            "PRIVATE KEY" => {
                let info = PrivateKeyInfoRef::from_der(&der)
                    .map_err(|e| parse(format!("malformed PKCS#8 private key: {e}")))?;
                check_rsa_oid(info.algorithm.oid)?;
                PrivateKey::try_from(info)
                    .map_err(|e| parse(format!("invalid RSA private key: {e}")))?
            }
            "RSA PRIVATE KEY" => PrivateKey::from_pkcs1_der(&der)
                .map_err(|e| parse(format!("invalid PKCS#1 RSA private key: {e}")))?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(parse(
                    "the private key is encrypted with a passphrase, which OpenDKIM cannot \
                     use; decrypt it first (openssl pkey -in KEY -out KEY.plain)"
                        .into(),
                ));
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                return Err(parse(format!(
                    "this is a public key (\"BEGIN {label}\"); the private key is needed"
                )));
            }
            other => {
                return Err(parse(format!(
                    "unexpected PEM type \"BEGIN {other}\"; expected \"BEGIN PRIVATE KEY\" \
                     or \"BEGIN RSA PRIVATE KEY\""
                )));
            }
        };
        DkimPublicKey::from_rsa(&key.to_public_key())
            .map_err(|e| parse(format!("encoding the public key: {e}")))
    }

    /// Parse the p= value (base64 of the DER SubjectPublicKeyInfo) — used later to compare a key
    /// published in DNS with the key on disk.
    ///
    /// All ASCII whitespace is ignored, surrounding or inside (RFC 6376 allows folding
    /// whitespace within base64 tag values). An empty value is [`KeyError::Revoked`]. A bare
    /// PKCS#1 RSAPublicKey is refused, as OpenDKIM and OpenSSL-based verifiers cannot read it.
    pub fn from_p_value(p: &str) -> Result<DkimPublicKey, KeyError> {
        let compact: String = p.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if compact.is_empty() {
            return Err(KeyError::Revoked);
        }
        let der = Base64::decode_vec(&compact)
            .map_err(|e| KeyError::Parse(format!("the p= value is not valid base64: {e}")))?;
        let info = SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| {
            KeyError::Parse(format!(
                "the p= value is not a DER SubjectPublicKeyInfo (as opendkim-genkey and \
                 openssl write): {e}"
            ))
        })?;
        check_rsa_oid(info.algorithm.oid)?;
        let key = PublicKey::from_public_key_der(&der)
            .map_err(|e| KeyError::Parse(format!("invalid RSA public key in p=: {e}")))?;
        DkimPublicKey::from_rsa(&key)
            .map_err(|e| KeyError::Parse(format!("encoding the public key: {e}")))
    }

    /// Size of the modulus in bits (2048 for `opendkim-genkey -b 2048`).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// base64 of DER SubjectPublicKeyInfo, no whitespace: the DKIM p= tag.
    pub fn p_value(&self) -> String {
        Base64::encode_string(&self.spki)
    }

    /// The TXT record value: exactly "v=DKIM1; h=sha256; k=rsa; s=email; p=<p_value>"
    /// (the tag order opendkim-genkey -r -h sha256 uses).
    pub fn dns_value(&self) -> String {
        format!("{TAGS}p={}", self.p_value())
    }

    /// The content of `SELECTOR.txt` exactly as `opendkim-genkey -r -b BITS -h sha256 -s SEL
    /// -d DOMAIN` writes it (opendkim-tools 2.11):
    ///
    /// ```text
    /// SEL._domainkey<TAB>IN<TAB>TXT<TAB>( "v=DKIM1; h=sha256; k=rsa; s=email; "
    /// <TAB>  "p=<first 250 base64 characters>"
    /// <TAB>  "<next 250>"
    /// <TAB>  "<rest>" )  ; ----- DKIM key SEL for DOMAIN
    /// ```
    ///
    /// The base64 is cut every 250 characters (not counting `p=`). Like the Perl original,
    /// when its length is an exact multiple of 250 the record ends with an empty string `""`
    /// (harmless: DNS concatenates the strings). With an empty `domain` the comment is left
    /// out, again as the original does.
    pub fn genkey_txt(&self, selector: &str, domain: &str) -> String {
        genkey_txt_layout(&self.p_value(), selector, domain)
    }
}

/// The layout of `opendkim-genkey`'s `.txt` file for a given base64 key, a transcription of
/// its Perl loop (see [`DkimPublicKey::genkey_txt`]).
fn genkey_txt_layout(keydata: &str, selector: &str, domain: &str) -> String {
    let mut out = format!("{selector}._domainkey\tIN\tTXT\t( \"{TAGS}\"\n\t  \"p=");
    let mut rest = keydata;
    while !rest.is_empty() {
        if rest.len() < GENKEY_CHUNK {
            out.push_str(rest);
            rest = "";
        } else {
            // base64 is ASCII, so byte offsets are character offsets.
            let (chunk, tail) = rest.split_at(GENKEY_CHUNK);
            out.push_str(chunk);
            out.push_str("\"\n\t  \"");
            rest = tail;
        }
    }
    out.push_str("\" ) ");
    if !domain.is_empty() {
        out.push_str(&format!(" ; ----- DKIM key {selector} for {domain}"));
    }
    out.push('\n');
    out
}

/// `rsaEncryption`, the only algorithm DKIM `k=rsa` uses.
fn check_rsa_oid(oid: ObjectIdentifier) -> Result<(), KeyError> {
    if oid == rsa::pkcs1::ALGORITHM_OID {
        return Ok(());
    }
    let name = match oid.to_string().as_str() {
        "1.3.101.112" => "Ed25519".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        "1.2.840.10045.2.1" => "EC".to_string(),
        "1.2.840.113549.1.1.10" => "RSASSA-PSS, which cannot make rsa-sha256 signatures".into(),
        other => format!("OID {other}"),
    };
    Err(KeyError::Parse(format!(
        "not an RSA key ({name}); DKIM keys here are RSA (k=rsa)"
    )))
}

/// `N` bytes from the operating system's random generator (salts).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    <[u8; N]>::try_generate()
        .map_err(|e| KeyError::Generate(format!("the operating system's random generator: {e}")))
}

/// The operating system's random generator, reached through the `getrandom` support that the
/// `rsa` crate's default features enable (`Generate` for byte arrays draws from it), so no
/// extra dependency is needed.
#[derive(Default)]
struct OsRng {
    /// Why the last draw failed; `rsa` reduces RNG failures to a bare "rng error".
    failure: Option<String>,
}

/// An RNG failure, as the `TryRng` trait wants an error type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OsRngError(String);

impl TryRng for OsRng {
    type Error = OsRngError;

    fn try_next_u32(&mut self) -> Result<u32, OsRngError> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, OsRngError> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), OsRngError> {
        const CHUNK: usize = 256;
        for part in dst.chunks_mut(CHUNK) {
            let random = <[u8; CHUNK]>::try_generate().map_err(|e| {
                let msg = e.to_string();
                self.failure = Some(msg.clone());
                OsRngError(msg)
            })?;
            // The draw may become prime candidates: wipe the copy on the stack.
            let random = Zeroizing::new(random);
            part.copy_from_slice(&random[..part.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for OsRng {}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;

    /// One 1024-bit key shared by the tests that only need "a key".
    fn key() -> &'static DkimKey {
        static KEY: std::sync::OnceLock<DkimKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| DkimKey::generate(1024).expect("generate 1024"))
    }

    /// PKCS#8 label, 64-character body lines (the last may be shorter), LF, final newline.
    fn assert_pem_shape(pem: &str) {
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("\n-----END PRIVATE KEY-----\n"));
        assert!(!pem.contains('\r'));
        let body = pem_body_lines(pem);
        assert_eq!(body.len() + 2, pem.lines().count());
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64));
        assert!((1..=64).contains(&body.last().unwrap().len()));
    }

    /// The base64 body lines of a PEM, the part that must never leak.
    fn pem_body_lines(pem: &str) -> Vec<&str> {
        pem.lines()
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .collect()
    }

    #[test]
    fn check_bits_refuses_small_keys_citing_rfc_8301() {
        for bits in [0, 512, 768, 1000, 1023] {
            let err = check_bits(bits).unwrap_err();
            assert!(matches!(err, KeyError::TooSmall { bits: b } if b == bits));
            let msg = err.to_string();
            assert!(msg.contains("RFC 8301"), "{msg}");
            assert!(
                msg.contains("keys below 1024 bits are insecure (RFC 8301)"),
                "{msg}"
            );
            assert!(msg.contains(&bits.to_string()), "{msg}");
        }
    }

    #[test]
    fn check_bits_accepts_1024_to_2048_silently() {
        for bits in [1024, 1536, 2048] {
            assert_eq!(check_bits(bits).unwrap(), None, "{bits}");
        }
    }

    #[test]
    fn check_bits_warns_above_2048() {
        for bits in [2056, 3072, 4096, 8192] {
            let warning = check_bits(bits).unwrap().expect("a warning");
            assert!(warning.contains(&bits.to_string()), "{warning}");
            assert!(warning.contains("2048"), "{warning}");
        }
    }

    #[test]
    fn check_bits_refuses_absurd_and_odd_sizes() {
        assert!(matches!(
            check_bits(8200),
            Err(KeyError::TooLarge { bits: 8200 })
        ));
        assert!(matches!(check_bits(16384), Err(KeyError::TooLarge { .. })));
        assert!(matches!(
            check_bits(usize::MAX),
            Err(KeyError::TooLarge { .. })
        ));
        for bits in [2047, 2049, 2084, 1025] {
            let err = check_bits(bits).unwrap_err();
            assert!(matches!(err, KeyError::NotMultipleOf8 { .. }), "{bits}");
            assert!(err.to_string().contains("multiple"), "{err}");
        }
    }

    #[test]
    fn generate_refuses_what_check_bits_refuses() {
        assert!(matches!(
            DkimKey::generate(512),
            Err(KeyError::TooSmall { bits: 512 })
        ));
        assert!(matches!(
            DkimKey::generate(2049),
            Err(KeyError::NotMultipleOf8 { .. })
        ));
        assert!(matches!(
            DkimKey::generate(9000),
            Err(KeyError::TooLarge { .. })
        ));
    }

    #[test]
    fn generated_key_round_trips() {
        let key = key();
        let pem = key.private_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // 64-character lines and LF, as openssl (and so opendkim-genkey) writes them.
        assert_pem_shape(&pem);

        let public = key.public();
        assert_eq!(public.bits(), 1024);
        assert_eq!(DkimPublicKey::from_private_pem(&pem).unwrap(), public);

        let p = public.p_value();
        assert!(!p.contains(char::is_whitespace));
        assert!(
            p.starts_with("MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQ"),
            "{p}"
        );
        let back = DkimPublicKey::from_p_value(&p).unwrap();
        assert_eq!(back, public);
        assert_eq!(back.bits(), 1024);
        assert_eq!(back.p_value(), p);

        assert_eq!(
            public.dns_value(),
            format!("v=DKIM1; h=sha256; k=rsa; s=email; p={p}")
        );
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = DkimKey::generate(1024).unwrap().public();
        assert_ne!(a, key().public());
    }

    #[test]
    fn generate_2048_has_2048_bits() {
        let key = DkimKey::generate(2048).unwrap();
        assert_eq!(key.public().bits(), 2048);
        assert_eq!(format!("{key:?}"), "DkimKey { bits: 2048 }");
        // SPKI of a 2048-bit key is 294 bytes: 392 base64 characters.
        assert_eq!(key.public().p_value().len(), 392);
    }

    #[test]
    fn from_p_value_accepts_whitespace() {
        let public = key().public();
        let p = public.p_value();
        let (a, b) = p.split_at(100);
        for input in [
            format!("  {p}\n"),
            format!("\t{p} \r\n"),
            format!("{a} \r\n\t{b}"),
        ] {
            assert_eq!(DkimPublicKey::from_p_value(&input).unwrap(), public);
        }
    }

    #[test]
    fn from_private_pem_accepts_crlf_and_surrounding_whitespace() {
        let pem = key().private_pem();
        let crlf = pem.replace('\n', "\r\n");
        let padded = format!("\n\n  {}\n\n", pem.as_str());
        for input in [crlf.as_str(), padded.as_str(), pem.trim_end()] {
            assert_eq!(
                DkimPublicKey::from_private_pem(input).unwrap(),
                key().public()
            );
        }
    }

    #[test]
    fn pkcs1_pem_from_rsa_encoder_accepted() {
        use rsa::pkcs8::DecodePrivateKey;
        let rsa_key = PrivateKey::from_pkcs8_pem(&key().private_pem()).unwrap();
        let pkcs1 = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert_eq!(
            DkimPublicKey::from_private_pem(&pkcs1).unwrap(),
            key().public()
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = key();
        let debug = format!("{key:?}");
        assert_eq!(debug, "DkimKey { bits: 1024 }");
        let pretty = format!("{key:#?}");
        let pem = key.private_pem();
        let lines = pem_body_lines(&pem);
        assert!(lines.len() > 10);
        for line in lines {
            assert!(!debug.contains(line) && !pretty.contains(line));
        }
    }

    #[test]
    fn public_debug_shows_size_and_p() {
        let public = key().public();
        let debug = format!("{public:?}");
        assert!(
            debug.starts_with("DkimPublicKey { bits: 1024, p: \"MIGf"),
            "{debug}"
        );
    }

    #[test]
    fn errors_do_not_quote_private_input() {
        // A real key with a byte flipped deep inside: valid PEM, invalid key.
        let pem = key().private_pem();
        let mut lines: Vec<String> = pem.lines().map(str::to_string).collect();
        let mid = lines.len() / 2;
        let flipped: String = lines[mid]
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 10 {
                    if c == 'A' { 'B' } else { 'A' }
                } else {
                    c
                }
            })
            .collect();
        lines[mid] = flipped;
        let broken = lines.join("\n");
        // Truncated in the middle of the body, with an END line so it is still PEM.
        let truncated = format!(
            "{}\n-----END PRIVATE KEY-----\n",
            pem.lines().take(mid).collect::<Vec<_>>().join("\n")
        );
        for input in [broken, truncated] {
            match DkimPublicKey::from_private_pem(&input) {
                Ok(p) => assert_ne!(p, key().public(), "a corrupted key read back unchanged"),
                Err(e) => {
                    let msg = e.to_string();
                    for line in pem_body_lines(&input) {
                        assert!(!msg.contains(line), "error quotes the key: {msg}");
                    }
                    let debug = format!("{e:?}");
                    for line in pem_body_lines(&input) {
                        assert!(!debug.contains(line), "error Debug quotes the key");
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_private_pem_is_an_error() {
        let ed25519 = "-----BEGIN PRIVATE KEY-----\n\
                       MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                       -----END PRIVATE KEY-----\n";
        let public_pem = key()
            .public()
            .p_value()
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let public_pem =
            format!("-----BEGIN PUBLIC KEY-----\n{public_pem}\n-----END PUBLIC KEY-----\n");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "not a PEM file"),
            ("hello world".into(), "not a PEM file"),
            ("\0\u{1}\u{2}binary".into(), "not a PEM file"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n".into(), "not a valid PEM file"),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!not base64!!!!\n-----END PRIVATE KEY-----\n"
                    .into(),
                "not a valid PEM file",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
                "malformed PKCS#8",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n".into(),
                "malformed PKCS#8",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n"
                    .into(),
                "PKCS#1",
            ),
            (ed25519.into(), "Ed25519"),
            (public_pem, "public key"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQA=\n-----END ENCRYPTED PRIVATE KEY-----\n"
                    .into(),
                "encrypted",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n"
                    .into(),
                "encrypted",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n".into(),
                "CERTIFICATE",
            ),
        ];
        for (input, needle) in cases {
            let err = DkimPublicKey::from_private_pem(&input)
                .expect_err(&format!("accepted garbage {input:?}"));
            assert!(matches!(err, KeyError::Parse(_)), "{err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with("cannot read the DKIM key: "), "{msg}");
            assert!(msg.contains(needle), "{input:?}: {msg}");
        }
    }

    #[test]
    fn garbage_p_value_is_an_error() {
        assert!(matches!(
            DkimPublicKey::from_p_value(""),
            Err(KeyError::Revoked)
        ));
        assert!(matches!(
            DkimPublicKey::from_p_value(" \t\n"),
            Err(KeyError::Revoked)
        ));
        let p = key().public().p_value();
        let cases = [
            "!!!!".to_string(),
            "not base64 at all".into(),
            "AAAA".into(),
            p[..p.len() - 8].to_string(),
            format!("{p}AAAA"),
            // Ed25519 SubjectPublicKeyInfo (RFC 8410 section 10.1).
            "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=".into(),
        ];
        for input in &cases {
            let err = DkimPublicKey::from_p_value(input)
                .expect_err(&format!("accepted garbage {input:?}"));
            assert!(matches!(err, KeyError::Parse(_)), "{err:?}");
        }
        let err = DkimPublicKey::from_p_value(&cases[5]).unwrap_err();
        assert!(err.to_string().contains("Ed25519"), "{err}");
    }

    #[test]
    fn genkey_layout_cuts_like_the_perl_loop() {
        let body = |n: usize| "A".repeat(n);
        let head = "s._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; s=email; \"\n\t  \"p=";
        let tail = "\" )  ; ----- DKIM key s for d.example\n";
        assert_eq!(
            genkey_txt_layout(&body(10), "s", "d.example"),
            format!("{head}{}{tail}", body(10))
        );
        assert_eq!(
            genkey_txt_layout(&body(249), "s", "d.example"),
            format!("{head}{}{tail}", body(249))
        );
        // An exact multiple of 250 leaves an empty last string, as the original does.
        assert_eq!(
            genkey_txt_layout(&body(250), "s", "d.example"),
            format!("{head}{}\"\n\t  \"{tail}", body(250))
        );
        assert_eq!(
            genkey_txt_layout(&body(251), "s", "d.example"),
            format!("{head}{}\"\n\t  \"A{tail}", body(250))
        );
        assert_eq!(
            genkey_txt_layout(&body(500), "s", "d.example"),
            format!("{head}{}\"\n\t  \"{}\"\n\t  \"{tail}", body(250), body(250))
        );
        // No domain, no comment.
        assert_eq!(genkey_txt_layout("AB", "s", ""), format!("{head}AB\" ) \n"));
    }
}
