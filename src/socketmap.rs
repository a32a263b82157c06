//! `mailsetup socketmap`: the Postfix lookups (socketmap_table(5)) that need
//! the DNS. Postfix's `spawn` service runs it, one process per connection,
//! with the connection as standard input and output.
//!
//! - table `dane`: `dane` for receivers that publish DANE, so that DANE takes
//!   precedence over MTA-STS (RFC 8461 section 2: an MTA-STS policy must not
//!   override DANE). Postfix asks it first in `smtp_tls_policy_maps`; for
//!   every other receiver it answers NOTFOUND and Postfix asks the MTA-STS
//!   resolver next.
//! - table `transport`: the group of `outbound.limits` whose MX names match
//!   the receiver's MX hosts (a Microsoft 365 tenant on its own domain is
//!   `*.mail.protection.outlook.com`), as Postfix's transport `GROUP:`.

use std::io::BufRead;

use crate::resolve::{Dns, RData, RecordType, ResponseCode, SecureAnswer};

/// The DNSSEC-aware lookups the verdict needs (the local validating resolver).
pub trait SecureDns {
    fn query(&self, name: &str, rtype: RecordType) -> Result<SecureAnswer, String>;
}

/// What one lookup gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The answer (`dane`: the receiver's MX records and at least one MX
    /// host's TLSA records validate; `GROUP:` its transport).
    Found(String),
    /// Nothing here: the next table (MTA-STS, the default transport) decides.
    NotFound,
    /// The DNS could not say: Postfix defers the mail rather than guess.
    Temp(String),
}

/// The TLS verdict for the next-hop `domain`: DANE when its MX RRset is signed
/// and validated (or it has none and is its own host) and one of its MX hosts
/// has validated `_25._tcp` TLSA records (RFC 7672 2.2).
pub fn dane(dns: &dyn SecureDns, domain: &str) -> Verdict {
    // Postfix also asks for each parent domain (".example.com"); explicit
    // routes ([host]:port) and anything odd are not DANE's to judge either.
    if domain.is_empty() || domain.starts_with(['[', '.']) || domain.contains([' ', ':', '/']) {
        return Verdict::NotFound;
    }
    let mx = match dns.query(domain, RecordType::MX) {
        Ok(a) => a,
        Err(e) => return Verdict::Temp(format!("{domain} MX: {e}")),
    };
    let hosts: Vec<String> = match mx.code {
        ResponseCode::NoError if !mx.authentic => return Verdict::NotFound,
        ResponseCode::NoError => mx
            .records
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some(mx.exchange.to_ascii().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect(),
        ResponseCode::NXDomain => return Verdict::NotFound,
        code => return Verdict::Temp(format!("{domain} MX: {code}")),
    };
    // No MX: the domain is its own mail host. A null MX (".") takes no mail.
    let hosts = if hosts.is_empty() {
        vec![domain.trim_end_matches('.').to_string()]
    } else {
        hosts.into_iter().filter(|h| !h.is_empty()).collect()
    };
    for host in hosts {
        match dns.query(&format!("_25._tcp.{host}"), RecordType::TLSA) {
            Ok(t) if t.authentic && !t.records.is_empty() => return Verdict::Found("dane".into()),
            Ok(t) if matches!(t.code, ResponseCode::NoError | ResponseCode::NXDomain) => {}
            Ok(t) => return Verdict::Temp(format!("_25._tcp.{host} TLSA: {}", t.code)),
            Err(e) => return Verdict::Temp(format!("_25._tcp.{host} TLSA: {e}")),
        }
    }
    Verdict::NotFound
}

/// One group of outbound.limits found by the receiver's MX hosts: their
/// names equal `mx` or end in `.mx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxGroup {
    pub group: String,
    pub mx: String,
}

impl std::str::FromStr for MxGroup {
    type Err = String;
    /// `GROUP=NAME`, both checked as the spec checks them.
    fn from_str(s: &str) -> Result<MxGroup, String> {
        let (group, mx) = s
            .split_once('=')
            .ok_or_else(|| format!("`{}`: expected GROUP=NAME", s.escape_debug()))?;
        let group: crate::spec::TransportName = group.parse()?;
        let mx: crate::spec::DomainName = mx.parse()?;
        Ok(MxGroup {
            group: group.to_string(),
            mx: mx.to_string(),
        })
    }
}

/// The group the recipient `key` belongs to by its domain's MX hosts, if any.
/// Postfix asks a socketmap, as any pattern table, with the whole address
/// (`user@domain`); `postmap -q` may ask with the domain alone.
pub fn transport(dns: &dyn Dns, groups: &[MxGroup], key: &str) -> Verdict {
    let domain = key.rsplit_once('@').map_or(key, |(_, domain)| domain);
    // Parent-domain lookups (".example.com") are not ours.
    if groups.is_empty() || domain.is_empty() || domain.starts_with(['.', '[']) {
        return Verdict::NotFound;
    }
    let hosts = match dns.mx(domain.trim_end_matches('.')) {
        Ok(hosts) => hosts,
        Err(e) => return Verdict::Temp(e.to_string()),
    };
    groups
        .iter()
        .find(|g| {
            hosts.iter().any(|h| {
                let h = h.trim_end_matches('.');
                h == g.mx
                    || h.strip_suffix(&g.mx)
                        .is_some_and(|head| head.ends_with('.'))
            })
        })
        .map_or(Verdict::NotFound, |g| {
            Verdict::Found(format!("{}:", g.group))
        })
}

/// The longest request read: a name and a domain.
const MAX_REQUEST: usize = 10_000;

/// Serves socketmap requests (`TABLE KEY` as netstrings) from `input` until
/// it ends, each answer handed to `reply` as a netstring.
pub fn serve(
    mut input: impl BufRead,
    (secure, dns): (&dyn SecureDns, &dyn Dns),
    groups: &[MxGroup],
    mut reply: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    while let Some(request) = read_netstring(&mut input)? {
        let (table, key) = request.split_once(' ').unwrap_or((&request, ""));
        let key = key.to_ascii_lowercase();
        let verdict = match table {
            "dane" => dane(secure, &key),
            "transport" => transport(dns, groups, &key),
            _ => Verdict::Temp(format!("no table {table:?} here")),
        };
        let answer = match verdict {
            Verdict::Found(value) => format!("OK {value}"),
            Verdict::NotFound => "NOTFOUND ".to_string(),
            // No newline or comma may reach Postfix from a DNS error text.
            Verdict::Temp(why) => format!("TEMP {}", why.replace(|c: char| c.is_control(), " ")),
        };
        reply(&format!("{}:{answer},", answer.len()))?;
    }
    Ok(())
}

/// One netstring (`LEN:DATA,`), or `None` at the end of the input.
fn read_netstring(input: &mut impl BufRead) -> anyhow::Result<Option<String>> {
    let mut length = Vec::new();
    if input.read_until(b':', &mut length)? == 0 {
        return Ok(None);
    }
    let digits = length.strip_suffix(b":").unwrap_or(&length);
    let length: usize = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .filter(|n| *n <= MAX_REQUEST)
        .ok_or_else(|| anyhow::anyhow!("not a socketmap request (netstring length)"))?;
    let mut data = vec![0; length + 1];
    input.read_exact(&mut data)?;
    if data.pop() != Some(b',') {
        anyhow::bail!("not a socketmap request (no comma after the data)");
    }
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::{MX, TLSA, tlsa};

    /// Answers from a table: (name, type) → (code, authentic, records).
    struct Table(Vec<Row>);

    impl SecureDns for Table {
        fn query(&self, name: &str, rtype: RecordType) -> Result<SecureAnswer, String> {
            self.0
                .iter()
                .find(|(n, t, ..)| *n == name && *t == rtype)
                .map(|(_, _, code, authentic, records)| SecureAnswer {
                    code: *code,
                    authentic: *authentic,
                    records: records.clone(),
                })
                .ok_or_else(|| "timed out".to_string())
        }
    }

    fn mx(host: &str) -> RData {
        RData::MX(MX::new(10, Name::from_ascii(host).unwrap()))
    }

    fn tlsa() -> RData {
        RData::TLSA(TLSA::new(
            tlsa::CertUsage::DaneEe,
            tlsa::Selector::Spki,
            tlsa::Matching::Sha256,
            vec![0; 32],
        ))
    }

    use ResponseCode::{NXDomain, NoError, ServFail};

    type Row = (&'static str, RecordType, ResponseCode, bool, Vec<RData>);

    /// a.test's MX, mx.a.test, validated or not.
    fn mx_of_a(authentic: bool) -> Row {
        (
            "a.test",
            RecordType::MX,
            NoError,
            authentic,
            vec![mx("mx.a.test.")],
        )
    }

    /// The TLSA answer at `name`: its code, whether it validated, and a record or none.
    fn tlsa_at(name: &'static str, code: ResponseCode, authentic: bool, present: bool) -> Row {
        let records = if present { vec![tlsa()] } else { vec![] };
        (name, RecordType::TLSA, code, authentic, records)
    }

    const MX_TLSA: &str = "_25._tcp.mx.a.test";

    #[test]
    fn dane_only_when_mx_and_tlsa_validate() {
        let dane_found = Verdict::Found("dane".into());
        let secure = Table(vec![mx_of_a(true), tlsa_at(MX_TLSA, NoError, true, true)]);
        assert_eq!(dane(&secure, "a.test"), dane_found);
        // TLSA records an insecure zone serves do not count.
        let insecure_tlsa = Table(vec![mx_of_a(true), tlsa_at(MX_TLSA, NoError, false, true)]);
        assert_eq!(dane(&insecure_tlsa, "a.test"), Verdict::NotFound);
        // Nor do they behind an MX RRset that did not validate.
        let insecure_mx = Table(vec![mx_of_a(false)]);
        assert_eq!(dane(&insecure_mx, "a.test"), Verdict::NotFound);
        // No MX: the domain is its own host.
        let own = Table(vec![
            ("a.test", RecordType::MX, NoError, true, vec![]),
            tlsa_at("_25._tcp.a.test", NoError, true, true),
        ]);
        assert_eq!(dane(&own, "a.test"), dane_found);
        let none = Table(vec![mx_of_a(true), tlsa_at(MX_TLSA, NXDomain, true, false)]);
        assert_eq!(dane(&none, "a.test"), Verdict::NotFound);
        assert_eq!(dane(&none, "[10.0.0.1]:25"), Verdict::NotFound);
        // Parent-domain lookups are not asked of the DNS at all.
        assert_eq!(dane(&Table(vec![]), ".a.test"), Verdict::NotFound);
    }

    #[test]
    fn a_dns_failure_defers() {
        let failing = Table(vec![
            mx_of_a(true),
            tlsa_at(MX_TLSA, ServFail, false, false),
        ]);
        assert!(matches!(dane(&failing, "a.test"), Verdict::Temp(_)));
        assert!(matches!(dane(&Table(vec![]), "a.test"), Verdict::Temp(_)));
    }

    #[test]
    fn serves_netstrings_until_the_end() {
        let dns = Table(vec![
            mx_of_a(true),
            tlsa_at(MX_TLSA, NoError, true, true),
            ("b.test", RecordType::MX, NXDomain, false, vec![]),
        ]);
        let mx = crate::check::fake::FakeDns::default()
            .mx("b.test", "b-test.mail.protection.outlook.com");
        let groups = ["microsoft=mail.protection.outlook.com".parse().unwrap()];
        let mut out = String::new();
        let input = b"11:dane A.test,11:dane b.test,16:transport b.test,16:transport a.test,";
        serve(&input[..], (&dns, &mx), &groups, |r| {
            out.push_str(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, "7:OK dane,9:NOTFOUND ,13:OK microsoft:,9:NOTFOUND ,");
        let serve_bytes = |b: &[u8]| serve(b, (&dns, &mx), &groups, |_| Ok(()));
        assert!(serve_bytes(b"x:dane a.test,").is_err());
        assert!(serve_bytes(b"3:abcd").is_err());
    }

    #[test]
    fn transport_by_mx_name_on_label_boundaries() {
        let dns = crate::check::fake::FakeDns::default()
            .mx(
                "tenant.example",
                "tenant-example.mail.protection.outlook.com",
            )
            .mx("lookalike.example", "evilmail.protection.outlook.com")
            .fail("broken.example");
        let groups: Vec<MxGroup> = ["microsoft=mail.protection.outlook.com", "other=x.example"]
            .iter()
            .map(|g| g.parse().unwrap())
            .collect();
        assert_eq!(
            transport(&dns, &groups, "tenant.example"),
            Verdict::Found("microsoft:".into())
        );
        assert_eq!(
            transport(&dns, &groups, "lookalike.example"),
            Verdict::NotFound
        );
        assert_eq!(transport(&dns, &groups, "none.example"), Verdict::NotFound);
        assert_eq!(
            transport(&dns, &groups, "u@tenant.example"),
            Verdict::Found("microsoft:".into())
        );
        assert_eq!(
            transport(&dns, &groups, ".tenant.example"),
            Verdict::NotFound
        );
        assert!(matches!(
            transport(&dns, &groups, "broken.example"),
            Verdict::Temp(_)
        ));
        assert!("smtp=x.example".parse::<MxGroup>().is_err());
        assert!("microsoft".parse::<MxGroup>().is_err());
    }
}
