//! `mailsetup dns --push`: publish the records with RFC 2136 dynamic updates,
//! signed with TSIG, at each zone's primary server.
//!
//! Only what mailsetup owns is touched: the SPF value (`v=spf1…`) among a
//! name's TXT records, and the whole TXT set at `_domainkey`, `_dmarc` and
//! report-authorization names. Each zone gets one update whose prerequisites
//! are the TXT sets as read, so an edit made in between fails the update
//! instead of being overwritten. Then the server is asked again.

pub mod tsig;
mod wire;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

use anyhow::{Result, bail};

use crate::dns::{Kind, Record};

pub use wire::Primary;

use crate::host::{Host, ReadOnly};
use crate::spec::{ResolverAddr, Spec};

/// What the command line says of every zone's server and key.
pub struct Targets<'a> {
    pub server: Option<ResolverAddr>,
    /// A file as given (not under --root).
    pub tsig_key: Option<&'a std::path::Path>,
}

/// The zones mailsetup updates: `dns.zones`, or else every domain of the spec.
pub fn zone_names(spec: &Spec) -> Vec<String> {
    if spec.dns.zones.is_empty() {
        spec.domains.keys().map(ToString::to_string).collect()
    } else {
        spec.dns.zones.keys().map(ToString::to_string).collect()
    }
}

/// Pushes `records` to their zones' primaries and deletes the `withdrawn` DKIM
/// names (`send` false: a dry run).
pub fn run(
    spec: &Spec,
    system: &impl Host,
    targets: &Targets,
    records: &[crate::dns::Record],
    withdrawn: &[String],
    send: bool,
) -> Result<Pushed> {
    let names = zone_names(spec);
    let mut all = wanted(records);
    all.extend(withdrawn.iter().map(|name| Wanted {
        name: name.clone(),
        kind: Kind::Dkim,
        values: Vec::new(),
    }));
    let (grouped, outside) = by_zone(all, &names);
    let mut keys: BTreeMap<String, tsig::Key> = BTreeMap::new();
    let mut zones = Vec::new();
    for (name, wanted) in grouped {
        let own = spec
            .dns
            .zones
            .iter()
            .find(|(z, _)| z.as_str() == name)
            .and_then(|(_, settings)| settings.as_ref());
        let server = targets
            .server
            .or(own.and_then(|z| z.server))
            .or(spec.dns.server)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "zone {name}: no primary server to push to: set dns.server in the spec or pass --server"
                )
            })?;
        let (file, system_for_file) = match targets.tsig_key {
            Some(path) => (std::path::absolute(path)?.to_string_lossy().into_owned(), None),
            None => (
                own.and_then(|z| z.tsig_key.as_ref())
                    .or(spec.dns.tsig_key.as_ref())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "zone {name}: no TSIG key to sign the update with: set dns.tsig_key in the spec or pass --tsig-key"
                        )
                    })?
                    .to_string(),
                Some(system as &dyn Host),
            ),
        };
        let key = match keys.get(&file) {
            Some(key) => key.clone(),
            None => {
                let key = read_key(system_for_file, &file)?;
                keys.insert(file, key.clone());
                key
            }
        };
        zones.push((
            Zone {
                name,
                server: server.socket_addr(),
                key,
            },
            wanted,
        ));
    }
    let mut pushed = push(zones, spec.dns.ttl.get(), send)?;
    for w in outside.iter().filter(|w| !w.values.is_empty()) {
        let _ = writeln!(
            pushed.text,
            "not pushed: {} is in none of the zones ({}); its owner publishes it",
            w.name,
            names.join(", ")
        );
    }
    Ok(pushed)
}

/// What a push did, for the operator.
pub struct Pushed {
    pub text: String,
    /// Whether any zone needed a change.
    pub changed: bool,
    /// The zones that were not updated as they should be (`text` says why).
    pub failed: Vec<String>,
}

impl Pushed {
    /// An error naming the failed zones, if any.
    pub fn result(&self) -> Result<()> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            bail!(
                "not brought up to date (see above): {}",
                self.failed.join(", ")
            )
        }
    }
}

/// A TSIG key file: under the target system for the spec's, as given for `--tsig-key`.
fn read_key(system: Option<&dyn Host>, file: &str) -> Result<tsig::Key> {
    let here;
    let system = match system {
        Some(s) => s,
        None => {
            here = ReadOnly::new(std::path::Path::new("/"))?;
            &here
        }
    };
    let text = system
        .read_secret(file, "TSIG key file")?
        .ok_or_else(|| anyhow::anyhow!("the TSIG key file {file} does not exist"))?;
    tsig::parse(&text).map_err(|e| anyhow::anyhow!("the TSIG key file {file}: {e}"))
}

/// Where one zone's updates go.
#[derive(Clone, Debug)]
pub struct Zone {
    pub name: String,
    pub server: SocketAddr,
    pub key: tsig::Key,
}

/// One TXT record as the server holds it: its strings byte for byte (what
/// prerequisites and deletes must repeat exactly, however it was split), and
/// their joined text (what is compared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txt {
    pub strings: Vec<Vec<u8>>,
    pub value: String,
}

impl Txt {
    pub fn from_strings(strings: Vec<Vec<u8>>) -> Txt {
        // Joined first, decoded after: a character split across two strings stays whole.
        let value = String::from_utf8_lossy(&strings.concat()).into_owned();
        Txt { strings, value }
    }
}

/// One name's TXT records: what the server has, and what mailsetup changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameChange {
    pub name: String,
    /// Every TXT record served at the name, as read (the prerequisite).
    pub served: Vec<Txt>,
    pub remove: Vec<Txt>,
    pub add: Vec<String>,
}

/// What one zone needs.
#[derive(Clone, Debug)]
pub struct ZoneChange {
    pub zone: Zone,
    pub changes: Vec<NameChange>,
    /// Names already as they should be.
    pub unchanged: usize,
    /// TTL of the records added.
    pub ttl: u32,
}

/// The wanted TXT values of one name mailsetup owns, and how it owns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub kind: Kind,
    pub values: Vec<String>,
}

/// The records grouped by name, in the order given.
pub fn wanted(records: &[Record]) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    let mut at: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        match at.get(r.name.as_str()) {
            Some(&i) => out[i].values.push(r.value.clone()),
            None => {
                at.insert(&r.name, out.len());
                out.push(Wanted {
                    name: r.name.clone(),
                    kind: r.kind,
                    values: vec![r.value.clone()],
                });
            }
        }
    }
    out
}

/// Whether a served value at a name of this kind is mailsetup's to replace:
/// only the SPF record among others (site verifications…) at a domain.
fn owned(kind: Kind, value: &str) -> bool {
    match kind {
        Kind::Spf => {
            let v = value.trim_start().as_bytes();
            v.get(..6)
                .is_some_and(|b| b.eq_ignore_ascii_case(b"v=spf1"))
                && matches!(v.get(6), None | Some(b' '))
        }
        Kind::Dkim | Kind::Dmarc | Kind::DmarcReportAuth => true,
    }
}

/// What must change at one name, given what the server serves there.
pub fn change(wanted: &Wanted, served: Vec<Txt>) -> Option<NameChange> {
    let ours: Vec<&Txt> = served
        .iter()
        .filter(|t| owned(wanted.kind, &t.value))
        .collect();
    let remove: Vec<Txt> = ours
        .iter()
        .filter(|t| !wanted.values.contains(&t.value))
        .map(|t| (*t).clone())
        .collect();
    let add: Vec<String> = wanted
        .values
        .iter()
        .filter(|v| !ours.iter().any(|t| &t.value == *v))
        .cloned()
        .collect();
    (!remove.is_empty() || !add.is_empty()).then(|| NameChange {
        name: wanted.name.clone(),
        served,
        remove,
        add,
    })
}

/// The zone holding `name`: the longest of `zones` it is in.
pub fn zone_of<'a>(name: &str, zones: &'a [String]) -> Option<&'a str> {
    zones
        .iter()
        .filter(|z| name == z.as_str() || name.ends_with(&format!(".{z}")))
        .max_by_key(|z| z.len())
        .map(String::as_str)
}

/// Groups the wanted names by zone; names in none of them are returned apart
/// (a report authorization at somebody else's domain).
pub fn by_zone(
    wanted: Vec<Wanted>,
    zones: &[String],
) -> (BTreeMap<String, Vec<Wanted>>, Vec<Wanted>) {
    let mut grouped: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
    let mut outside = Vec::new();
    for w in wanted {
        match zone_of(&w.name, zones) {
            Some(z) => grouped.entry(z.to_string()).or_default().push(w),
            None => outside.push(w),
        }
    }
    (grouped, outside)
}

/// Reads what each zone serves and works out the changes; with `send`, pushes
/// them and reads back what the server then serves.
pub fn push(zones: Vec<(Zone, Vec<Wanted>)>, ttl: u32, send: bool) -> Result<Pushed> {
    // Every zone is read before anything is sent: a zone that cannot be read
    // (wrong server, refused) stops the push with no zone half-published.
    let mut read = Vec::new();
    for (zone, wanted) in zones {
        let primary = Primary::connect(&zone)?;
        let served = primary.txt_sets(wanted.iter().map(|w| w.name.as_str()))?;
        let mut changes = Vec::new();
        for (w, served) in wanted.iter().zip(served) {
            changes.extend(change(w, served));
        }
        let zc = ZoneChange {
            ttl,
            unchanged: wanted.len() - changes.len(),
            changes,
            zone,
        };
        read.push((primary, zc, wanted));
    }
    let mut text = String::new();
    let mut failed = Vec::new();
    let changed = read.iter().any(|(_, zc, _)| !zc.changes.is_empty());
    for (primary, zc, wanted) in read {
        text += &describe(&zc, send);
        if !send || zc.changes.is_empty() {
            continue;
        }
        // A zone that fails does not stop the others: each says how it went.
        if let Err(e) = primary.update(&zc) {
            let _ = writeln!(text, "  not updated: {e:#}");
            failed.push(zc.zone.name.clone());
            continue;
        }
        // Read back: the server must now serve what was sent.
        let names: Vec<&str> = zc.changes.iter().map(|c| c.name.as_str()).collect();
        let now = primary.txt_sets(names.iter().copied())?;
        let by_name: BTreeMap<&str, &Wanted> =
            wanted.iter().map(|w| (w.name.as_str(), w)).collect();
        let wrong: Vec<String> = names
            .iter()
            .zip(now)
            .filter_map(|(name, served)| {
                change(by_name[name], served).map(|left| {
                    let values: Vec<&str> = left.served.iter().map(|t| t.value.as_str()).collect();
                    format!("{name} serves {values:?}")
                })
            })
            .collect();
        if wrong.is_empty() {
            let _ = writeln!(text, "  {} served as pushed", plural(names.len(), "name"));
        } else {
            let _ = writeln!(
                text,
                "  the server accepted the update but does not serve it: {}",
                wrong.join("; ")
            );
            failed.push(zc.zone.name.clone());
        }
    }
    Ok(Pushed {
        text,
        changed,
        failed,
    })
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The changes of one zone, as `plan` shows files: + added, - removed.
pub fn describe(zc: &ZoneChange, sending: bool) -> String {
    let mut out = format!(
        "{} (primary {}, key {}):",
        zc.zone.name, zc.zone.server, zc.zone.key.name
    );
    if zc.changes.is_empty() {
        let _ = writeln!(out, " {} as they should be", plural(zc.unchanged, "name"));
        return out;
    }
    out.push('\n');
    for c in &zc.changes {
        for t in &c.remove {
            let _ = writeln!(
                out,
                "  - {} TXT {}",
                c.name,
                crate::dns::split_txt(&t.value)
            );
        }
        for v in &c.add {
            let _ = writeln!(out, "  + {} TXT {}", c.name, crate::dns::split_txt(v));
        }
    }
    let _ = writeln!(
        out,
        "  {} to change{}, {} as they should be",
        plural(zc.changes.len(), "name"),
        if sending {
            ""
        } else {
            " (dry run: nothing sent)"
        },
        zc.unchanged
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(name: &str, kind: Kind, values: &[&str]) -> Wanted {
        Wanted {
            name: name.into(),
            kind,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn txts(v: &[&str]) -> Vec<Txt> {
        v.iter()
            .map(|s| Txt::from_strings(vec![s.as_bytes().to_vec()]))
            .collect()
    }

    fn values(t: &[Txt]) -> Vec<&str> {
        t.iter().map(|t| t.value.as_str()).collect()
    }

    #[test]
    fn only_the_spf_value_among_a_domains_txt_records_is_ours() {
        let w = wanted("example.com", Kind::Spf, &["v=spf1 a -all"]);
        let served = txts(&[
            "google-site-verification=x",
            "v=spf1 mx ~all",
            "v=spf10 x",
            "ab\u{e9}cdef",
        ]);
        let c = change(&w, served.clone()).unwrap();
        assert_eq!(values(&c.remove), ["v=spf1 mx ~all"]);
        assert_eq!(c.add, ["v=spf1 a -all"]);
        assert_eq!(c.served, served);
        let same = txts(&["google-site-verification=x", "v=spf1 a -all"]);
        assert_eq!(change(&w, same), None);
        // Split anywhere, even inside a character: compared as the joined value,
        // removed with its own strings.
        let split = Txt::from_strings(vec![b"v=spf1 \xc3".to_vec(), b"\xa9 -all".to_vec()]);
        assert_eq!(split.value, "v=spf1 \u{e9} -all");
        let c = change(&w, vec![split.clone()]).unwrap();
        assert_eq!(c.remove, [split]);
    }

    #[test]
    fn dkim_and_dmarc_names_are_ours_whole() {
        let w = wanted("_dmarc.example.com", Kind::Dmarc, &["v=DMARC1; p=none"]);
        let c = change(&w, txts(&["v=DMARC1; p=reject", "stray"])).unwrap();
        assert_eq!(values(&c.remove), ["v=DMARC1; p=reject", "stray"]);
        assert_eq!(c.add, ["v=DMARC1; p=none"]);
        let c = change(&w, Vec::new()).unwrap();
        assert!(c.remove.is_empty() && c.served.is_empty());
    }

    #[test]
    fn names_go_to_the_longest_zone_they_are_in() {
        let zones = strings(&["example.com", "mail.example.com", "example.org"]);
        assert_eq!(zone_of("_dmarc.example.com", &zones), Some("example.com"));
        assert_eq!(
            zone_of("x._domainkey.mail.example.com", &zones),
            Some("mail.example.com")
        );
        assert_eq!(zone_of("example.org", &zones), Some("example.org"));
        assert_eq!(zone_of("badexample.com", &zones), None);
        let (grouped, outside) = by_zone(
            vec![
                wanted("example.com", Kind::Spf, &["v=spf1 -all"]),
                wanted(
                    "example.com._report._dmarc.example.net",
                    Kind::DmarcReportAuth,
                    &["v=DMARC1"],
                ),
            ],
            &zones,
        );
        assert_eq!(grouped["example.com"].len(), 1);
        assert_eq!(outside.len(), 1);
    }
}
