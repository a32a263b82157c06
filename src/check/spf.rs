//! SPF (RFC 7208): parse a record, count its DNS lookups, and evaluate it for an
//! address the way a receiver's `check_host()` does.

use std::net::IpAddr;

use crate::resolve::{Dns, Family, LookupError};

/// RFC 7208 4.6.4: more DNS-querying terms than this is a permanent error.
pub const MAX_LOOKUPS: usize = 10;
/// RFC 7208 4.6.4: more lookups that find nothing (NXDOMAIN or no answer)
/// than this is a permanent error too.
pub const MAX_VOID_LOOKUPS: usize = 2;

/// What one evaluation has spent of RFC 7208 4.6.4's limits.
#[derive(Default)]
struct Counts {
    lookups: usize,
    voids: usize,
}

impl Counts {
    /// One more term that queries DNS.
    fn lookup(&mut self) -> Result<(), SpfResult> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(SpfResult::PermError(format!(
                "more than {MAX_LOOKUPS} DNS lookups (RFC 7208 4.6.4)"
            )));
        }
        Ok(())
    }

    /// A lookup that found nothing.
    fn void(&mut self, name: &str) -> Result<(), SpfResult> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(SpfResult::PermError(format!(
                "more than {MAX_VOID_LOOKUPS} lookups found nothing (the last: {name}; RFC 7208 \
                 4.6.4): receivers give up with permerror"
            )));
        }
        Ok(())
    }
}
/// Nested includes deeper than this are treated as a loop.
const MAX_DEPTH: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

/// A network in an `ip4:`/`ip6:` term or a CIDR suffix of `a`/`mx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefixes {
    pub v4: u8,
    pub v6: u8,
}

impl Prefixes {
    const FULL: Prefixes = Prefixes { v4: 32, v6: 128 };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(String),
    A(Option<String>, Prefixes),
    Mx(Option<String>, Prefixes),
    Ptr(Option<String>),
    Ip(IpAddr, u8),
    Exists(String),
}

impl Mechanism {
    /// Whether evaluating it queries DNS (and counts against the limit).
    fn queries_dns(&self) -> bool {
        !matches!(self, Mechanism::All | Mechanism::Ip(..))
    }
}

/// A parsed `v=spf1` record: its directives in order and the `redirect=` target.
/// `exp=` and unknown modifiers do not change the result and are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub directives: Vec<(Qualifier, Mechanism)>,
    pub redirect: Option<String>,
}

/// Whether a TXT string is an SPF record (RFC 7208 4.5: `v=spf1` then a space or the end).
pub fn is_spf(txt: &str) -> bool {
    let head = txt.get(..6).unwrap_or("");
    head.eq_ignore_ascii_case("v=spf1") && txt[6..].chars().next().is_none_or(|c| c == ' ')
}

pub fn parse(text: &str) -> Result<Record, String> {
    let mut terms = text.split_ascii_whitespace();
    if !terms
        .next()
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
    {
        return Err("does not start with v=spf1".into());
    }
    let mut record = Record {
        directives: Vec::new(),
        redirect: None,
    };
    let mut exp = false;
    for term in terms {
        let name_end = term.find([':', '/', '=']).unwrap_or(term.len());
        if term[name_end..].starts_with('=') {
            let (name, value) = (&term[..name_end], &term[name_end + 1..]);
            if !name.starts_with(|c: char| c.is_ascii_alphabetic())
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!("`{term}` is not a valid modifier"));
            }
            if name.eq_ignore_ascii_case("redirect") {
                if record.redirect.is_some() {
                    return Err("redirect= appears twice".into());
                }
                record.redirect = Some(domain_spec(term, value)?);
            } else if name.eq_ignore_ascii_case("exp") {
                if exp {
                    return Err("exp= appears twice".into());
                }
                exp = true;
            }
            continue;
        }
        let (qualifier, rest) = match term.as_bytes()[0] {
            b'+' => (Qualifier::Pass, &term[1..]),
            b'-' => (Qualifier::Fail, &term[1..]),
            b'~' => (Qualifier::SoftFail, &term[1..]),
            b'?' => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        record.directives.push((qualifier, mechanism(term, rest)?));
    }
    Ok(record)
}

fn mechanism(term: &str, text: &str) -> Result<Mechanism, String> {
    let name_end = text.find([':', '/']).unwrap_or(text.len());
    let (name, args) = (text[..name_end].to_ascii_lowercase(), &text[name_end..]);
    let required = |args: &str| -> Result<String, String> {
        match args.strip_prefix(':') {
            Some(d) => domain_spec(term, d),
            None => Err(format!("`{term}` needs a domain (`{name}:DOMAIN`)")),
        }
    };
    Ok(match name.as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required(args)?),
        "exists" => Mechanism::Exists(required(args)?),
        "a" | "mx" => {
            let (domain, prefixes) = domain_and_prefixes(term, args)?;
            if name == "a" {
                Mechanism::A(domain, prefixes)
            } else {
                Mechanism::Mx(domain, prefixes)
            }
        }
        "ptr" => Mechanism::Ptr(match args.strip_prefix(':') {
            Some(d) => Some(domain_spec(term, d)?),
            None if args.is_empty() => None,
            None => return Err(format!("`{term}` is not a valid ptr term")),
        }),
        "ip4" | "ip6" => {
            let value = args
                .strip_prefix(':')
                .ok_or_else(|| format!("`{term}` needs an address"))?;
            let (addr, len) = match value.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (value, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{term}`: `{addr}` is not an IP address"))?;
            if addr.is_ipv4() != (name == "ip4") {
                return Err(format!("`{term}`: wrong address family for {name}"));
            }
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => prefix_len(term, l, max)?,
                None => max,
            };
            Mechanism::Ip(addr, len)
        }
        _ => return Err(format!("`{term}` is not an SPF mechanism")),
    })
}

/// `[:domain][/v4][//v6]` after `a` or `mx`.
fn domain_and_prefixes(term: &str, args: &str) -> Result<(Option<String>, Prefixes), String> {
    let mut prefixes = Prefixes::FULL;
    let rest = match args.split_once("//") {
        Some((r, l)) => {
            prefixes.v6 = prefix_len(term, l, 128)?;
            r
        }
        None => args,
    };
    let rest = match rest.rsplit_once('/') {
        Some((r, l)) => {
            prefixes.v4 = prefix_len(term, l, 32)?;
            r
        }
        None => rest,
    };
    let domain = match rest.strip_prefix(':') {
        Some(d) => Some(domain_spec(term, d)?),
        None if rest.is_empty() => None,
        None => return Err(format!("`{term}` is not a valid term")),
    };
    Ok((domain, prefixes))
}

fn prefix_len(term: &str, text: &str, max: u8) -> Result<u8, String> {
    text.parse::<u8>()
        .ok()
        .filter(|l| *l <= max && !text.starts_with('0') || text == "0")
        .ok_or_else(|| format!("`{term}`: `/{text}` is not a prefix length (0 to {max})"))
}

fn domain_spec(term: &str, d: &str) -> Result<String, String> {
    if d.is_empty() || !d.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("`{term}` has no valid domain"));
    }
    Ok(d.trim_end_matches('.').to_ascii_lowercase())
}

/// What `check_host()` concludes (RFC 7208 2.6). `Unknown` is for what this
/// checker does not evaluate (macros, `ptr`), so it is never taken as a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError(String),
    PermError(String),
    Unknown(String),
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpfResult::Pass => f.write_str("pass"),
            SpfResult::Fail => f.write_str("fail"),
            SpfResult::SoftFail => f.write_str("softfail"),
            SpfResult::Neutral => f.write_str("neutral"),
            SpfResult::None => f.write_str("none (no SPF record)"),
            SpfResult::TempError(why) => write!(f, "temperror: {why}"),
            SpfResult::PermError(why) => write!(f, "permerror: {why}"),
            SpfResult::Unknown(why) => write!(f, "not determined: {why}"),
        }
    }
}

impl From<Qualifier> for SpfResult {
    fn from(q: Qualifier) -> SpfResult {
        match q {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

/// The one SPF record of `domain`: `Ok(None)` when there is none, `Err` with
/// the result a receiver would reach when it cannot be used.
pub fn fetch(dns: &dyn Dns, domain: &str) -> Result<Option<String>, SpfResult> {
    let txt = dns
        .txt(domain)
        .map_err(|e| SpfResult::TempError(e.to_string()))?;
    let mut spf: Vec<String> = txt.into_iter().filter(|t| is_spf(t)).collect();
    match spf.len() {
        0 => Ok(None),
        1 => Ok(spf.pop()),
        n => Err(SpfResult::PermError(format!(
            "{domain} has {n} SPF records (RFC 7208 4.5 allows one)"
        ))),
    }
}

/// Evaluates SPF for mail from `ip` with a sender in `domain`.
pub fn check_host(dns: &dyn Dns, ip: IpAddr, domain: &str) -> SpfResult {
    evaluate(dns, ip, domain, &mut Counts::default(), 0)
}

fn evaluate(
    dns: &dyn Dns,
    ip: IpAddr,
    domain: &str,
    counts: &mut Counts,
    depth: usize,
) -> SpfResult {
    if depth > MAX_DEPTH {
        return SpfResult::PermError(format!("includes nest deeper than {MAX_DEPTH} at {domain}"));
    }
    let text = match fetch(dns, domain) {
        Ok(Some(text)) => text,
        Ok(None) => return SpfResult::None,
        Err(result) => return result,
    };
    let record = match parse(&text) {
        Ok(r) => r,
        Err(e) => return SpfResult::PermError(format!("{domain}: {e}")),
    };
    for (qualifier, mechanism) in &record.directives {
        if mechanism.queries_dns()
            && let Err(e) = counts.lookup()
        {
            return e;
        }
        match matches(dns, ip, domain, mechanism, counts, depth) {
            Ok(true) => return (*qualifier).into(),
            Ok(false) => {}
            Err(result) => return result,
        }
    }
    let Some(target) = &record.redirect else {
        return SpfResult::Neutral;
    };
    if target.contains('%') {
        return macro_unknown(target);
    }
    if let Err(e) = counts.lookup() {
        return e;
    }
    match evaluate(dns, ip, target, counts, depth + 1) {
        SpfResult::None => SpfResult::PermError(format!("redirect={target} has no SPF record")),
        other => other,
    }
}

fn macro_unknown(spec: &str) -> SpfResult {
    SpfResult::Unknown(format!(
        "`{spec}` uses an SPF macro, which mailsetup does not expand"
    ))
}

fn matches(
    dns: &dyn Dns,
    ip: IpAddr,
    domain: &str,
    mechanism: &Mechanism,
    counts: &mut Counts,
    depth: usize,
) -> Result<bool, SpfResult> {
    let target = |d: &Option<String>| -> Result<String, SpfResult> {
        match d {
            Some(d) if d.contains('%') => Err(macro_unknown(d)),
            Some(d) => Ok(d.clone()),
            None => Ok(domain.to_string()),
        }
    };
    let temp = |e: LookupError| SpfResult::TempError(e.to_string());
    let family = Family::of(ip);
    let any_in = |addrs: &[IpAddr], p: Prefixes| {
        let len = if ip.is_ipv4() { p.v4 } else { p.v6 };
        addrs.iter().any(|a| in_network(*a, len, ip))
    };
    match mechanism {
        Mechanism::All => Ok(true),
        Mechanism::Ip(net, len) => Ok(in_network(*net, *len, ip)),
        Mechanism::A(d, p) => {
            let name = target(d)?;
            let addrs = dns.addrs(&name, family).map_err(temp)?;
            if addrs.is_empty() {
                counts.void(&name)?;
            }
            Ok(any_in(&addrs, *p))
        }
        Mechanism::Mx(d, p) => {
            let name = target(d)?;
            let hosts = dns.mx(&name).map_err(temp)?;
            if hosts.is_empty() {
                counts.void(&name)?;
            }
            for host in hosts.iter().take(MAX_LOOKUPS) {
                let addrs = dns.addrs(host, family).map_err(temp)?;
                if addrs.is_empty() {
                    counts.void(host)?;
                }
                if any_in(&addrs, *p) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Mechanism::Include(d) => {
            let d = target(&Some(d.clone()))?;
            match evaluate(dns, ip, &d, counts, depth + 1) {
                SpfResult::Pass => Ok(true),
                SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                SpfResult::None => Err(SpfResult::PermError(format!(
                    "include:{d} has no SPF record"
                ))),
                other => Err(other),
            }
        }
        Mechanism::Exists(d) => {
            let d = target(&Some(d.clone()))?;
            let found = !dns.addrs(&d, Family::V4).map_err(temp)?.is_empty();
            if !found {
                counts.void(&d)?;
            }
            Ok(found)
        }
        Mechanism::Ptr(_) => Err(SpfResult::Unknown(
            "the ptr mechanism is not evaluated (RFC 7208 5.5: do not use it)".into(),
        )),
    }
}

/// Whether `ip` is inside `net/len` (different families never match).
pub fn in_network(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// The DNS-querying terms of `domain`'s record and every record it includes or
/// redirects to (RFC 7208 4.6.4 caps the total at 10). A record that cannot be
/// fetched or used on the way is the `Err`: a `TempError` or a `PermError`.
pub fn count_lookups(dns: &dyn Dns, record: &Record) -> Result<usize, SpfResult> {
    let mut count = 0;
    count_into(dns, record, &mut count, 0)?;
    Ok(count)
}

fn count_into(
    dns: &dyn Dns,
    record: &Record,
    count: &mut usize,
    depth: usize,
) -> Result<(), SpfResult> {
    if depth > MAX_DEPTH {
        return Err(SpfResult::PermError(format!(
            "includes nest deeper than {MAX_DEPTH}"
        )));
    }
    let mut nested = Vec::new();
    for (_, mechanism) in &record.directives {
        if mechanism.queries_dns() {
            *count += 1;
        }
        if let Mechanism::Include(domain) = mechanism {
            nested.push(domain);
        }
    }
    if let Some(target) = &record.redirect {
        *count += 1;
        nested.push(target);
    }
    for domain in nested {
        // Macro targets depend on the message; their own lookups cannot be counted.
        if *count > MAX_LOOKUPS || domain.contains('%') {
            continue;
        }
        let text = fetch(dns, domain)?.ok_or_else(|| {
            SpfResult::PermError(format!("{domain} (included) has no SPF record"))
        })?;
        let nested =
            parse(&text).map_err(|e| SpfResult::PermError(format!("{domain} (included): {e}")))?;
        count_into(dns, &nested, count, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::fake::FakeDns;

    #[test]
    fn parses_the_records_mailsetup_publishes_and_common_ones() {
        let r = parse("v=spf1 a mx:example.net/24 ip4:192.0.2.0/24 ip6:2001:db8::1 include:_spf.example.org ~all").unwrap();
        assert_eq!(
            r.directives,
            vec![
                (Qualifier::Pass, Mechanism::A(None, Prefixes::FULL)),
                (
                    Qualifier::Pass,
                    Mechanism::Mx(Some("example.net".into()), Prefixes { v4: 24, v6: 128 })
                ),
                (
                    Qualifier::Pass,
                    Mechanism::Ip("192.0.2.0".parse().unwrap(), 24)
                ),
                (
                    Qualifier::Pass,
                    Mechanism::Ip("2001:db8::1".parse().unwrap(), 128)
                ),
                (
                    Qualifier::Pass,
                    Mechanism::Include("_spf.example.org".into())
                ),
                (Qualifier::SoftFail, Mechanism::All),
            ]
        );
        let r =
            parse("V=SPF1 a:Mail.Example.com//64 redirect=_spf.example.com exp=why.example.com")
                .unwrap();
        assert_eq!(r.redirect.as_deref(), Some("_spf.example.com"));
        assert_eq!(
            r.directives[0].1,
            Mechanism::A(Some("mail.example.com".into()), Prefixes { v4: 32, v6: 64 })
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        for (bad, why) in [
            ("v=spf2 -all", "v=spf1"),
            ("v=spf1 ip4:300.0.0.1 -all", "not an IP address"),
            ("v=spf1 ip4:2001:db8::1", "wrong address family"),
            ("v=spf1 ip4:192.0.2.0/33", "prefix length"),
            ("v=spf1 include -all", "needs a domain"),
            ("v=spf1 allow", "not an SPF mechanism"),
            ("v=spf1 redirect=a.example redirect=b.example", "twice"),
            ("v=spf1 a:/24", "no valid domain"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn only_v_spf1_records_count_as_spf() {
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("v=spf1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("google-site-verification=x"));
    }

    #[test]
    fn networks_match_by_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("192.0.2.0"), 24, ip("192.0.2.77")));
        assert!(!in_network(ip("192.0.2.0"), 24, ip("192.0.3.1")));
        assert!(in_network(ip("0.0.0.0"), 0, ip("203.0.113.9")));
        assert!(in_network(ip("2001:db8::"), 32, ip("2001:db8:1::5")));
        assert!(!in_network(ip("2001:db8::"), 32, ip("192.0.2.1")));
    }

    #[test]
    fn check_host_follows_a_mx_include_and_redirect() {
        let dns = FakeDns::default()
            .txt("example.com", "v=spf1 a mx include:spf.example.net -all")
            .a("example.com", "192.0.2.1")
            .mx("example.com", "mx.example.com")
            .a("mx.example.com", "192.0.2.2")
            .txt("spf.example.net", "v=spf1 ip4:198.51.100.0/24 ?all")
            .txt("redirected.example", "v=spf1 redirect=example.com");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            check_host(&dns, ip("192.0.2.1"), "example.com"),
            SpfResult::Pass
        );
        assert_eq!(
            check_host(&dns, ip("192.0.2.2"), "example.com"),
            SpfResult::Pass
        );
        assert_eq!(
            check_host(&dns, ip("198.51.100.7"), "example.com"),
            SpfResult::Pass
        );
        assert_eq!(
            check_host(&dns, ip("203.0.113.1"), "example.com"),
            SpfResult::Fail
        );
        assert_eq!(
            check_host(&dns, ip("192.0.2.1"), "redirected.example"),
            SpfResult::Pass
        );
        assert_eq!(
            check_host(&dns, ip("192.0.2.1"), "nospf.example"),
            SpfResult::None
        );
    }

    #[test]
    fn errors_are_never_a_pass() {
        let dns = FakeDns::default()
            .txt("two.example", "v=spf1 -all")
            .txt("two.example", "v=spf1 a -all")
            .txt("broken.example", "v=spf1 include:missing.example -all")
            .txt("macro.example", "v=spf1 exists:%{i}.bl.example -all")
            .txt("down.example", "v=spf1 a:unreachable.example -all")
            .fail("unreachable.example");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(
            matches!(check_host(&dns, ip, "two.example"), SpfResult::PermError(e) if e.contains("2 SPF records"))
        );
        assert!(
            matches!(check_host(&dns, ip, "broken.example"), SpfResult::PermError(e) if e.contains("no SPF record"))
        );
        assert!(matches!(
            check_host(&dns, ip, "macro.example"),
            SpfResult::Unknown(_)
        ));
        assert!(matches!(
            check_host(&dns, ip, "down.example"),
            SpfResult::TempError(_)
        ));
    }

    #[test]
    fn lookups_are_counted_through_includes() {
        let mut dns = FakeDns::default().txt(
            "example.com",
            "v=spf1 a mx include:one.example ip4:192.0.2.1 -all",
        );
        dns = dns.txt(
            "one.example",
            "v=spf1 include:two.example exists:x.example ~all",
        );
        dns = dns.txt(
            "two.example",
            "v=spf1 a:a.example a:b.example a:c.example a:d.example a:e.example ?all",
        );
        let record = parse(&fetch(&dns, "example.com").unwrap().unwrap()).unwrap();
        // a, mx, include + include, exists + five a: = 10
        assert_eq!(count_lookups(&dns, &record).unwrap(), 10);
        let dns = dns.txt("too-many.example", "v=spf1 include:example.com a -all");
        let record = parse(&fetch(&dns, "too-many.example").unwrap().unwrap()).unwrap();
        assert_eq!(count_lookups(&dns, &record).unwrap(), 12);
        // The evaluation itself stops at the limit (every name found, so
        // no lookup is void).
        let mut dns = dns;
        for name in [
            "too-many.example",
            "example.com",
            "a.example",
            "b.example",
            "c.example",
        ] {
            dns = dns.a(name, "192.0.2.99");
        }
        dns = dns
            .mx("example.com", "a.example")
            .a("x.example", "192.0.2.98");
        assert!(matches!(
            check_host(&dns, "203.0.113.1".parse().unwrap(), "too-many.example"),
            SpfResult::PermError(e) if e.contains("more than 10")
        ));
    }

    /// RFC 7208 4.6.4: a third lookup that finds nothing is a permerror, as
    /// pyspf answers.
    #[test]
    fn more_than_two_void_lookups_are_a_permerror() {
        let dns = FakeDns::default()
            .txt("example.com", "v=spf1 a:gone1.example a:gone2.example -all")
            .txt(
                "three.example",
                "v=spf1 a:gone1.example mx:gone2.example exists:gone3.example -all",
            );
        let ip = "203.0.113.1".parse().unwrap();
        assert_eq!(check_host(&dns, ip, "example.com"), SpfResult::Fail);
        assert!(matches!(
            check_host(&dns, ip, "three.example"),
            SpfResult::PermError(e) if e.contains("more than 2 lookups found nothing")
        ));
    }
}
