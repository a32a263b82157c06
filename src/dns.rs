//! The DNS records to publish: SPF, DKIM, DMARC and DMARC report authorization,
//! as a BIND zone snippet or JSON for DNS-provider tooling.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::desired::{Key, key_set_of};
use crate::keys::DkimPublicKey;
use crate::selector::{DkimSelector, DkimValue, State};
use crate::spec::{Alignment, DmarcPolicy, Domain, DomainName, HostSpec, SpfAll, SystemMail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Spf,
    Dkim,
    Dmarc,
    DmarcReportAuth,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    pub kind: Kind,
    /// Fully qualified, without the trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: &'static str,
    /// The whole value, unsplit.
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn txt(kind: Kind, name: String, value: String) -> Record {
    Record {
        kind,
        name,
        rtype: "TXT",
        value,
        note: None,
    }
}

/// What DKIM publishes for a revoked selector (RFC 6376 3.6.1: empty `p=`).
pub const REVOKED: &str = "v=DKIM1; p=";

/// The records of every domain. `keys` pairs each desired key with its public
/// half, or `None` when the key does not exist yet (reported in the second value).
pub fn records(
    spec: &HostSpec,
    keys: &[(Key, Option<DkimPublicKey>)],
) -> (Vec<Record>, Vec<String>) {
    let dkim: Vec<DkimSelector> = keys
        .iter()
        .map(|(key, public)| DkimSelector {
            set: key.set.clone(),
            selector: key.selector.clone(),
            state: State::Active,
            value: match public {
                Some(public) => DkimValue::Key(public.clone()),
                None => DkimValue::Missing(format!(
                    "no key at {} yet: run mailsetup apply on the host (for a bundle, export the public keys there with mailsetup public-keys)",
                    key.private_path
                )),
            },
            note: None,
        })
        .collect();
    records_for(spec, &dkim)
}

/// The selectors of each key set, so every domain finds its own at once.
pub fn by_set(dkim: &[DkimSelector]) -> HashMap<&str, Vec<&DkimSelector>> {
    let mut sets: HashMap<&str, Vec<&DkimSelector>> = HashMap::new();
    for selector in dkim {
        sets.entry(selector.set.as_str())
            .or_default()
            .push(selector);
    }
    sets
}

/// The records of every domain and of this host's own names, with `dkim`
/// every selector to publish.
pub fn records_for(spec: &HostSpec, dkim: &[DkimSelector]) -> (Vec<Record>, Vec<String>) {
    let sets = by_set(dkim);
    let mut out = Vec::new();
    let mut missing = Vec::new();
    // A fleet's SPF names every host; a single host relies on the spec's mechanisms.
    let fleet: Vec<&DomainName> = if spec.hosts.is_empty() {
        Vec::new()
    } else {
        spec.sending_hosts()
    };
    for domain in spec.domains() {
        out.push(txt(
            Kind::Spf,
            domain.name.to_string(),
            spf(&domain, &fleet),
        ));
        let set = key_set_of(spec, domain.name);
        for dkim in sets.get(set).into_iter().flatten() {
            let name = format!("{}._domainkey.{}", dkim.selector, domain.name);
            let Some(value) = dkim_value(dkim, &name, &mut missing) else {
                continue;
            };
            out.push(Record {
                note: dkim.note.clone(),
                ..txt(Kind::Dkim, name, value)
            });
        }
        // A listed subdomain signs as itself: its own SPF and DKIM records (the
        // same values); DMARC's policy lookup falls back to the domain's record.
        for sub in &domain.subdomains {
            out.push(Record {
                note: Some(format!(
                    "SPF for the sending subdomain {sub}: the hosts that may send as @{sub}"
                )),
                ..txt(Kind::Spf, sub.to_string(), spf_for(&domain, &fleet, true))
            });
            for dkim in sets.get(set).into_iter().flatten() {
                let name = format!("{}._domainkey.{sub}", dkim.selector);
                let Some(value) = dkim_value(dkim, &name, &mut missing) else {
                    continue;
                };
                out.push(Record {
                    note: Some(match &dkim.note {
                        Some(n) => format!("{n} (for {sub}'s own signatures)"),
                        None => format!(
                            "DKIM key of {sub}'s own signatures (d={sub}, {}'s key)",
                            domain.name
                        ),
                    }),
                    ..txt(Kind::Dkim, name, value)
                });
            }
        }
        out.push(txt(
            Kind::Dmarc,
            format!("_dmarc.{}", domain.name),
            dmarc(&domain),
        ));
        let mut authorized: Vec<String> = Vec::new();
        for address in domain.dmarc.rua.iter().chain(&domain.dmarc.ruf) {
            let (_, report_domain) = address.as_str().rsplit_once('@').expect("checked address");
            let ours = domain.name.as_str();
            if !needs_report_auth(ours, report_domain)
                || authorized.iter().any(|d| d == report_domain)
            {
                continue;
            }
            authorized.push(report_domain.to_string());
            out.push(Record {
                note: Some(format!(
                    "publish in {report_domain}'s zone: it lets {report_domain} receive DMARC reports for {ours}"
                )),
                ..txt(
                    Kind::DmarcReportAuth,
                    format!("{ours}._report._dmarc.{report_domain}"),
                    "v=DMARC1".to_string(),
                )
            });
        }
    }
    host_records(spec, &sets, &mut out, &mut missing);
    (out, missing)
}

/// The SPF records of this host's own names, each name once: the HELO name
/// (bounces, sent with an empty envelope sender, are judged by it) and the
/// mailname (root@…, cron, apticron). Names that are listed domains or
/// subdomains have theirs already. Through a relay the relay's HELO counts,
/// and the mailname's SPF must name the relay: its domain's mechanisms.
pub fn host_spf(spec: &HostSpec) -> Vec<(DomainName, String)> {
    let listed = |name: &DomainName| {
        spec.domains()
            .any(|d| d.name == name || d.subdomains.contains(name))
    };
    let fleet: Vec<&DomainName> = if spec.hosts.is_empty() {
        Vec::new()
    } else {
        spec.sending_hosts()
    };
    let (hostname, mailname) = (spec.hostname(), spec.mailname());
    let relayed = spec.host.relay.is_some();
    let mut out = Vec::new();
    if !relayed && !listed(hostname) {
        out.push((hostname.clone(), "v=spf1 a -all".to_string()));
    }
    if listed(mailname) || (mailname == hostname && !relayed) {
        return out;
    }
    let value = match (spec.system_mail(), relayed) {
        (SystemMail::Under(domain), true) => Some(spf_for(&domain, &fleet, true)),
        (_, true) => None,
        // A mailname the hosts of a fleet share names them all.
        (_, false) => {
            let hosts = match spec.host.mailname.is_some() && !fleet.is_empty() {
                true => fleet.iter().map(|h| format!(" a:{h}")).collect::<String>(),
                false => format!(" a:{hostname}"),
            };
            Some(format!("v=spf1{hosts} -all"))
        }
    };
    out.extend(value.map(|v| (mailname.clone(), v)));
    out
}

/// This host's own records: SPF for its names, and DKIM for its mailname
/// when it signs system mail as itself.
fn host_records(
    spec: &HostSpec,
    sets: &HashMap<&str, Vec<&DkimSelector>>,
    out: &mut Vec<Record>,
    missing: &mut Vec<String>,
) {
    for (name, value) in host_spf(spec) {
        out.push(Record {
            note: Some(format!(
                "SPF for this host's own name {name}: its HELO, bounces and system mail \
                 (root@{}) pass",
                spec.mailname()
            )),
            ..txt(Kind::Spf, name.to_string(), value)
        });
    }
    let SystemMail::Under(domain) = spec.system_mail() else {
        return;
    };
    let mailname = spec.mailname();
    for dkim in sets
        .get(key_set_of(spec, domain.name))
        .into_iter()
        .flatten()
    {
        let name = format!("{}._domainkey.{mailname}", dkim.selector);
        let Some(value) = dkim_value(dkim, &name, missing) else {
            continue;
        };
        out.push(Record {
            note: Some(format!(
                "DKIM key of system mail's own signatures (d={mailname}, {}'s key)",
                domain.name
            )),
            ..txt(Kind::Dkim, name, value)
        });
    }
}

/// The DKIM names one selector of a key set is published at: each domain
/// signing with the set, each of their listed subdomains, and the mailname
/// when system mail signs as itself with the set's key.
pub fn dkim_names(spec: &HostSpec, set: &str, selector: &str) -> Vec<String> {
    let mailname = match spec.system_mail() {
        SystemMail::Under(d) if key_set_of(spec, d.name) == set => Some(spec.mailname()),
        _ => None,
    };
    spec.domains()
        .filter(|d| key_set_of(spec, d.name) == set)
        .flat_map(|d| {
            std::iter::once(d.name.to_string())
                .chain(d.subdomains.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
        })
        .chain(mailname.map(ToString::to_string))
        .map(|owner| format!("{selector}._domainkey.{owner}"))
        .collect()
}

/// What to publish at `name` for one selector; a key not on the host yet goes
/// to `missing` with why.
fn dkim_value(dkim: &DkimSelector, name: &str, missing: &mut Vec<String>) -> Option<String> {
    match &dkim.value {
        DkimValue::Key(public) => Some(public.dns_value()),
        DkimValue::Revoked => Some(REVOKED.to_string()),
        DkimValue::Missing(why) => {
            missing.push(format!("{name}: {why}"));
            None
        }
    }
}

/// Whether reports for `domain` sent to `report_domain` need that domain's
/// authorization record (RFC 7489 7.1): only when neither is within the other.
pub fn needs_report_auth(domain: &str, report_domain: &str) -> bool {
    !(report_domain == domain
        || report_domain.ends_with(&format!(".{domain}"))
        || domain.ends_with(&format!(".{report_domain}")))
}

fn spf(domain: &Domain, fleet: &[&DomainName]) -> String {
    spf_for(domain, fleet, false)
}

/// The SPF value of `domain`, or of one of its listed subdomains (`sub`): the
/// same hosts, so `a` and `mx` name the domain's addresses, not the subdomain's.
fn spf_for(domain: &Domain, fleet: &[&DomainName], sub: bool) -> String {
    let spf = domain.spf;
    let mut v = String::from("v=spf1");
    let of = if sub {
        format!(":{}", domain.name)
    } else {
        String::new()
    };
    if spf.a {
        let _ = write!(v, " a{of}");
    }
    if spf.mx {
        let _ = write!(v, " mx{of}");
    }
    for host in &spf.hosts {
        let _ = write!(v, " a:{host}");
    }
    for host in fleet {
        if !spf.hosts.contains(host) {
            let _ = write!(v, " a:{host}");
        }
    }
    for net in &spf.ip {
        let family = if net.addr.is_ipv4() { "ip4" } else { "ip6" };
        let single = (net.addr.is_ipv4() && net.prefix == 32) || net.prefix == 128;
        if single {
            let _ = write!(v, " {family}:{}", net.addr);
        } else {
            let _ = write!(v, " {family}:{net}");
        }
    }
    for include in &spf.include {
        let _ = write!(v, " include:{include}");
    }
    v.push_str(match spf.all {
        SpfAll::Fail => " -all",
        SpfAll::Softfail => " ~all",
        SpfAll::Neutral => " ?all",
    });
    v
}

fn policy(p: DmarcPolicy) -> &'static str {
    match p {
        DmarcPolicy::None => "none",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::Reject => "reject",
    }
}

fn align(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
    }
}

fn dmarc(domain: &Domain) -> String {
    let d = domain.dmarc;
    let mut v = format!("v=DMARC1; p={}", policy(d.p));
    if let Some(sp) = d.sp {
        let _ = write!(v, "; sp={}", policy(sp));
    }
    if let Some(a) = d.adkim {
        let _ = write!(v, "; adkim={}", align(a));
    }
    if let Some(a) = d.aspf {
        let _ = write!(v, "; aspf={}", align(a));
    }
    if let Some(pct) = d.pct {
        let _ = write!(v, "; pct={}", pct.get());
    }
    let uris = |list: &[crate::spec::MailAddress]| {
        list.iter()
            .map(|a| format!("mailto:{a}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !d.rua.is_empty() {
        let _ = write!(v, "; rua={}", uris(&d.rua));
    }
    if !d.ruf.is_empty() {
        let _ = write!(v, "; ruf={}", uris(&d.ruf));
    }
    v
}

/// A TXT value as zone-file character strings of at most 255 bytes each.
pub fn split_txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| {
            // Zone-file escapes (RFC 1035 5.1): control characters as \DDD,
            // so a value a server sent cannot move the terminal's cursor.
            let mut out = String::from("\"");
            for c in String::from_utf8_lossy(chunk).chars() {
                match c {
                    '\\' | '"' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if c.is_control() => out += &format!("\\{:03}", u32::from(c)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A BIND zone snippet.
/// What a record is for, in one line (records with a note of their own say it there).
fn explain(r: &Record) -> String {
    let owner = |prefix: &str| r.name.strip_prefix(prefix).unwrap_or(&r.name).to_string();
    match r.kind {
        Kind::Spf => format!("SPF: the hosts that may send mail as @{}", r.name),
        Kind::Dkim => {
            let (selector, domain) = r.name.split_once("._domainkey.").unwrap_or(("", &r.name));
            format!(
                "DKIM: the key receivers check {domain}'s signatures with (selector {selector})"
            )
        }
        Kind::Dmarc => format!(
            "DMARC: what receivers do with mail from {} (and its subdomains) that fails \
             aligned SPF and DKIM, and where reports go",
            owner("_dmarc.")
        ),
        Kind::DmarcReportAuth => "DMARC report authorization".to_string(),
    }
}

pub fn zone(records: &[Record], missing: &[String]) -> String {
    let mut out =
        String::from("; DNS records for mailsetup: publish these in each domain's zone.\n");
    for m in missing {
        let _ = writeln!(out, "; MISSING {m}");
    }
    for r in records {
        let _ = writeln!(out, "; {}", r.note.clone().unwrap_or_else(|| explain(r)));
        let _ = writeln!(out, "{}.\tIN\t{}\t{}", r.name, r.rtype, split_txt(&r.value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(split_txt("a\x1b[2Jb\r\"\\"), "\"a\\027[2Jb\\013\\\"\\\\\"");
    }

    #[test]
    fn long_values_split_at_255_bytes() {
        let value = "x".repeat(600);
        let split = split_txt(&value);
        let parts: Vec<&str> = split.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 257);
        assert_eq!(parts[2].len(), 90 + 2);
        assert_eq!(split.replace(['"', ' '], ""), value);
    }

    #[test]
    fn records_follow_the_spec() {
        let (spec, _) = crate::spec::parse(
            "host:\n  hostname: mail.example.com\ndomains:\n  example.com:\n    spf:\n      a: false\n      ip: [192.0.2.1, 2001:db8::/32]\n      include: [spf.provider.example]\n      all: softfail\n    dmarc:\n      p: reject\n      adkim: s\n      pct: 50\n      rua: [d@example.com, r@reports.example.net]\naliases:\n  root: a@example.net\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        let key = crate::desired::Key {
            set: "shared".into(),
            selector: "sel".into(),
            bits: 2048,
            private_path: "/k".into(),
            txt_path: "/t".into(),
            domain: "example.com".parse().unwrap(),
        };
        let spec = spec.for_host(None).unwrap();
        let (records, missing) = records(&spec, &[(key, None)]);
        // The domain's key, and the mailname's (system mail signs as itself).
        assert_eq!(missing.len(), 2);
        assert!(missing[0].starts_with("sel._domainkey.example.com"));
        assert!(missing[1].starts_with("sel._domainkey.mail.example.com"));
        let values: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.name.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                (
                    "example.com",
                    "v=spf1 ip4:192.0.2.1 ip6:2001:db8::/32 include:spf.provider.example ~all"
                ),
                (
                    "_dmarc.example.com",
                    "v=DMARC1; p=reject; adkim=s; pct=50; rua=mailto:d@example.com,mailto:r@reports.example.net"
                ),
                ("example.com._report._dmarc.reports.example.net", "v=DMARC1"),
                // The host's own name: HELO, bounces and root@ pass SPF.
                ("mail.example.com", "v=spf1 a -all"),
            ]
        );
    }

    /// SPF for the host's own names: its HELO name, a mailname of its own,
    /// the relay's mechanisms when mail leaves through one; never twice for a
    /// name listed already.
    #[test]
    fn the_hosts_own_names_get_spf() {
        let spf = |extra: &str| {
            let text = format!(
                "host:\n  hostname: mx.example.com\n{extra}domains:\n  example.com:\n    spf:\n      include: [spf.relay.example]\naliases:\n  root: a@example.net\n"
            );
            let (spec, _) = crate::spec::parse(&text, std::path::Path::new("t.yaml")).unwrap();
            host_spf(&spec.for_host(None).unwrap())
                .into_iter()
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(spf(""), ["mx.example.com v=spf1 a -all"]);
        assert_eq!(
            spf("  mailname: sys.example.com\n"),
            [
                "mx.example.com v=spf1 a -all",
                "sys.example.com v=spf1 a:mx.example.com -all"
            ]
        );
        assert_eq!(
            spf("  relay:\n    host: smtp.relay.example\n"),
            ["mx.example.com v=spf1 a:example.com include:spf.relay.example -all"]
        );
        // The mailname a listed domain: it has its SPF already.
        assert_eq!(
            spf("  mailname: example.com\n"),
            ["mx.example.com v=spf1 a -all"]
        );
    }
}
