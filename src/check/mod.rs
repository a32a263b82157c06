//! `mailsetup check`: the guide's "testing tools", done locally. What DNS
//! publishes for each domain (SPF, DKIM, DMARC), forward-confirmed reverse DNS
//! and blocklist entries of the host's addresses, and the daemons.
//!
//! Every finding is pass, warn, fail or skip with the reason. A lookup DNS
//! cannot answer is a warning that says so, never a pass.

pub mod dmarc;
pub mod spf;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cli::ReportFormat;
use crate::desired::{Service, key_set_of, milter_socket};
use crate::dns::{self, Kind as RecordKind};
use crate::exit::Exit;
use crate::host::{Host, ReadOnly};
use crate::resolve::{self, Dns, Family, Resolver};
use crate::selector::{self, DkimSelector, DkimValue, Served, State};
use crate::spec::{HostSpec, Protocols, ResolverAddr};
use crate::ui::Ui;
use spf::SpfResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
    /// Could not be checked: no DNS answer, a refused query, a term mailsetup
    /// does not evaluate. Never counted as a pass.
    Unknown,
}

/// What was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The domain's SPF record: present, one, valid, at most 10 lookups.
    Spf,
    /// SPF evaluated for one of this host's addresses.
    SpfHost,
    Dkim,
    Dmarc,
    DmarcReportAuth,
    /// The addresses this host sends from.
    Address,
    /// Forward-confirmed reverse DNS of an address.
    Fcrdns,
    Blocklist,
    Daemon,
    MilterSocket,
    /// The TLS policy main.cf puts in force for outgoing mail, and for DANE
    /// whether the resolver validates.
    Tls,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Spf => "spf",
            Kind::SpfHost => "spf-host",
            Kind::Dkim => "dkim",
            Kind::Dmarc => "dmarc",
            Kind::DmarcReportAuth => "dmarc-report-auth",
            Kind::Address => "address",
            Kind::Fcrdns => "fcrdns",
            Kind::Blocklist => "blocklist",
            Kind::Daemon => "daemon",
            Kind::MilterSocket => "milter-socket",
            Kind::Tls => "tls",
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Kind,
    pub target: String,
    pub status: Status,
    pub detail: String,
}

fn finding(
    check: Kind,
    target: impl Into<String>,
    status: Status,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        check,
        target: target.into(),
        status,
        detail: detail.into(),
    }
}

/// Runs every check and prints the findings; `Exit::CheckFailed` when one fails.
pub fn run(
    spec_path: &Path,
    root: &Path,
    host: Option<&str>,
    resolver: Option<ResolverAddr>,
    format: ReportFormat,
    ui: &mut Ui,
) -> Result<Exit> {
    let spec = crate::job::load_spec(spec_path, ui)?.for_host(host)?;
    let system = ReadOnly::new(root)?;
    let dkim = crate::keysets::published(&spec, &system, crate::job::today()?)?;
    let dns = Resolver::new(resolver.or(spec.check.resolver))?;
    let mut findings = dns_findings(&spec, &dkim, &dns);
    findings.extend(host_findings(&system));
    findings.extend(tls_findings(&system)?);
    let again = crate::hint::Again::new(Some(spec_path), host, root);
    match format {
        ReportFormat::Text => {
            ui.colored(&(text(&findings) + &next_steps(&findings, &dkim, &again, resolver)))?
        }
        ReportFormat::Json => ui.out(&(serde_json::to_string_pretty(&findings)? + "\n"))?,
    };
    Ok(if findings.iter().any(|f| f.status == Status::Fail) {
        Exit::CheckFailed
    } else if findings.iter().any(|f| f.status == Status::Unknown) {
        Exit::Unverified
    } else {
        Exit::Ok
    })
}

/// Everything DNS should serve for the spec, with `dkim` the selectors to publish.
pub fn dns_findings(spec: &HostSpec, dkim: &[DkimSelector], dns: &dyn Dns) -> Vec<Finding> {
    let mut out = Vec::new();
    let (expected, _) = dns::records_for(spec, dkim);
    let expected: std::collections::HashMap<(RecordKind, &str), &str> = expected
        .iter()
        .map(|r| ((r.kind, r.name.as_str()), r.value.as_str()))
        .collect();
    let expected_value = |kind: RecordKind, name: &str| expected.get(&(kind, name)).copied();
    let sets = dns::by_set(dkim);
    let addresses = host_addresses(spec, dns, &mut out);
    for domain in spec.domains() {
        let name = domain.name.as_str();
        out.push(spf_finding(
            dns,
            name,
            expected_value(RecordKind::Spf, name),
        ));
        for ip in &addresses {
            out.push(spf_host_finding(dns, name, *ip));
        }
        let set = key_set_of(spec, domain.name);
        for selector in sets.get(set).into_iter().flatten() {
            out.push(dkim_finding(dns, name, selector));
        }
        // Listed sending subdomains have SPF and DKIM records of their own.
        for sub in &domain.subdomains {
            let sub = sub.as_str();
            out.push(spf_finding(dns, sub, expected_value(RecordKind::Spf, sub)));
            for selector in sets.get(set).into_iter().flatten() {
                out.push(dkim_finding(dns, sub, selector));
            }
        }
        let dmarc_name = format!("_dmarc.{name}");
        let (finding, report_domains) = dmarc_finding(
            dns,
            &dmarc_name,
            expected_value(RecordKind::Dmarc, &dmarc_name),
        );
        out.push(finding);
        for report_domain in report_domains {
            if dns::needs_report_auth(name, &report_domain) {
                out.push(report_auth_finding(dns, name, &report_domain));
            }
        }
    }
    // This host's own names: HELO and system mail.
    for (name, value) in dns::host_spf(spec) {
        out.push(spf_finding(dns, name.as_str(), Some(&value)));
        for ip in &addresses {
            out.push(spf_host_finding(dns, name.as_str(), *ip));
        }
    }
    if let crate::spec::SystemMail::Under(d) = spec.system_mail() {
        for selector in sets.get(key_set_of(spec, d.name)).into_iter().flatten() {
            out.push(dkim_finding(dns, spec.mailname().as_str(), selector));
        }
    }
    for ip in &addresses {
        out.push(fcrdns_finding(dns, *ip, spec.hostname().as_str()));
        for zone in &spec.check.blocklists {
            out.push(blocklist_finding(dns, *ip, zone.as_str()));
        }
    }
    out
}

/// The addresses to check: `check.addresses`, else the hostname's (for the
/// protocols Postfix uses); none when a relay sends the mail.
fn host_addresses(spec: &HostSpec, dns: &dyn Dns, out: &mut Vec<Finding>) -> Vec<IpAddr> {
    let hostname = spec.hostname().as_str();
    if !spec.check.addresses.is_empty() {
        return spec.check.addresses.clone();
    }
    if let Some(relay) = &spec.host.relay {
        out.push(finding(
            Kind::Address,
            hostname,
            Status::Skip,
            format!(
                "mail leaves through the relay {}: its addresses count, not this host's; \
                 list this host's in check.addresses to check them too",
                relay.host
            ),
        ));
        return Vec::new();
    }
    let families: &[Family] = match spec.host.protocols {
        Protocols::All => &[Family::V4, Family::V6],
        Protocols::Ipv4 => &[Family::V4],
        Protocols::Ipv6 => &[Family::V6],
    };
    let mut addresses = Vec::new();
    for family in families {
        match dns.addrs(hostname, *family) {
            Ok(found) => addresses.extend(found),
            Err(e) => {
                out.push(finding(
                    Kind::Address,
                    hostname,
                    Status::Unknown,
                    e.to_string(),
                ));
                return Vec::new();
            }
        }
    }
    if addresses.is_empty() {
        out.push(finding(
            Kind::Address,
            hostname,
            Status::Fail,
            "the hostname has no A/AAAA record: receivers cannot confirm it; publish one, \
             or list the addresses mail leaves from in check.addresses",
        ));
    } else {
        let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        out.push(finding(
            Kind::Address,
            hostname,
            Status::Pass,
            format!("sends from {}", list.join(", ")),
        ));
    }
    addresses
}

/// An address no sane SPF record names (the limited broadcast), to walk a
/// record to its end.
const NO_SENDER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::BROADCAST);

fn spf_finding(dns: &dyn Dns, domain: &str, expected: Option<&str>) -> Finding {
    let result = |status, detail: String| finding(Kind::Spf, domain, status, detail);
    let text = match spf::fetch(dns, domain) {
        Ok(Some(text)) => text,
        Ok(None) => {
            return result(
                Status::Fail,
                format!(
                    "no SPF record: publish `{}`",
                    expected.unwrap_or("v=spf1 a -all")
                ),
            );
        }
        Err(SpfResult::TempError(e)) => return result(Status::Unknown, e),
        Err(e) => return result(Status::Fail, e.to_string()),
    };
    let record = match spf::parse(&text) {
        Ok(r) => r,
        Err(e) => return result(Status::Fail, format!("`{text}` is invalid: {e}")),
    };
    let lookups = match spf::count_lookups(dns, &record) {
        Ok(n) if n > spf::MAX_LOOKUPS => {
            return result(
                Status::Fail,
                format!(
                    "`{text}` needs {n} DNS lookups; receivers stop at {} (RFC 7208 4.6.4)",
                    spf::MAX_LOOKUPS
                ),
            );
        }
        Ok(n) => n,
        Err(SpfResult::TempError(e)) => {
            return result(
                Status::Unknown,
                format!("cannot count the lookups of `{text}`: {e}"),
            );
        }
        Err(e) => return result(Status::Fail, format!("`{text}`: {e}")),
    };
    // Walked to the end as for a sender it does not name, every term queried,
    // as a receiver would: what that finds wrong (voids, includes without a
    // record, macros) fails every sender.
    match spf::check_host(dns, NO_SENDER, domain) {
        SpfResult::PermError(e) => {
            return result(Status::Fail, format!("`{text}`: {e}"));
        }
        SpfResult::TempError(e) => {
            return result(Status::Unknown, format!("cannot evaluate `{text}`: {e}"));
        }
        _ => {}
    }
    let plural = if lookups == 1 { "" } else { "s" };
    match expected {
        Some(want) if want != text => result(
            Status::Warn,
            format!("`{text}` ({lookups} lookup{plural}) differs from the spec's `{want}`"),
        ),
        _ => result(Status::Pass, format!("`{text}` ({lookups} lookup{plural})")),
    }
}

fn spf_host_finding(dns: &dyn Dns, domain: &str, ip: IpAddr) -> Finding {
    let target = format!("{domain} from {ip}");
    let (status, detail) = match spf::check_host(dns, ip, domain) {
        SpfResult::Pass => (Status::Pass, "pass".to_string()),
        r @ (SpfResult::TempError(_) | SpfResult::Unknown(_)) => (Status::Unknown, r.to_string()),
        r => (
            Status::Fail,
            format!("{r}: receivers do not accept this address as a sender for {domain}"),
        ),
    };
    finding(Kind::SpfHost, target, status, detail)
}

fn dkim_finding(dns: &dyn Dns, domain: &str, selector: &DkimSelector) -> Finding {
    let name = format!("{}._domainkey.{domain}", selector.selector);
    let state = selector.state;
    let result = |status, detail: String| {
        finding(
            Kind::Dkim,
            name.clone(),
            status,
            format!("{state}: {detail}"),
        )
    };
    let (served, text) = match selector::served_record(dns, &name) {
        Ok(served) => served,
        Err(selector::ServedError::Lookup(e)) => return result(Status::Unknown, e.to_string()),
        Err(e) => return result(Status::Fail, e.to_string()),
    };
    match (&selector.value, served) {
        (DkimValue::Missing(why), _) => result(Status::Fail, why.clone()),
        (DkimValue::Key(mine), Served::Key(theirs))
            if *mine == theirs && text.as_deref().is_some_and(selector::testing) =>
        {
            result(
                Status::Warn,
                "DNS serves the key on disk, marked t=y (testing): some verifiers treat a \
                 failing signature as none; remove t=y once mail verifies"
                    .into(),
            )
        }
        (DkimValue::Key(mine), Served::Key(theirs)) if *mine == theirs => {
            result(Status::Pass, "DNS serves the key on disk".into())
        }
        (DkimValue::Key(_), Served::Key(_)) => result(
            Status::Fail,
            "DNS serves a different key than the one on disk: signatures will not verify".into(),
        ),
        (DkimValue::Key(_), Served::Missing) if state == State::Staged => result(
            Status::Warn,
            "not published yet: publish it (see below), then activate it".into(),
        ),
        (DkimValue::Key(_), Served::Missing) => result(
            Status::Fail,
            "not published: mail signed with it fails DKIM; publish it (see below)".into(),
        ),
        (DkimValue::Key(_), Served::Revoked) => result(
            Status::Fail,
            "published as revoked (empty p=) while the key is still in use".into(),
        ),
        (DkimValue::Revoked, Served::Revoked) => result(Status::Pass, "revoked (empty p=)".into()),
        (DkimValue::Revoked, Served::Missing) => result(
            Status::Warn,
            format!(
                "not published: publish `{}` so verifiers see the key is withdrawn",
                dns::REVOKED
            ),
        ),
        (DkimValue::Revoked, Served::Key(_)) => result(
            Status::Fail,
            format!(
                "DNS still serves the withdrawn key: replace it with `{}`",
                dns::REVOKED
            ),
        ),
    }
}

/// The DMARC finding, and the report domains of a valid record.
fn dmarc_finding(dns: &dyn Dns, name: &str, expected: Option<&str>) -> (Finding, Vec<String>) {
    let result = |status, detail: String| finding(Kind::Dmarc, name, status, detail);
    let txt = match dns.txt(name) {
        Ok(txt) => txt,
        Err(e) => return (result(Status::Unknown, e.to_string()), Vec::new()),
    };
    let records: Vec<&String> = txt.iter().filter(|t| dmarc::is_dmarc(t)).collect();
    let text = match records.as_slice() {
        [] => {
            let want = expected.unwrap_or("v=DMARC1; p=none");
            return (
                result(Status::Fail, format!("no DMARC record: publish `{want}`")),
                Vec::new(),
            );
        }
        [one] => one.as_str(),
        several => {
            return (
                result(
                    Status::Fail,
                    format!(
                        "{} DMARC records: receivers ignore them all (RFC 7489 6.6.3)",
                        several.len()
                    ),
                ),
                Vec::new(),
            );
        }
    };
    let parsed = match dmarc::parse(text) {
        Ok(p) => p,
        Err(e) => {
            return (
                result(Status::Fail, format!("`{text}` is invalid: {e}")),
                Vec::new(),
            );
        }
    };
    let finding = if let Some(want) = expected.filter(|want| *want != text) {
        result(
            Status::Warn,
            format!("`{text}` differs from the spec's `{want}`"),
        )
    } else if !parsed.ignored.is_empty() {
        result(
            Status::Warn,
            format!(
                "`{text}`: receivers ignore the unknown tag(s) {}",
                parsed.ignored.join(", ")
            ),
        )
    } else {
        result(Status::Pass, format!("`{text}` (p={})", parsed.policy))
    };
    (finding, parsed.report_domains)
}

fn report_auth_finding(dns: &dyn Dns, domain: &str, report_domain: &str) -> Finding {
    let name = format!("{domain}._report._dmarc.{report_domain}");
    let (status, detail) = match dns.txt(&name) {
        Ok(txt) if txt.iter().any(|t| dmarc::is_dmarc(t)) => (
            Status::Pass,
            format!("{report_domain} accepts reports for {domain}"),
        ),
        Ok(_) => (
            Status::Warn,
            format!(
                "{report_domain} has not authorized reports for {domain}: receivers will not \
                 send them until {report_domain}'s zone has `{name} TXT \"v=DMARC1\"`"
            ),
        ),
        Err(e) => (Status::Unknown, e.to_string()),
    };
    finding(Kind::DmarcReportAuth, name.clone(), status, detail)
}

fn fcrdns_finding(dns: &dyn Dns, ip: IpAddr, hostname: &str) -> Finding {
    // Who refuses mail from an address that fails: over IPv6, Gmail always.
    let refused_by = match ip {
        IpAddr::V6(_) => {
            "; mail leaves over IPv6 from it (host.protocols), and Gmail refuses mail over IPv6 \
             without forward-confirmed reverse DNS (550-5.7.25): fix it, or set \
             host.protocols: ipv4"
        }
        IpAddr::V4(_) => "",
    };
    let result = |status, detail: String| {
        let detail = match status {
            Status::Fail => detail + refused_by,
            _ => detail,
        };
        finding(Kind::Fcrdns, ip.to_string(), status, detail)
    };
    let names = match dns.ptr(ip) {
        Ok(names) if names.is_empty() => {
            return result(
                Status::Fail,
                format!(
                    "no PTR record: many receivers refuse mail from addresses without reverse \
                     DNS; ask the address's provider for PTR {hostname}"
                ),
            );
        }
        Ok(names) => names,
        Err(e) => return result(Status::Unknown, e.to_string()),
    };
    let mut confirmed = Vec::new();
    for name in &names {
        match dns.addrs(name, Family::of(ip)) {
            Ok(addrs) if addrs.contains(&ip) => confirmed.push(name.as_str()),
            Ok(_) => {}
            Err(e) => return result(Status::Unknown, e.to_string()),
        }
    }
    if confirmed.is_empty() {
        return result(
            Status::Fail,
            format!(
                "PTR says {}, which does not resolve back to {ip} (not forward-confirmed)",
                names.join(", ")
            ),
        );
    }
    if !confirmed.contains(&hostname) {
        return result(
            Status::Warn,
            format!(
                "forward-confirmed as {}, but Postfix greets as {hostname}: make the PTR and \
                 host.hostname agree",
                confirmed.join(", ")
            ),
        );
    }
    result(Status::Pass, format!("{ip} ↔ {hostname}"))
}

fn blocklist_finding(dns: &dyn Dns, ip: IpAddr, zone: &str) -> Finding {
    let target = format!("{ip} in {zone}");
    let result = |status, detail: String| finding(Kind::Blocklist, target.clone(), status, detail);
    if !is_public(ip) {
        return result(Status::Skip, "not a public address".into());
    }
    let name = format!("{}.{zone}", resolve::reversed(ip));
    let answers = match dns.addrs(&name, Family::V4) {
        Ok(a) => a,
        Err(e) => return result(Status::Unknown, e.to_string()),
    };
    if answers.is_empty() {
        return result(Status::Pass, "not listed".into());
    }
    let codes: Vec<String> = answers.iter().map(ToString::to_string).collect();
    // 127.255.255.x is how Spamhaus and others refuse a query (e.g. through a
    // public resolver): no verdict either way.
    if answers
        .iter()
        .all(|a| matches!(a, IpAddr::V4(v4) if v4.octets()[..3] == [127, 255, 255]))
    {
        return result(
            Status::Unknown,
            format!(
                "{zone} refused the query ({}); ask it through your own resolver",
                codes.join(", ")
            ),
        );
    }
    let reason = dns
        .txt(&name)
        .ok()
        .and_then(|t| t.into_iter().next())
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    result(
        Status::Fail,
        format!("listed ({}){reason}", codes.join(", ")),
    )
}

/// Addresses a blocklist can list: not loopback, private, link-local or unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80)
        }
    }
}

/// Postfix, OpenDKIM and the milter socket: only on the running system.
fn host_findings(system: &impl Host) -> Vec<Finding> {
    let socket = milter_socket();
    let socket = socket.as_str();
    if !system.is_live() {
        let why = "not the running system (--root)";
        return vec![
            finding(Kind::Daemon, "postfix", Status::Skip, why),
            finding(Kind::Daemon, "opendkim", Status::Skip, why),
            finding(Kind::MilterSocket, socket, Status::Skip, why),
        ];
    }
    let mut out = Vec::new();
    for (service, name) in [
        (Service::Postfix, "postfix"),
        (Service::Opendkim, "opendkim"),
    ] {
        out.push(if system.service_running(service) {
            finding(Kind::Daemon, name, Status::Pass, "running")
        } else {
            finding(
                Kind::Daemon,
                name,
                Status::Fail,
                "not running: mail is not sent (postfix) or not signed (opendkim)",
            )
        });
    }
    out.push(match system.connect_unix(socket) {
        Ok(()) => finding(
            Kind::MilterSocket,
            socket,
            Status::Pass,
            "opendkim accepts connections",
        ),
        Err(e) => finding(
            Kind::MilterSocket,
            socket,
            Status::Fail,
            format!("{e:#}: Postfix cannot reach OpenDKIM, so mail goes out unsigned"),
        ),
    });
    out
}

/// The TLS policy main.cf puts in force (each setting's last value, as
/// Postfix reads it): for DANE, whether the resolver Postfix asks validates
/// DNSSEC — without it no TLSA record is ever found; with MTA-STS, whether
/// its resolver answers — without it Postfix's policy lookups fail and mail
/// waits.
fn tls_findings(system: &impl Host) -> Result<Vec<Finding>> {
    let main_cf = crate::desired::paths::MAIN_CF;
    let outbound = |status, detail: String| finding(Kind::Tls, "outbound", status, detail);
    let Some(file) = system.read_file(main_cf)? else {
        return Ok(vec![outbound(Status::Skip, format!("no {main_cf}"))]);
    };
    let text = String::from_utf8_lossy(&file.content);
    let setting = |key| crate::desired::main_cf_setting(&text, key);
    let resolver = crate::desired::paths::MTA_STS_RESOLVER;
    let mta_sts = setting("smtp_tls_policy_maps").is_some_and(|m| m.contains(resolver));
    let level = setting("smtp_tls_security_level").unwrap_or_else(|| "none".into());
    let dnssec = setting("smtp_dns_support_level").as_deref() == Some("dnssec");
    let policy = match (
        level.as_str(),
        setting("relayhost").filter(|r| !r.is_empty()),
    ) {
        (level, Some(relay)) => outbound(
            Status::Pass,
            format!("every message goes to the relay {relay} with TLS {level}"),
        ),
        ("dane", _) if !dnssec => outbound(
            Status::Fail,
            "smtp_tls_security_level is dane without smtp_dns_support_level = dnssec: \
             Postfix uses opportunistic TLS"
                .into(),
        ),
        ("dane", _) if !system.is_live() => outbound(
            Status::Skip,
            "DANE; the resolver is not checked for another root (--root)".into(),
        ),
        ("dane", _) => match resolve::local_validation() {
            Ok(servers) => outbound(
                Status::Pass,
                format!(
                    "DANE (RFC 7672): the resolver at {} validates DNSSEC; receivers with \
                     TLSA records get verified TLS, {}",
                    servers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if mta_sts {
                        "then MTA-STS (postfix-mta-sts-resolver) for those without, else \
                         opportunistic"
                    } else {
                        "others opportunistic"
                    }
                ),
            ),
            Err(why) => outbound(
                Status::Fail,
                format!(
                    "DANE is configured but {why}: Postfix finds no validated TLSA record and \
                     sends with opportunistic TLS only"
                ),
            ),
        },
        ("may", _) => outbound(
            Status::Pass,
            "opportunistic: TLS when the receiver offers it, unauthenticated (outbound.tls: \
             dane verifies receivers that publish TLSA records)"
                .into(),
        ),
        (other, _) => outbound(Status::Pass, format!("smtp_tls_security_level = {other}")),
    };
    if !mta_sts {
        return Ok(vec![policy]);
    }
    let target = "mta-sts-resolver";
    let answers = if !system.is_live() {
        finding(
            Kind::Tls,
            target,
            Status::Skip,
            "not the running system (--root)",
        )
    } else {
        let addr: std::net::SocketAddr = resolver.parse().expect("a constant address");
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)) {
            Ok(_) => finding(
                Kind::Tls,
                target,
                Status::Pass,
                format!("answers on {resolver}"),
            ),
            Err(e) => finding(
                Kind::Tls,
                target,
                Status::Fail,
                format!(
                    "nothing answers on {resolver} ({e}): Postfix's TLS policy lookups fail \
                     and mail to receivers without DANE waits; start postfix-mta-sts-resolver"
                ),
            ),
        }
    };
    Ok(vec![policy, answers])
}

/// What to run about the records that are not as they should be, as
/// commands that work as printed.
fn next_steps(
    findings: &[Finding],
    dkim: &[DkimSelector],
    again: &crate::hint::Again,
    resolver: Option<ResolverAddr>,
) -> String {
    let records = [Kind::Spf, Kind::Dkim, Kind::Dmarc, Kind::DmarcReportAuth];
    let mut out = String::new();
    if dkim
        .iter()
        .any(|s| matches!(s.value, DkimValue::Missing(_)))
    {
        let _ = writeln!(out, "{} makes the missing keys.", again.cmd("apply"));
    }
    if findings
        .iter()
        .any(|f| records.contains(&f.check) && f.status != Status::Pass)
    {
        let _ = writeln!(out, "{} prints the records to publish.", again.cmd("dns"));
    }
    if dkim.iter().any(|s| s.state == State::Staged) {
        let resolvers: Vec<ResolverAddr> = resolver.into_iter().collect();
        let _ = writeln!(
            out,
            "Once DNS serves the staged key, {} switches signing to it.",
            again.with_resolvers(&resolvers).cmd("rotate activate")
        );
    }
    if out.is_empty() {
        out
    } else {
        format!("\n{out}")
    }
}

/// The findings as an aligned table and a count per status.
pub fn text(findings: &[Finding]) -> String {
    let target_width = findings
        .iter()
        .map(|f| f.target.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = String::new();
    for f in findings {
        let (style, word) = match f.status {
            Status::Pass => (anstyle::AnsiColor::Green.on_default(), "pass"),
            Status::Warn => (anstyle::AnsiColor::Yellow.on_default().bold(), "warn"),
            Status::Fail => (anstyle::AnsiColor::Red.on_default().bold(), "FAIL"),
            Status::Skip => (anstyle::Style::new().dimmed(), "skip"),
            Status::Unknown => (anstyle::AnsiColor::Magenta.on_default().bold(), "????"),
        };
        let _ = writeln!(
            out,
            "{style}{word}{style:#}  {:<17} {:<target_width$}  {}",
            f.check.name(),
            f.target,
            f.detail
        );
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    let _ = writeln!(
        out,
        "\ncheck: {} pass, {} warn, {} fail, {} skip, {} unknown",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip),
        count(Status::Unknown)
    );
    if count(Status::Unknown) > 0 {
        let _ = writeln!(
            out,
            "???? = could not be checked (no answer, a refused query): not verified"
        );
    }
    out
}

/// A DNS stand-in for unit tests: records by name, and names that fail to resolve.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::{HashMap, HashSet};
    use std::net::IpAddr;

    use crate::resolve::{Dns, Family, LookupError};

    #[derive(Default)]
    pub struct FakeDns {
        txt: HashMap<String, Vec<String>>,
        addrs: HashMap<String, Vec<IpAddr>>,
        mx: HashMap<String, Vec<String>>,
        ptr: HashMap<IpAddr, Vec<String>>,
        failing: HashSet<String>,
    }

    impl FakeDns {
        pub fn txt(mut self, name: &str, value: &str) -> Self {
            self.txt.entry(name.into()).or_default().push(value.into());
            self
        }
        /// An A or AAAA record, by the address's family.
        pub fn a(mut self, name: &str, ip: &str) -> Self {
            let ip = ip.parse().unwrap();
            self.addrs.entry(name.into()).or_default().push(ip);
            self
        }
        pub fn mx(mut self, name: &str, host: &str) -> Self {
            self.mx.entry(name.into()).or_default().push(host.into());
            self
        }
        pub fn ptr(mut self, ip: &str, name: &str) -> Self {
            let ip = ip.parse().unwrap();
            self.ptr.entry(ip).or_default().push(name.into());
            self
        }
        /// Lookups of `name` time out.
        pub fn fail(mut self, name: &str) -> Self {
            self.failing.insert(name.into());
            self
        }
        fn check(&self, name: &str, rtype: &'static str) -> Result<(), LookupError> {
            if self.failing.contains(name) {
                return Err(LookupError {
                    name: name.into(),
                    rtype,
                    reason: "request timed out".into(),
                });
            }
            Ok(())
        }
    }

    impl Dns for FakeDns {
        fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
            self.check(name, "TXT")?;
            Ok(self.txt.get(name).cloned().unwrap_or_default())
        }
        fn addrs(&self, name: &str, family: Family) -> Result<Vec<IpAddr>, LookupError> {
            self.check(name, "A")?;
            Ok(self
                .addrs
                .get(name)
                .into_iter()
                .flatten()
                .filter(|ip| Family::of(**ip) == family)
                .copied()
                .collect())
        }
        fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
            self.check(name, "MX")?;
            Ok(self.mx.get(name).cloned().unwrap_or_default())
        }
        fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
            self.check(&ip.to_string(), "PTR")?;
            Ok(self.ptr.get(&ip).cloned().unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDns;
    use super::*;

    /// A one-domain spec with `host` lines added to its host section.
    fn spec(host: &str) -> HostSpec {
        crate::spec::parse(
            &format!(
                "host:\n  hostname: mail.example.com\n{host}domains:\n  example.com:\naliases:\n  root: ops@example.net\n"
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
        .0
        .for_host(None)
        .unwrap()
    }

    fn status_of(findings: &[Finding], check: Kind) -> Vec<(String, Status)> {
        findings
            .iter()
            .filter(|f| f.check == check)
            .map(|f| (f.target.clone(), f.status))
            .collect()
    }

    #[test]
    fn a_relay_host_skips_the_address_checks() {
        let spec = spec("  relay:\n    host: smtp.example.net\n");
        let findings = dns_findings(&spec, &[], &FakeDns::default());
        assert_eq!(
            status_of(&findings, Kind::Address),
            [("mail.example.com".to_string(), Status::Skip)]
        );
        assert!(status_of(&findings, Kind::Fcrdns).is_empty());
    }

    #[test]
    fn unanswered_lookups_are_unknown_and_never_pass() {
        let dns = FakeDns::default()
            .fail("mail.example.com")
            .fail("example.com")
            .fail("_dmarc.example.com");
        let findings = dns_findings(&spec(""), &[], &dns);
        for kind in [Kind::Address, Kind::Spf, Kind::Dmarc] {
            assert_eq!(
                status_of(&findings, kind)[0].1,
                Status::Unknown,
                "{kind:?}: {findings:#?}"
            );
        }
        assert!(findings.iter().all(|f| f.status != Status::Pass));
    }

    #[test]
    fn blocklists_tell_listed_from_refused() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let dns = FakeDns::default()
            .a("10.2.0.192.bl.example", "127.0.0.2")
            .txt("10.2.0.192.bl.example", "listed for spam")
            .a("10.2.0.192.refusing.example", "127.255.255.254");
        let listed = blocklist_finding(&dns, ip, "bl.example");
        assert_eq!(listed.status, Status::Fail);
        assert!(listed.detail.contains("127.0.0.2") && listed.detail.contains("listed for spam"));
        assert_eq!(
            blocklist_finding(&dns, ip, "refusing.example").status,
            Status::Unknown
        );
        assert_eq!(
            blocklist_finding(&dns, ip, "clean.example").status,
            Status::Pass
        );
        let private = blocklist_finding(&dns, "10.1.2.3".parse().unwrap(), "bl.example");
        assert_eq!(private.status, Status::Skip);
    }

    #[test]
    fn reverse_dns_must_be_forward_confirmed_and_match_the_hostname() {
        let dns = FakeDns::default()
            .ptr("192.0.2.10", "mail.example.com")
            .a("mail.example.com", "192.0.2.10")
            .ptr("192.0.2.11", "other.example.com")
            .a("other.example.com", "192.0.2.11")
            .ptr("192.0.2.12", "liar.example.com")
            .a("liar.example.com", "198.51.100.1");
        let status =
            |ip: &str| fcrdns_finding(&dns, ip.parse().unwrap(), "mail.example.com").status;
        assert_eq!(status("192.0.2.10"), Status::Pass);
        assert_eq!(status("192.0.2.11"), Status::Warn);
        assert_eq!(status("192.0.2.12"), Status::Fail);
        assert_eq!(status("192.0.2.13"), Status::Fail);
        // Over IPv6 the failure names who refuses the mail.
        let v6 = fcrdns_finding(&dns, "2001:db8::25".parse().unwrap(), "mail.example.com");
        assert_eq!(v6.status, Status::Fail);
        assert!(v6.detail.contains("550-5.7.25"), "{}", v6.detail);
    }

    #[test]
    fn text_counts_each_status() {
        let colored = text(&[
            finding(Kind::Spf, "example.com", Status::Pass, "ok"),
            finding(Kind::Dmarc, "_dmarc.example.com", Status::Fail, "bad"),
        ]);
        let text = anstream::adapter::strip_str(&colored).to_string();
        assert!(text.contains("FAIL  dmarc"), "{text}");
        assert!(
            text.ends_with("check: 1 pass, 0 warn, 1 fail, 0 skip, 0 unknown\n"),
            "{text}"
        );
    }
}
