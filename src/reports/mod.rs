//! `mailsetup reports`: DMARC aggregate reports read as the operator's
//! question asks — per domain, who sent as it (this spec's hosts, mail signed
//! with its keys from elsewhere, others), how much passed DKIM, SPF and DMARC
//! with alignment, and whether `p=quarantine` or `p=reject` would lose any
//! of the operator's own mail, with the rows that show it. Pure.

mod feedback;
mod unpack;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::spec::names::{Network, date_in};
use crate::spec::{DomainName, Spec};
use feedback::{DkimResult, Feedback, Published, Record, passes};

pub use unpack::MAX_EXPANDED;

/// The JSON output's format, versioned like the plan's.
pub const FORMAT: &str = "mailsetup-reports/1";

/// The rows kept as evidence per domain (the largest).
const EVIDENCE: usize = 10;

/// What the spec knows of its own mail: where it leaves from, and the keys
/// that sign it.
pub struct Known {
    addresses: Vec<(IpAddr, String)>,
    networks: Vec<(Network, String)>,
    domains: Vec<DomainName>,
    selectors: Vec<String>,
}

impl Known {
    /// `check.addresses` (this host's), every `spf.ip` network, the domains
    /// (their subdomains included), and the selector patterns of the host or
    /// of each fleet host.
    pub fn of(spec: &Spec) -> anyhow::Result<Known> {
        let addresses = spec
            .check
            .addresses
            .iter()
            .map(|a| (*a, "check.addresses".to_string()))
            .collect();
        let mut networks = Vec::new();
        for d in spec.domains() {
            for net in &d.spf.ip {
                let label = format!("spf ip {}", String::from(net.clone()));
                if !networks.iter().any(|(n, _): &(Network, String)| n == net) {
                    networks.push((net.clone(), label));
                }
            }
        }
        let mut selectors = Vec::new();
        if spec.hosts.is_empty() {
            selectors.push(spec.dkim.selector.to_string());
        }
        for name in spec.hosts.keys() {
            selectors.push(
                spec.for_host(Some(name.as_str()))?
                    .dkim
                    .selector
                    .to_string(),
            );
        }
        Ok(Known {
            addresses,
            networks,
            domains: spec.domains.keys().cloned().collect(),
            selectors,
        })
    }

    /// Why `ip` is one of the spec's senders, if it is.
    fn host(&self, ip: IpAddr) -> Option<String> {
        self.addresses
            .iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, why)| why.clone())
            .or_else(|| {
                self.networks
                    .iter()
                    .find(|(n, _)| n.contains(ip))
                    .map(|(_, why)| why.clone())
            })
    }

    /// The passing signature made with one of the spec's keys: a domain of
    /// the spec (or under one) and a selector its patterns make (or none
    /// reported).
    fn own_signature(&self, dkim: &[DkimResult]) -> Option<String> {
        dkim.iter()
            .filter(|r| passes(Some(&r.result)))
            .find(|r| self.ours(&r.domain) && r.selector.as_deref().is_none_or(|s| self.made(s)))
            .map(|r| match &r.selector {
                Some(s) => format!("d={} s={}", r.domain.trim(), s.trim()),
                None => format!("d={}", r.domain.trim()),
            })
    }

    fn ours(&self, domain: &str) -> bool {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            domain == d.as_str()
                || domain
                    .strip_suffix(d.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }

    /// A selector `rotate` or `apply` would make: the pattern itself, or its
    /// `{date}` filled in, with a `-N` that `rotate start` adds when taken.
    fn made(&self, selector: &str) -> bool {
        let selector = selector.trim().to_ascii_lowercase();
        let unnumbered = selector
            .rsplit_once('-')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(s, _)| s);
        self.selectors.iter().any(|p| {
            *p == selector
                || date_in(p, &selector).is_some()
                || unnumbered.is_some_and(|s| date_in(p, s).is_some())
        })
    }
}

/// Who sent a row's mail, as the spec sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sender {
    /// From an address of the spec's.
    YourHost,
    /// From elsewhere, with a passing signature of one of the spec's keys: a
    /// forwarder, a mailing list that kept it intact, a relay.
    YourKey,
    /// Anyone else: someone sending as the domain, or a service the spec
    /// does not know of.
    Other,
}

impl Sender {
    fn is_yours(self) -> bool {
        self != Sender::Other
    }
    fn name(self) -> &'static str {
        match self {
            Sender::YourHost => "your host",
            Sender::YourKey => "your key",
            Sender::Other => "other",
        }
    }
}

/// Messages, and how many passed each check. `dkim`, `spf`: aligned passes
/// (the receiver's `policy_evaluated`, what DMARC is made of); `dkim_any`,
/// `spf_any`: passes of any domain (`auth_results`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub messages: u64,
    pub dkim: u64,
    pub spf: u64,
    pub dmarc: u64,
    pub dkim_any: u64,
    pub spf_any: u64,
}

impl Counts {
    fn add(&mut self, r: &Record) {
        let n = r.row.count;
        let e = &r.row.policy_evaluated;
        let (dkim, spf) = (passes(e.dkim.as_deref()), passes(e.spf.as_deref()));
        self.messages += n;
        self.dkim += n * u64::from(dkim);
        self.spf += n * u64::from(spf);
        self.dmarc += n * u64::from(dkim || spf);
        let a = &r.auth_results;
        self.dkim_any += n * u64::from(a.dkim.iter().any(|d| passes(Some(&d.result))));
        self.spf_any += n * u64::from(a.spf.iter().any(|s| passes(Some(&s.result))));
    }
    fn failing(&self) -> u64 {
        self.messages - self.dmarc
    }
}

/// One source address of a domain's mail, as one kind of sender.
#[derive(Debug, Serialize)]
pub struct Source {
    pub ip: IpAddr,
    pub sender: Sender,
    /// Why it is yours: `check.addresses`, `spf ip NET`, `d=… s=…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// A row that shows the verdict: your mail that failed DMARC.
#[derive(Debug, Serialize)]
pub struct Evidence {
    pub reporter: String,
    pub report_id: String,
    pub begin: jiff::Timestamp,
    pub end: jiff::Timestamp,
    pub source_ip: IpAddr,
    pub sender: Sender,
    pub messages: u64,
    pub header_from: String,
    /// `d=DOMAIN s=SELECTOR RESULT` for each signature the receiver checked.
    pub dkim: Vec<String>,
    /// `DOMAIN RESULT` for each SPF check.
    pub spf: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// Why the receiver did not apply the policy (`forwarded`, `local_policy`…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// None of your mail failed DMARC: a stricter policy loses none of it.
    Safe,
    /// Some of your mail failed DMARC: a stricter policy would lose it.
    WouldLose,
    /// No report shows your mail: nothing to judge by.
    NoEvidence,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    pub text: String,
    pub evidence: Vec<Evidence>,
}

/// What the reports say of one domain (the `<policy_published>` domain).
#[derive(Debug, Serialize)]
pub struct DomainReport {
    pub domain: String,
    /// Whether the spec lists it.
    pub in_spec: bool,
    /// The DMARC record the newest report found published.
    pub published: Option<Published>,
    pub reports: u64,
    /// Reports by receiver (`org_name`).
    pub reporters: BTreeMap<String, u64>,
    pub begin: jiff::Timestamp,
    pub end: jiff::Timestamp,
    pub by_sender: BTreeMap<Sender, Counts>,
    /// Largest first, within each kind of sender.
    pub sources: Vec<Source>,
    pub verdict: Verdict,
}

/// One file read: how many reports it held, or why it could not be read.
#[derive(Debug, Serialize)]
pub struct FileOutcome {
    pub path: String,
    pub reports: usize,
    /// Reports also found in a file read before (same receiver, same id).
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicates: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Everything read, summed per domain as files come in (so a directory of
/// thousands of reports is never held whole).
pub struct Reports {
    known: Known,
    seen: HashSet<(String, String, String)>,
    files: Vec<FileOutcome>,
    domains: BTreeMap<String, Tally>,
}

#[derive(Default)]
struct Tally {
    published: Option<(i64, Published)>,
    reports: u64,
    reporters: BTreeMap<String, u64>,
    begin: Option<i64>,
    end: Option<i64>,
    sources: BTreeMap<(Sender, IpAddr), (Option<String>, Counts)>,
    evidence: Vec<Evidence>,
}

/// The output: every file, every domain.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub format: &'static str,
    pub files: Vec<FileOutcome>,
    pub domains: Vec<DomainReport>,
}

impl Reports {
    pub fn new(known: Known) -> Reports {
        Reports {
            known,
            seen: HashSet::new(),
            files: Vec::new(),
            domains: BTreeMap::new(),
        }
    }

    /// Reads one file's bytes (`path` names it in the output).
    pub fn add(&mut self, path: String, bytes: Result<Vec<u8>, String>) {
        let found = bytes.and_then(|b| unpack::reports(&b));
        let mut outcome = FileOutcome {
            path,
            reports: 0,
            duplicates: 0,
            error: None,
        };
        match found {
            Err(e) => outcome.error = Some(e),
            Ok(reports) => {
                for f in reports {
                    outcome.reports += 1;
                    let id = (
                        f.report_metadata.org_name.trim().to_string(),
                        f.report_metadata.report_id.trim().to_string(),
                        f.policy_published.domain.trim().to_ascii_lowercase(),
                    );
                    if !self.seen.insert(id) {
                        outcome.duplicates += 1;
                        continue;
                    }
                    self.tally(f);
                }
            }
        }
        self.files.push(outcome);
    }

    fn tally(&mut self, f: Feedback) {
        let domain = f
            .policy_published
            .domain
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let t = self.domains.entry(domain).or_default();
        let meta = &f.report_metadata;
        let (begin, end) = (meta.date_range.begin, meta.date_range.end);
        t.reports += 1;
        *t.reporters
            .entry(meta.org_name.trim().to_string())
            .or_default() += 1;
        t.begin = Some(t.begin.map_or(begin, |b| b.min(begin)));
        t.end = Some(t.end.map_or(end, |e| e.max(end)));
        if t.published.as_ref().is_none_or(|(at, _)| *at <= end) {
            t.published = Some((end, f.policy_published.clone()));
        }
        for r in &f.records {
            let ip: IpAddr = r.row.source_ip.trim().parse().expect("checked when parsed");
            let (sender, why) = match self.known.host(ip) {
                Some(why) => (Sender::YourHost, Some(why)),
                None => match self.known.own_signature(&r.auth_results.dkim) {
                    Some(sig) => (Sender::YourKey, Some(sig)),
                    None => (Sender::Other, None),
                },
            };
            let entry = t
                .sources
                .entry((sender, ip))
                .or_insert((why, Counts::default()));
            entry.1.add(r);
            let e = &r.row.policy_evaluated;
            let failed = !passes(e.dkim.as_deref()) && !passes(e.spf.as_deref());
            if sender.is_yours() && failed {
                t.evidence.push(Evidence {
                    reporter: meta.org_name.trim().to_string(),
                    report_id: meta.report_id.trim().to_string(),
                    begin: timestamp(begin),
                    end: timestamp(end),
                    source_ip: ip,
                    sender,
                    messages: r.row.count,
                    header_from: r.identifiers.header_from.trim().to_string(),
                    dkim: r
                        .auth_results
                        .dkim
                        .iter()
                        .map(|d| {
                            let s = d.selector.as_deref().map(str::trim).unwrap_or("?");
                            format!("d={} s={s} {}", d.domain.trim(), d.result.trim())
                        })
                        .collect(),
                    spf: r
                        .auth_results
                        .spf
                        .iter()
                        .map(|s| format!("{} {}", s.domain.trim(), s.result.trim()))
                        .collect(),
                    disposition: e.disposition.as_deref().map(|d| d.trim().to_string()),
                    reasons: e
                        .reason
                        .iter()
                        .filter_map(|r| r.kind.as_deref().map(|k| k.trim().to_string()))
                        .collect(),
                });
                // Bounded: the largest rows are the evidence worth showing.
                if t.evidence.len() > 5 * EVIDENCE {
                    keep_largest(&mut t.evidence);
                }
            }
        }
    }

    pub fn summary(self) -> Summary {
        let known = self.known;
        let domains = self
            .domains
            .into_iter()
            .map(|(domain, t)| {
                let in_spec = known.ours(&domain);
                judge(domain, in_spec, t)
            })
            .collect();
        Summary {
            format: FORMAT,
            files: self.files,
            domains,
        }
    }
}

fn keep_largest(evidence: &mut Vec<Evidence>) {
    evidence.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.begin.cmp(&b.begin)));
    evidence.truncate(EVIDENCE);
}

fn timestamp(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn judge(domain: String, in_spec: bool, mut t: Tally) -> DomainReport {
    let mut by_sender: BTreeMap<Sender, Counts> = BTreeMap::new();
    let mut sources: Vec<Source> = t
        .sources
        .into_iter()
        .map(|((sender, ip), (why, counts))| {
            let total = by_sender.entry(sender).or_default();
            total.messages += counts.messages;
            total.dkim += counts.dkim;
            total.spf += counts.spf;
            total.dmarc += counts.dmarc;
            total.dkim_any += counts.dkim_any;
            total.spf_any += counts.spf_any;
            Source {
                ip,
                sender,
                why,
                counts,
            }
        })
        .collect();
    sources.sort_by(|a, b| {
        (a.sender, std::cmp::Reverse(a.counts.messages), a.ip).cmp(&(
            b.sender,
            std::cmp::Reverse(b.counts.messages),
            b.ip,
        ))
    });
    keep_largest(&mut t.evidence);
    let published = t.published.map(|(_, p)| p);
    let policy = published
        .as_ref()
        .and_then(|p| p.p.as_deref())
        .map(|p| p.trim().to_ascii_lowercase());
    let yours = |s: Sender| by_sender.get(&s).cloned().unwrap_or_default();
    let (host, key, other) = (
        yours(Sender::YourHost),
        yours(Sender::YourKey),
        yours(Sender::Other),
    );
    let mine = host.messages + key.messages;
    let losing = host.failing() + key.failing();
    let others_failing = other.failing();
    let failing_sources = sources
        .iter()
        .filter(|s| s.sender == Sender::Other && s.counts.failing() > 0)
        .count();
    let enforced = matches!(policy.as_deref(), Some("quarantine" | "reject"));
    let (kind, mut text) = if mine == 0 {
        (
            VerdictKind::NoEvidence,
            "no report shows mail from your hosts or signed with your keys: nothing to judge \
             a stricter policy by"
                .to_string(),
        )
    } else if losing > 0 {
        (
            VerdictKind::WouldLose,
            match enforced {
                false => format!(
                    "p=quarantine or p=reject would have lost {losing} of your {mine} messages: \
                     they failed DMARC (no aligned DKIM or SPF pass); fix those senders before \
                     leaving p=none"
                ),
                true => format!(
                    "p={} is costing you mail: {losing} of your {mine} messages failed DMARC \
                     (no aligned DKIM or SPF pass)",
                    policy.as_deref().unwrap_or_default()
                ),
            },
        )
    } else {
        (
            VerdictKind::Safe,
            format!(
                "all {mine} of your messages passed DMARC: p=quarantine or p=reject loses none \
                 of them, and stops {others_failing} message(s) failing DMARC from \
                 {failing_sources} other source(s)"
            ),
        )
    };
    if other.dmarc > 0 {
        let _ = write!(
            text,
            "; {} message(s) from sources the spec does not know passed DMARC (a service \
             sending for you? its addresses belong in spf.ip)",
            other.dmarc
        );
    }
    if !in_spec {
        text += "; this domain is not in the spec";
    }
    DomainReport {
        domain,
        in_spec,
        published,
        reports: t.reports,
        reporters: t.reporters,
        begin: timestamp(t.begin.unwrap_or(0)),
        end: timestamp(t.end.unwrap_or(0)),
        by_sender,
        sources,
        verdict: Verdict {
            kind,
            text,
            evidence: t.evidence,
        },
    }
}

impl Summary {
    /// Whether a stricter policy would lose (or loses) some of the
    /// operator's mail: `reports` exits 3.
    pub fn would_lose(&self) -> bool {
        self.domains
            .iter()
            .any(|d| d.verdict.kind == VerdictKind::WouldLose)
    }

    pub fn unreadable(&self) -> impl Iterator<Item = &FileOutcome> {
        self.files.iter().filter(|f| f.error.is_some())
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary serializes") + "\n"
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let read: usize = self.files.iter().map(|f| f.reports).sum();
        let dup: usize = self.files.iter().map(|f| f.duplicates).sum();
        let _ = write!(
            out,
            "Read {read} report(s) from {} file(s)",
            self.files.len() - self.unreadable().count()
        );
        if dup > 0 {
            let _ = write!(out, " ({dup} seen twice, counted once)");
        }
        let bad = self.unreadable().count();
        if bad > 0 {
            let _ = write!(out, "; {bad} file(s) could not be read (see above)");
        }
        out += ".\n";
        for d in &self.domains {
            let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d").to_string();
            let reporters: Vec<String> = d
                .reporters
                .iter()
                .map(|(org, n)| format!("{org} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "\n{}  {}  {} report(s), {} to {} ({})",
                d.domain,
                d.published
                    .as_ref()
                    .map(Published::tags)
                    .unwrap_or_default(),
                d.reports,
                day(d.begin),
                day(d.end),
                reporters.join(", ")
            );
            let width = d
                .sources
                .iter()
                .take(20)
                .map(|s| s.ip.to_string().len())
                .max()
                .unwrap_or(0)
                .max(6);
            let _ = writeln!(
                out,
                "  {:<width$}  {:<9}  {:>8}  {:>6}  {:>6}  {:>6}  WHY",
                "SOURCE", "SENDER", "MESSAGES", "DKIM", "SPF", "DMARC"
            );
            for s in d.sources.iter().take(20) {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:<9}  {:>8}  {:>6}  {:>6}  {:>6}  {}",
                    s.ip.to_string(),
                    s.sender.name(),
                    s.counts.messages,
                    s.counts.dkim,
                    s.counts.spf,
                    s.counts.dmarc,
                    s.why.as_deref().unwrap_or("")
                );
            }
            if d.sources.len() > 20 {
                let _ = writeln!(
                    out,
                    "  … {} more source(s) (--format json)",
                    d.sources.len() - 20
                );
            }
            let _ = writeln!(
                out,
                "  (DKIM, SPF: aligned passes, as receivers evaluated them; DMARC: either)"
            );
            for (sender, c) in &d.by_sender {
                let pct = |n: u64| n * 100 / c.messages.max(1);
                let _ = writeln!(
                    out,
                    "  {:<9}  {} message(s): DKIM {}% ({}% any domain), SPF {}% ({}% any domain), DMARC {}%",
                    sender.name(),
                    c.messages,
                    pct(c.dkim),
                    pct(c.dkim_any),
                    pct(c.spf),
                    pct(c.spf_any),
                    pct(c.dmarc)
                );
            }
            let label = match d.verdict.kind {
                VerdictKind::Safe => "safe",
                VerdictKind::WouldLose => "NOT SAFE",
                VerdictKind::NoEvidence => "no evidence",
            };
            let _ = writeln!(out, "  Verdict: {label}: {}", d.verdict.text);
            for e in &d.verdict.evidence {
                let _ = writeln!(
                    out,
                    "    {} ({}): {} message(s), From: {}; dkim {}; spf {}; {}{} report {}, {} to {}",
                    e.source_ip,
                    e.sender.name(),
                    e.messages,
                    e.header_from,
                    list(&e.dkim),
                    list(&e.spf),
                    e.disposition
                        .as_deref()
                        .map(|d| match e.reasons.is_empty() {
                            true => format!("disposition {d}; "),
                            false => format!("disposition {d} ({}); ", e.reasons.join(", ")),
                        })
                        .unwrap_or_default(),
                    e.reporter,
                    e.report_id,
                    day(e.begin),
                    day(e.end)
                );
            }
        }
        out
    }
}

fn list(items: &[String]) -> String {
    match items.is_empty() {
        true => "none".into(),
        false => items.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(selector: &str, fleet: &str) -> Known {
        let host = match fleet.is_empty() {
            true => "host:\n  hostname: mail.example.com\n",
            false => "",
        };
        let text = format!(
            "{host}{fleet}domains:\n  example.com:\n    spf:\n      ip: [198.51.100.0/28]\n\
             dkim:\n  selector: \"{selector}\"\ncheck:\n  addresses: [192.0.2.25]\naliases:\n  root: ops@example.net\n"
        );
        let (spec, _) = crate::spec::parse(&text, std::path::Path::new("t.yaml")).unwrap();
        Known::of(&spec).unwrap()
    }

    fn sig(domain: &str, selector: Option<&str>, result: &str) -> DkimResult {
        DkimResult {
            domain: domain.into(),
            selector: selector.map(Into::into),
            result: result.into(),
        }
    }

    #[test]
    fn your_senders_are_the_specs_addresses_and_keys() {
        let k = known("mta-{date}", "");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(k.host(ip("192.0.2.25")).as_deref(), Some("check.addresses"));
        assert_eq!(
            k.host(ip("198.51.100.9")).as_deref(),
            Some("spf ip 198.51.100.0/28")
        );
        assert_eq!(k.host(ip("198.51.100.16")), None);
        for (s, mine) in [
            ("mta-20251001", true),
            ("mta-20251001-2", true),
            ("MTA-20251001", true),
            ("mta-2025100", false),
            ("esp1", false),
        ] {
            let found = k.own_signature(&[sig("example.com", Some(s), "pass")]);
            assert_eq!(found.is_some(), mine, "{s}");
        }
        // Under a listed domain (the mailname's key), any case; not a lookalike.
        assert!(
            k.own_signature(&[sig("Bounce.Example.COM", None, "Pass")])
                .is_some()
        );
        assert!(
            k.own_signature(&[sig("badexample.com", None, "pass")])
                .is_none()
        );
        assert!(
            k.own_signature(&[sig("example.com", Some("mta-20251001"), "fail")])
                .is_none()
        );
    }

    #[test]
    fn a_fleet_knows_each_hosts_selectors() {
        let fleet = "hosts:\n  mta01:\n    hostname: mta01.example.com\n  mta02:\n    hostname: mta02.example.com\n    selector: fixed\n";
        let k = known("{date}", fleet);
        for s in ["mta01-20251001", "fixed"] {
            assert!(k.made(s), "{s}");
        }
        assert!(
            !k.made("20251001"),
            "the shared pattern is not a fleet host's"
        );
    }
}
