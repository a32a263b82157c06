//! Reading a spec file: YAML → `Spec`, with errors that name the file, line,
//! column and field path, and warnings for choices that work but surprise.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{RelayTls, Spec};

/// A spec that cannot be used. Callers match on it to tell a bad spec (exit 1 with
/// the location) from an unreadable file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    // The io error is part of this message, not a `source`: printed once.
    #[error("cannot read {}: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}:{column}: {path}{message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// The field path followed by ": ", or empty at the top level.
        path: String,
        message: String,
    },
}

/// Something legal but probably not what the operator wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Reads and parses a spec file.
pub fn load(file: &Path) -> Result<(Spec, Vec<Warning>), SpecError> {
    parse(&read_text(file)?, file)
}

/// The text of a spec file.
pub fn read_text(file: &Path) -> Result<String, SpecError> {
    // 100,000 domains with an alias each take a few MiB.
    crate::host::local::read_text(file, 64 << 20).map_err(|error| SpecError::Read {
        file: file.to_path_buf(),
        error,
    })
}

/// Parses spec text; `file` is only used in messages. A leading byte order mark
/// (as some Windows editors save files) is skipped.
pub fn parse(text: &str, file: &Path) -> Result<(Spec, Vec<Warning>), SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    tag_check(text, file)?;
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let segments: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
        let inner = e.into_inner();
        let (line, column) = inner
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = clean_message(&inner.to_string(), line, column);
        let path = if path == "." {
            String::new()
        } else {
            format!("{}: ", path.escape_debug())
        };
        let explained =
            super::explain::explain(text, &segments, &path, (line, column), &with_hint(message));
        SpecError::Invalid {
            file: file.to_path_buf(),
            line: explained.line,
            column: explained.column,
            path: explained.path,
            message: explained.message,
        }
    })?;
    fleet_check(&spec, text, file)?;
    subdomain_check(&spec, text, file)?;
    outbound_check(&spec, text, file)?;
    let warnings = warnings(&spec);
    Ok((spec, warnings))
}

/// YAML tags (`!something`) mean nothing to mailsetup; serde would drop them
/// silently, so a spec that uses one is refused, naming it. Only text with a
/// `!` in it is looked at twice.
fn tag_check(text: &str, file: &Path) -> Result<(), SpecError> {
    if !text.contains('!') {
        return Ok(());
    }
    // Broken YAML is reported by the real parse, with its location.
    let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Ok(());
    };
    let Some((path, tag)) = find_tag(&value, String::new()) else {
        return Ok(());
    };
    // Its place: the first line holding the tag outside a comment.
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let code = l.split(" #").next().unwrap_or(l);
            code.find(&tag).map(|c| (i + 1, c + 1))
        })
        .unwrap_or((1, 1));
    Err(SpecError::Invalid {
        file: file.to_path_buf(),
        line,
        column,
        path: if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        },
        message: format!(
            "the YAML tag {tag} means nothing to mailsetup and would be ignored; remove it \
             (quote the value if the `!` belongs to it)"
        ),
    })
}

/// The first tagged value and its field path.
fn find_tag(value: &serde_yaml_ng::Value, path: String) -> Option<(String, String)> {
    use serde_yaml_ng::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Tagged(t) => Some((path, t.tag.to_string())),
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            if let Value::Tagged(t) = k {
                return Some((path.clone(), t.tag.to_string()));
            }
            let key = match k {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            };
            find_tag(v, join(&key))
        }),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_tag(v, format!("{path}[{i}]"))),
        _ => None,
    }
}

/// A single host names its hostname; a fleet names one per host.
fn fleet_check(spec: &Spec, text: &str, file: &Path) -> Result<(), SpecError> {
    let (key, message) = match (&spec.host.hostname, spec.hosts.is_empty()) {
        (None, true) => (
            "host",
            "host.hostname: required (or list the fleet under `hosts`)",
        ),
        (Some(_), false) => (
            "hosts",
            "hosts: each host of a fleet names its own hostname; remove host.hostname",
        ),
        _ => return selector_check(spec, text, file),
    };
    Err(SpecError::Invalid {
        file: file.to_path_buf(),
        line: top_level_line(text, key),
        column: 1,
        path: String::new(),
        message: message.to_string(),
    })
}

/// The hosts of a fleet sign with selectors of their own: two hosts whose
/// patterns can give the same selector would publish, and with `dns --push`
/// replace, each other's DKIM record.
fn selector_check(spec: &Spec, text: &str, file: &Path) -> Result<(), SpecError> {
    let patterns: Vec<(&str, String)> = spec
        .hosts
        .iter()
        .map(|(name, host)| {
            let pattern = match &host.selector {
                Some(s) => s.as_str().to_string(),
                None => format!("{name}-{}", super::names::DATE_PLACEHOLDER),
            };
            (name.as_str(), pattern)
        })
        .collect();
    for (i, (a, pa)) in patterns.iter().enumerate() {
        for (b, pb) in &patterns[i + 1..] {
            // A second key on one day gets `-2`: sample both forms of each.
            let clash = [pa, pb].iter().zip([pb, pa]).find_map(|(one, other)| {
                let sample = one.replace(super::names::DATE_PLACEHOLDER, "20261124");
                [sample.clone(), format!("{sample}-2")]
                    .into_iter()
                    .find(|s| selector_matches(other, s))
            });
            if let Some(selector) = clash {
                return Err(SpecError::Invalid {
                    file: file.to_path_buf(),
                    line: top_level_line(text, "hosts"),
                    column: 1,
                    path: String::new(),
                    message: format!(
                        "hosts: {a} and {b} can sign with the same selector ({selector}): give \
                         each host a selector of its own, or one host's DKIM record replaces the \
                         other's"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Whether `pattern` (with at most one `{date}`) can give `selector`, a `-N`
/// suffix for a second key on one day included.
fn selector_matches(pattern: &str, selector: &str) -> bool {
    let base = match selector.rsplit_once('-') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            [selector, head]
        }
        _ => [selector, selector],
    };
    base.iter()
        .any(|s| *s == pattern || super::names::date_in(pattern, s).is_some())
}

/// Listed sending subdomains make valid names, each once, none of them a
/// sending domain of its own.
fn subdomain_check(spec: &Spec, text: &str, file: &Path) -> Result<(), SpecError> {
    let mut seen = std::collections::HashSet::new();
    for (domain, settings) in &spec.domains {
        for label in settings.iter().flat_map(|s| &s.subdomains) {
            let name = format!("{label}.{domain}");
            let problem = if name.parse::<super::DomainName>().is_err() {
                Some(format!("{name} is longer than a domain name may be"))
            } else if spec.domains.keys().any(|d| d.as_str() == name) {
                Some(format!(
                    "{name} is a sending domain of its own: list it in one place"
                ))
            } else if !seen.insert(name.clone()) {
                Some(format!("{name} is listed twice"))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(SpecError::Invalid {
                    file: file.to_path_buf(),
                    line: text
                        .lines()
                        .position(|l| l.contains("subdomains:") && l.contains(label.as_str()))
                        .or_else(|| {
                            text.lines()
                                .position(|l| l.trim_start().starts_with("subdomains:"))
                        })
                        .map_or(1, |i| i + 1),
                    column: 1,
                    path: format!("domains.{domain}.subdomains: "),
                    message,
                });
            }
        }
    }
    Ok(())
}

/// `outbound` agrees with itself and with `host.relay`.
fn outbound_check(spec: &Spec, text: &str, file: &Path) -> Result<(), SpecError> {
    let Some((path, message)) = super::outbound::problem(spec) else {
        return Ok(());
    };
    // Each segment of the path found after the one before it.
    let mut line = 0;
    for segment in path.split('.') {
        match text
            .lines()
            .enumerate()
            .skip(line)
            .find(|(_, l)| l.trim_start().starts_with(&format!("{segment}:")))
        {
            Some((i, _)) => line = i,
            None => break,
        }
    }
    let line = line + 1;
    Err(SpecError::Invalid {
        file: file.to_path_buf(),
        line,
        column: 1,
        path: format!("{path}: "),
        message,
    })
}

/// The line of a top-level key, for errors found after parsing.
fn top_level_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map_or(1, |i| i + 1)
}

/// serde_yaml_ng puts its own (shorter) path in front and the location behind;
/// we print both ourselves.
fn clean_message(raw: &str, line: usize, column: usize) -> String {
    let msg = raw
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(raw);
    match msg.split_once(": ") {
        Some((head, rest)) if !head.contains([' ', '`']) => rest.to_string(),
        _ => msg.to_string(),
    }
}

/// Adds "did you mean `x`?" to serde's "unknown field/variant `y`, expected one of …".
fn with_hint(message: String) -> String {
    let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message;
    };
    let Some((given, expected)) = rest.split_once('`') else {
        return message;
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::jaro_winkler(given, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, candidate)) => format!("{message} (did you mean `{candidate}`?)"),
        None => message,
    }
}

/// Local names that exist on every Debian system, so an alias may point at them.
const SYSTEM_ACCOUNTS: &[&str] = &["root", "postmaster", "mail", "www-data", "nobody"];

fn warnings(spec: &Spec) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut warn = |path: &str, message: String| {
        out.push(Warning {
            path: path.to_string(),
            message,
        })
    };
    if let Some(w) = crate::keys::check_bits(spec.dkim.bits.get()).ok().flatten() {
        warn("dkim.bits", w);
    }
    let grace = spec.dkim.rotation.grace_days.get();
    if grace < super::QUEUE_LIFETIME_DAYS {
        warn(
            "dkim.rotation.grace_days",
            format!(
                "{grace} day(s) is shorter than Postfix's maximal_queue_lifetime \
                 ({}d): a message signed with a retiring key can still be waiting to leave \
                 when its grace ends; rotate finish and rotate auto then wait for the queue \
                 to let it go (or for --force)",
                super::QUEUE_LIFETIME_DAYS
            ),
        );
    }
    // Every host's mailname: the spec's own, or each (fleet) host's name.
    let mailnames: Vec<&super::DomainName> = match &spec.host.mailname {
        Some(m) => vec![m],
        None => spec.sending_hosts(),
    };
    for mailname in &mailnames {
        if let super::SystemMail::Outside = spec.system_mail_of(mailname) {
            warn(
                "host.mailname",
                format!(
                    "system mail (root@{mailname}: cron, apticron, bounces) is under none of \
                     the domains: it is not DKIM-signed, and its SPF record is yours to \
                     publish; set host.mailname to a name under a listed domain, or list its \
                     domain"
                ),
            );
        }
    }
    for mailname in mailnames
        .into_iter()
        .filter(|m| spec.domains.contains_key(*m))
    {
        warn(
            "host.mailname",
            format!(
                "{mailname} is a sending domain: Postfix will treat every @{mailname} address as \
                 local, so mail to addresses there that are not in aliases bounces instead of \
                 reaching their mailbox"
            ),
        );
    }
    if let Some(relay) = &spec.host.relay
        && relay.auth.is_some()
        && relay.tls != RelayTls::Encrypt
    {
        warn(
            "host.relay.tls",
            "the relay password may be sent without TLS; use `tls: encrypt`".to_string(),
        );
    }
    // DMARC combinations that make some sender fail; one warning each, naming
    // the domains (a spec may have 100,000).
    let strict = |a: Option<super::Alignment>| a == Some(super::Alignment::Strict);
    let mut unaligned = Vec::new();
    let mut no_spf = Vec::new();
    let mut unreported = Vec::new();
    for domain in spec.domains() {
        if spec.dkim.subdomains && strict(domain.dmarc.adkim) {
            unaligned.push(domain.name);
        } else if spec.dkim.subdomains && strict(domain.dmarc.aspf) {
            no_spf.push(domain.name);
        }
        if domain.dmarc.p != super::DmarcPolicy::None && domain.dmarc.rua.is_empty() {
            unreported.push(domain.name);
        }
    }
    if !unaligned.is_empty() {
        warn(
            "dmarc.adkim",
            format!(
                "dkim.subdomains signs mail from the unlisted subdomains of {} as the parent \
                 domain, which strict DKIM alignment (adkim: s) does not accept: that mail \
                 fails DMARC. List the subdomains that send under domains.DOMAIN.subdomains \
                 (each is then signed as itself) and set dkim.subdomains: false, or use adkim: r",
                some(&unaligned)
            ),
        );
    }
    if !no_spf.is_empty() {
        warn(
            "dmarc.aspf",
            format!(
                "mail from the unlisted subdomains of {} leaves with its envelope sender on the \
                 domain (so SPF passes), which strict SPF alignment (aspf: s) does not count: it \
                 passes DMARC on DKIM alone. List the subdomains that send under \
                 domains.DOMAIN.subdomains: each then has SPF and DKIM of its own",
                some(&no_spf)
            ),
        );
    }
    if !unreported.is_empty() {
        warn(
            "dmarc.rua",
            format!(
                "{}: a quarantine or reject policy without rua: receivers act on failing mail \
                 and nobody hears of it; add an address for aggregate reports",
                some(&unreported)
            ),
        );
    }
    for (name, targets) in spec.aliases.iter() {
        for target in targets {
            let t = target.as_str();
            let known_local =
                !t.contains('@') && (spec.aliases.get(t).is_some() || SYSTEM_ACCOUNTS.contains(&t));
            if !t.contains('@') && !known_local {
                warn(
                    &format!("aliases.{name}"),
                    format!(
                        "`{t}` is neither an alias here nor a common system account; mail to it \
                         stays on this host"
                    ),
                );
            }
        }
    }
    out
}

/// A few names, for a message: `a, b, c and 97 more`.
fn some(names: &[&super::DomainName]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(|n| n.as_str()).collect();
    match names.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

/// A value given either as one item or as a list of items (its JSON Schema).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[expect(dead_code, reason = "only describes the accepted shapes to schemars")]
#[serde(untagged)]
pub enum OneOrManySchema<T> {
    One(T),
    Many(Vec<T>),
}

/// Accepts `x` or `[x, y]`.
#[derive(Clone, Debug)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        OneOrManySchema::<T>::json_schema(generator)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: DeserializeOwned> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(serde::de::value::StrDeserializer::<E>::new(v))
                    .map(|one| OneOrMany(vec![one]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Like `unique_map`, and at least one entry.
pub fn non_empty_map<'de, D, K, V>(d: D) -> Result<IndexMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Hash + Eq + fmt::Display,
    V: Deserialize<'de>,
{
    let map = unique_map(d)?;
    if map.is_empty() {
        return Err(serde::de::Error::custom("is empty"));
    }
    Ok(map)
}

/// A map whose keys must not repeat (YAML allows it; a repeated domain is a mistake).
pub fn unique_map<'de, D, K, V>(d: D) -> Result<IndexMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Hash + Eq + fmt::Display,
    V: Deserialize<'de>,
{
    struct MapV<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for MapV<K, V>
    where
        K: Deserialize<'de> + Hash + Eq + fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = IndexMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(key) = map.next_key::<K>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("`{key}` is listed twice")));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(MapV(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        parse(yaml, Path::new("t.yaml")).unwrap_err().to_string()
    }

    const MIN: &str = "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\naliases:\n  root: ops@example.net\n";

    #[test]
    fn minimal_spec_gets_defaults() {
        let (spec, warnings) = parse(MIN, Path::new("t.yaml")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            spec.for_host(None).unwrap().mailname().as_str(),
            "mail.example.com"
        );
        assert_eq!(spec.dkim.bits.get(), 2048);
        assert_eq!(spec.dkim.selector.as_str(), "{date}");
        let postmaster = spec.aliases.get("postmaster").unwrap();
        assert_eq!(postmaster[0].as_str(), "root");
        let d: Vec<_> = spec.domains().collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].spf.all, super::super::SpfAll::Fail);
    }

    #[test]
    fn errors_name_file_line_column_and_path() {
        let e = err(
            "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n    dmarc:\n      p: rejct\naliases:\n  root: a@b.net\n",
        );
        assert!(e.starts_with("t.yaml:6:"), "{e}");
        assert!(e.contains("domains.example.com.dmarc.p"), "{e}");
        assert!(e.contains("did you mean `reject`?"), "{e}");
    }

    #[test]
    fn unknown_fields_get_a_hint() {
        let e = err("host:\n  hostnme: mail.example.com\n");
        assert!(e.contains("unknown field `hostnme`"), "{e}");
        assert!(e.contains("did you mean `hostname`?"), "{e}");
        assert!(e.starts_with("t.yaml:2:"), "{e}");
    }

    #[test]
    fn injected_newlines_are_refused() {
        let e = err(
            "host:\n  hostname: \"mail.example.com\\nrelayhost = evil\"\ndomains:\n  example.com:\naliases:\n  root: a@b.net\n",
        );
        assert!(e.contains("host.hostname"), "{e}");
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn duplicate_domains_and_missing_root_are_refused() {
        let e = err(
            "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n  Example.com:\naliases:\n  root: a@b.net\n",
        );
        assert!(e.contains("listed twice"), "{e}");
        let e = err(
            "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\naliases:\n  monit: root\n",
        );
        assert!(e.contains("`root` is missing"), "{e}");
        let e =
            err("host:\n  hostname: mail.example.com\ndomains: {}\naliases:\n  root: a@b.net\n");
        assert!(e.contains("domains: is empty"), "{e}");
    }

    #[test]
    fn small_keys_are_refused_with_the_reason() {
        let e = err(&format!("{MIN}dkim:\n  bits: 512\n"));
        assert!(e.contains("dkim.bits"), "{e}");
        assert!(e.contains("RFC 8301"), "{e}");
    }

    #[test]
    fn ed25519_is_refused_with_the_reason_and_rsa_is_the_default() {
        let (spec, _) = parse(MIN, Path::new("t.yaml")).unwrap();
        assert_eq!(spec.dkim.algorithms, [super::super::Algorithm::Rsa]);
        let (spec, _) = parse(
            &format!("{MIN}dkim:\n  algorithms: [rsa]\n"),
            Path::new("t.yaml"),
        )
        .unwrap();
        assert_eq!(spec.dkim.algorithms, [super::super::Algorithm::Rsa]);
        let e = err(&format!("{MIN}dkim:\n  algorithms: [rsa, ed25519]\n"));
        assert!(e.contains("dkim.algorithms"), "{e}");
        assert!(e.contains("one SignatureAlgorithm per process"), "{e}");
        let e = err(&format!("{MIN}dkim:\n  algorithms: [rsa, dsa]\n"));
        assert!(e.contains("unknown algorithm `dsa`"), "{e}");
        let e = err(&format!("{MIN}dkim:\n  algorithms: []\n"));
        assert!(e.contains("is empty"), "{e}");
        let e = err(&format!("{MIN}dkim:\n  algorithms: [rsa, rsa]\n"));
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn fleet_hosts_need_selectors_of_their_own() {
        let fleet = |a: &str, b: &str| {
            format!(
                "hosts:\n  mta01:\n    hostname: a.example.com\n{a}  mta02:\n    hostname: b.example.com\n{b}\
                 domains:\n  example.com:\naliases:\n  root: ops@example.net\n"
            )
        };
        let sel = |s: &str| format!("    selector: \"{s}\"\n");
        assert!(parse(&fleet("", ""), Path::new("t.yaml")).is_ok());
        assert!(parse(&fleet(&sel("mail"), &sel("mail2")), Path::new("t.yaml")).is_ok());
        assert!(parse(&fleet(&sel("a{date}"), &sel("{date}")), Path::new("t.yaml")).is_ok());
        for (a, b, clash) in [
            ("mail", "mail", "mail"),
            ("{date}", "{date}", "20261124"),
            ("mta02-20261124", "", "mta02-20261124"),
            ("{date}", "{date}-2", "20261124-2"),
        ] {
            let b = if b.is_empty() { String::new() } else { sel(b) };
            let e = parse(&fleet(&sel(a), &b), Path::new("t.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("the same selector") && e.contains(clash),
                "{a} {b}: {e}"
            );
        }
    }

    #[test]
    fn big_keys_and_local_mailname_warn() {
        let (_, w) = parse(
            &format!("{MIN}dkim:\n  bits: 4096\n").replace(
                "hostname: mail.example.com\n",
                "hostname: mail.example.com\n  mailname: example.com\n",
            ),
            Path::new("t.yaml"),
        )
        .unwrap();
        let paths: Vec<_> = w.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, ["dkim.bits", "host.mailname"]);
    }

    #[test]
    fn a_grace_shorter_than_the_queue_lifetime_warns() {
        let with = |days: u16| {
            let text = format!("{MIN}dkim:\n  rotation:\n    grace_days: {days}\n");
            parse(&text, Path::new("t.yaml")).unwrap().1
        };
        let w = with(super::super::QUEUE_LIFETIME_DAYS - 1);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "dkim.rotation.grace_days");
        assert!(
            w[0].message.contains("maximal_queue_lifetime (5d)"),
            "{w:?}"
        );
        assert!(with(super::super::QUEUE_LIFETIME_DAYS).is_empty());
    }

    #[test]
    fn hint_picks_the_closest_candidate() {
        assert_eq!(
            with_hint("unknown variant `pre-domain`, expected `shared` or `per-domain`".into()),
            "unknown variant `pre-domain`, expected `shared` or `per-domain` (did you mean `per-domain`?)"
        );
        assert_eq!(
            with_hint("unknown field `zzz`, expected `a` or `b`".into()),
            "unknown field `zzz`, expected `a` or `b`"
        );
    }
}
