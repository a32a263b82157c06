//! DNS lookups for `check` and `rotate`, through a chosen server or the ones in
//! /etc/resolv.conf.
//!
//! "No such record" (NXDOMAIN, or the name exists without that type) is an empty
//! list; a server that cannot answer is a [`LookupError`]. Callers can therefore
//! never mistake a failed lookup for a missing record, and report it as such.

use std::cell::RefCell;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;
pub use hickory_resolver::proto::rr::{RData, RecordType};

use crate::spec::ResolverAddr;

/// A lookup the DNS could not answer (timeout, SERVFAIL, refused…).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} {rtype}: {reason}")]
pub struct LookupError {
    pub name: String,
    pub rtype: &'static str,
    pub reason: String,
}

/// Which address records an `a`/`mx` lookup wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// The lookups the checks make. Names are given and returned without the final
/// dot; they are always taken as fully qualified.
pub trait Dns {
    /// Each TXT record's strings, joined (RFC 7208 3.3, RFC 6376 3.6.2.2).
    fn txt(&self, name: &str) -> Result<Vec<String>, LookupError>;
    fn addrs(&self, name: &str, family: Family) -> Result<Vec<IpAddr>, LookupError>;
    /// The exchanges, in lower case.
    fn mx(&self, name: &str) -> Result<Vec<String>, LookupError>;
    /// The names a PTR lookup of `ip` gives, in lower case.
    fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, LookupError>;
}

/// The labels of an address in reverse order, as PTR and DNS blocklist names use
/// them: `192.0.2.10` → `10.2.0.192`; IPv6 as 32 nibbles.
pub fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|byte| [byte & 0xf, byte >> 4])
            .map(|nibble| format!("{nibble:x}"))
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// The PTR name of an address (`10.2.0.192.in-addr.arpa`).
pub fn ptr_name(ip: IpAddr) -> String {
    let zone = if ip.is_ipv4() {
        "in-addr.arpa"
    } else {
        "ip6.arpa"
    };
    format!("{}.{zone}", reversed(ip))
}

/// A stub resolver with its own single-threaded runtime.
pub struct Resolver {
    runtime: tokio::runtime::Runtime,
    inner: TokioResolver,
    /// Set once the server did not answer at all: later lookups fail at once
    /// instead of each waiting for its own timeout.
    unreachable: RefCell<Option<String>>,
}

impl Resolver {
    /// Asks `server`, or the servers in /etc/resolv.conf when `None`. /etc/hosts is
    /// never read: checks are about what the rest of the world sees.
    pub fn new(server: Option<ResolverAddr>) -> Result<Resolver> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the DNS runtime")?;
        let mut builder = match server {
            Some(addr) => {
                let addr = addr.socket_addr();
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .context("read the DNS servers from /etc/resolv.conf")?,
        };
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        // A dead server should cost seconds, not the default ten.
        options.timeout = Duration::from_secs(2);
        options.attempts = 1;
        // Answers must come back unfiltered: blocklists answer with 127.0.0.x.
        options.deny_answers.clear();
        let inner = {
            let _guard = runtime.enter();
            builder.build().context("set up the DNS resolver")?
        };
        Ok(Resolver {
            runtime,
            inner,
            unreachable: RefCell::new(None),
        })
    }

    fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, LookupError> {
        let error = |reason: String| LookupError {
            name: name.to_string(),
            rtype: record_type_name(rtype),
            reason,
        };
        if let Some(reason) = self.unreachable.borrow().as_ref() {
            return Err(error(reason.clone()));
        }
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|e| error(format!("not a DNS name: {e}")))?;
        match self.runtime.block_on(self.inner.lookup(fqdn, rtype)) {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter(|r| r.data.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e @ (NetError::Timeout | NetError::NoConnections)) => {
                *self.unreachable.borrow_mut() = Some(format!(
                    "not asked: the DNS server did not answer before ({e})"
                ));
                Err(error(format!("no answer: {e}")))
            }
            Err(e) => Err(error(format!("no answer: {e}"))),
        }
    }
}

fn record_type_name(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::TXT => "TXT",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::MX => "MX",
        RecordType::PTR => "PTR",
        _ => "record",
    }
}

fn plain_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl Dns for Resolver {
    fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .lookup(name, RecordType::TXT)?
            .into_iter()
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    fn addrs(&self, name: &str, family: Family) -> Result<Vec<IpAddr>, LookupError> {
        let rtype = match family {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        };
        Ok(self
            .lookup(name, rtype)?
            .into_iter()
            .filter_map(|data| match data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect())
    }

    fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .lookup(name, RecordType::MX)?
            .into_iter()
            .filter_map(|data| match data {
                RData::MX(mx) => Some(plain_name(&mx.exchange)),
                _ => None,
            })
            .collect())
    }

    fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
        Ok(self
            .lookup(&ptr_name(ip), RecordType::PTR)?
            .into_iter()
            .filter_map(|data| match data {
                RData::PTR(ptr) => Some(plain_name(&ptr.0)),
                _ => None,
            })
            .collect())
    }
}

/// Every configured resolver asked on its own: a record counts only when
/// each of them serves it (rotation switches signing only then). `servers`,
/// or each `nameserver` of /etc/resolv.conf when there are none.
pub struct Every {
    resolvers: Vec<(String, Resolver)>,
}

impl Every {
    pub fn new(servers: Vec<ResolverAddr>) -> Result<Every> {
        let servers: Vec<ResolverAddr> = match servers.is_empty() {
            false => servers,
            true => {
                let (config, _) = hickory_resolver::system_conf::read_system_conf()
                    .context("read the DNS servers from /etc/resolv.conf")?;
                let mut ips: Vec<IpAddr> = config.name_servers().iter().map(|n| n.ip).collect();
                ips.dedup();
                ips.into_iter()
                    .map(|ip| ResolverAddr::from_str(&ip.to_string()))
                    .collect::<Result<_, String>>()
                    .map_err(|e| anyhow::anyhow!(e))?
            }
        };
        if servers.is_empty() {
            anyhow::bail!("/etc/resolv.conf names no DNS server: pass --resolver");
        }
        Ok(Every {
            resolvers: servers
                .into_iter()
                .map(|addr| Ok((addr.to_string(), Resolver::new(Some(addr))?)))
                .collect::<Result<_>>()?,
        })
    }

    /// What every resolver agrees on: the values each of them serves.
    fn agreed<T: PartialEq>(
        &self,
        ask: impl Fn(&Resolver) -> Result<Vec<T>, LookupError>,
    ) -> Result<Vec<T>, LookupError> {
        let mut agreed: Option<Vec<T>> = None;
        for (label, resolver) in &self.resolvers {
            let values = ask(resolver).map_err(|mut e| {
                e.reason = format!("{label}: {}", e.reason);
                e
            })?;
            agreed = Some(match agreed {
                None => values,
                Some(before) => before.into_iter().filter(|v| values.contains(v)).collect(),
            });
        }
        Ok(agreed.unwrap_or_default())
    }
}

impl Dns for Every {
    fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.agreed(|r| r.txt(name))
    }
    fn addrs(&self, name: &str, family: Family) -> Result<Vec<IpAddr>, LookupError> {
        self.agreed(|r| r.addrs(name, family))
    }
    fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.agreed(|r| r.mx(name))
    }
    fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
        self.agreed(|r| r.ptr(ip))
    }
}

/// Whether Postfix can trust DNSSEC: every server /etc/resolv.conf names is
/// on this host (the path to any other is not protected), and each says it
/// validated its answer (the AD bit, RFC 4035 3.2.3) for the signed root.
/// DANE without it would find no TLSA record and protect nothing.
pub fn local_validation() -> std::result::Result<Vec<IpAddr>, String> {
    let servers = local_servers()?;
    for &server in &servers {
        validated_root(server).map_err(|e| format!("the resolver at {server}: {e}"))?;
    }
    Ok(servers)
}

/// The DNS servers /etc/resolv.conf names, when every one is on this host.
pub fn local_servers() -> std::result::Result<Vec<IpAddr>, String> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
    let servers: Vec<IpAddr> = config.name_servers().iter().map(|s| s.ip).collect();
    if servers.is_empty() {
        return Err("/etc/resolv.conf names no DNS server".into());
    }
    let remote: Vec<String> = servers
        .iter()
        .filter(|ip| !ip.is_loopback())
        .map(ToString::to_string)
        .collect();
    if !remote.is_empty() {
        return Err(format!(
            "/etc/resolv.conf names {}, not a resolver on this host",
            remote.join(", ")
        ));
    }
    Ok(servers)
}

/// Asks `server` for the root's SOA and returns whether the answer came back
/// authenticated.
fn validated_root(server: IpAddr) -> std::result::Result<(), String> {
    let answer = secure_query(server, ".", RecordType::SOA)?;
    if answer.code != ResponseCode::NoError {
        return Err(format!("it answered {} for the root's SOA", answer.code));
    }
    if !answer.authentic {
        return Err("it does not validate DNSSEC (no AD bit on the signed root's answer)".into());
    }
    Ok(())
}

pub use hickory_resolver::proto::op::ResponseCode;

/// An answer from a validating resolver: its code, whether the resolver
/// validated it (the AD bit), and the records of the asked name and type.
#[derive(Clone, Debug)]
pub struct SecureAnswer {
    pub code: ResponseCode,
    pub authentic: bool,
    pub records: Vec<RData>,
}

/// One query with DNSSEC OK to `server` port 53, over TCP (no truncation to
/// retry), with hickory's client. Only the resolver on this host is asked
/// (`local_validation`): its AD bit is trusted because the path is.
pub fn secure_query(
    server: IpAddr,
    name: &str,
    rtype: RecordType,
) -> std::result::Result<SecureAnswer, String> {
    use futures_util::StreamExt;
    use hickory_net::client::Client;
    use hickory_net::proto::op::{DnsRequest, DnsRequestOptions, Message, Query};
    use hickory_net::runtime::TokioRuntimeProvider as Provider;
    use hickory_net::tcp::TcpClientStream;
    use hickory_net::xfer::{DnsHandle, DnsMultiplexer};
    const TIMEOUT: Duration = Duration::from_secs(3);
    // Fully qualified, as the answer's names are.
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let qname = Name::from_ascii(&fqdn).map_err(|e| format!("{name}: {e}"))?;
    let mut query = Message::query();
    query.add_query(Query::query(qname.clone(), rtype));
    query.metadata.recursion_desired = true;
    query.metadata.authentic_data = true;
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the DNS runtime: {e}"))?;
    let answer = runtime.block_on(async {
        let (stream, handle) = TcpClientStream::new(
            std::net::SocketAddr::new(server, 53),
            None,
            Some(TIMEOUT),
            Provider::default(),
        );
        let stream = tokio::time::timeout(TIMEOUT, stream)
            .await
            .map_err(|_| "no connection: is a validating resolver (unbound) running there?")?
            .map_err(|e| format!("cannot ask it ({e}): is a validating resolver running there?"))?;
        let multiplexer = DnsMultiplexer::new(stream, handle).with_timeout(TIMEOUT);
        let (client, background) = Client::<Provider>::from_sender(multiplexer);
        tokio::spawn(background);
        match client.send(DnsRequest::new(query, options)).next().await {
            Some(Ok(response)) => Ok(response),
            Some(Err(e)) => Err(format!("no answer: {e}")),
            None => Err("it closed the connection".to_string()),
        }
    })?;
    Ok(SecureAnswer {
        code: answer.metadata.response_code,
        authentic: answer.metadata.authentic_data,
        records: answer
            .answers
            .iter()
            .filter(|r| r.name == qname && r.record_type() == rtype)
            .map(|r| r.data.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_names_for_ptr_and_blocklists() {
        assert_eq!(
            ptr_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            ptr_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
