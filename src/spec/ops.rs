//! Settings of the commands that run after apply: `rotate` (DKIM key rotation)
//! and `check` (what DNS and the host serve now).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use indexmap::IndexMap;

use super::names::{AbsPath, DomainName};

/// DKIM key rotation with `mailsetup rotate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Days from a key's activation until `rotate auto` stages the next one. Default 180
    /// (M3AAWG: rotate at least every six months).
    #[serde(default = "default_interval")]
    pub interval_days: Days,
    /// Days the old selector stays published after signing switched, so mail in flight
    /// still verifies; `rotate finish` revokes it after that. Default 7.
    #[serde(default = "default_grace")]
    pub grace_days: Days,
    /// Days a revoked selector's `p=` record stays published before it is withdrawn
    /// (`dns` stops listing it; `dns --push` and `rotate auto` delete it). Default 30.
    #[serde(default = "default_keep_revoked")]
    pub keep_revoked_days: Days,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            interval_days: default_interval(),
            grace_days: default_grace(),
            keep_revoked_days: default_keep_revoked(),
        }
    }
}

/// Postfix's `maximal_queue_lifetime` (and `bounce_queue_lifetime`) as
/// main.cf sets them, in days: the longest a signed message can wait to leave.
/// A retiring key stays published at least this long (`rotate finish` also
/// looks at the queue itself).
pub const QUEUE_LIFETIME_DAYS: u16 = 5;

fn default_interval() -> Days {
    Days(180)
}

fn default_grace() -> Days {
    Days(7)
}

fn default_keep_revoked() -> Days {
    Days(30)
}

super::names::bounded!(
    /// A number of days, 1 to 3650.
    Days(u16, "u16"), 1..=3650, |v| format!("{v} is not a number of days from 1 to 3650")
);

/// What `mailsetup check` looks at besides the records of the spec's domains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Public addresses this host sends from, checked against SPF, reverse DNS and the
    /// blocklists. Default: the hostname's A/AAAA records (none with a relay: mail then
    /// leaves from the relay's addresses).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// DNS blocklist zones each address is looked up in. Default [zen.spamhaus.org];
    /// `[]` turns the lookup off. Spamhaus refuses queries from large public resolvers.
    #[serde(default = "default_blocklists")]
    pub blocklists: Vec<DomainName>,
    /// The DNS server `check` and `rotate activate` ask: ADDR or ADDR:PORT (`[V6]:PORT`).
    /// Default: the servers in /etc/resolv.conf. `--resolver` overrides it.
    #[serde(default)]
    pub resolver: Option<ResolverAddr>,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            addresses: Vec::new(),
            blocklists: default_blocklists(),
            resolver: None,
        }
    }
}

fn default_blocklists() -> Vec<DomainName> {
    vec!["zen.spamhaus.org".parse().expect("valid constant")]
}

/// Publishing the records with RFC 2136 dynamic updates signed with TSIG
/// (`mailsetup dns --push`, and `rotate auto` when a server is set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsPush {
    /// The primary server of the zones, which takes the updates: ADDR or ADDR:PORT.
    /// `--server` overrides it.
    #[serde(default)]
    pub server: Option<ResolverAddr>,
    /// The TSIG key, a file in BIND's `key` syntax as `tsig-keygen` writes it
    /// (hmac-sha256, -sha384 or -sha512; mode 0600). `--tsig-key` overrides it.
    #[serde(default)]
    pub tsig_key: Option<AbsPath>,
    /// TTL of the records pushed, in seconds. Default 3600.
    #[serde(default)]
    pub ttl: Ttl,
    /// The zones to update, when they are not the domains themselves (a domain
    /// `mail.example.com` in zone `example.com`), each with its own server or
    /// key if it has one. Default: every domain is a zone of its own.
    #[serde(default, deserialize_with = "super::load::unique_map")]
    pub zones: IndexMap<DomainName, Option<ZonePush>>,
}

/// One zone's own primary and key, where they differ from `dns.server`/`dns.tsig_key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZonePush {
    #[serde(default)]
    pub server: Option<ResolverAddr>,
    #[serde(default)]
    pub tsig_key: Option<AbsPath>,
}

/// A record TTL in seconds, 60 to 86400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u64", into = "u32")]
#[schemars(extend("minimum" = 60, "maximum" = 86400))]
pub struct Ttl(u32);

impl Ttl {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl(3600)
    }
}

impl TryFrom<u64> for Ttl {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        u32::try_from(v)
            .ok()
            .filter(|t| (60..=86400).contains(t))
            .map(Ttl)
            .ok_or_else(|| format!("{v} is not a TTL from 60 to 86400 seconds"))
    }
}

impl From<Ttl> for u32 {
    fn from(t: Ttl) -> u32 {
        t.0
    }
}

/// A DNS server: `ADDR` (port 53) or `ADDR:PORT`, IPv6 as `[ADDR]:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ResolverAddr(#[schemars(with = "String")] SocketAddr);

impl ResolverAddr {
    pub fn socket_addr(self) -> SocketAddr {
        self.0
    }
}

impl std::str::FromStr for ResolverAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ResolverAddr(addr));
        }
        s.parse::<IpAddr>()
            .map(|ip| ResolverAddr(SocketAddr::new(ip, 53)))
            .map_err(|_| {
                format!(
                    "`{}` is not a DNS server address: use ADDR or ADDR:PORT ([ADDR]:PORT for IPv6)",
                    s.escape_debug()
                )
            })
    }
}

impl TryFrom<String> for ResolverAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ResolverAddr> for String {
    fn from(a: ResolverAddr) -> String {
        a.to_string()
    }
}

impl fmt::Display for ResolverAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses_take_an_optional_port() {
        let parse = |s: &str| s.parse::<ResolverAddr>().map(|a| a.to_string());
        assert_eq!(parse("192.0.2.53").unwrap(), "192.0.2.53:53");
        assert_eq!(parse("127.0.0.1:5353").unwrap(), "127.0.0.1:5353");
        assert_eq!(parse("::1").unwrap(), "[::1]:53");
        assert_eq!(parse("[::1]:5353").unwrap(), "[::1]:5353");
        assert!(parse("ns.example.com").unwrap_err().contains("ADDR:PORT"));
        assert!(parse("127.0.0.1:99999").is_err());
    }

    #[test]
    fn days_are_bounded() {
        assert_eq!(Days::try_from(7).unwrap().get(), 7);
        assert!(Days::try_from(0).is_err());
        assert!(Days::try_from(3651).is_err());
    }
}
