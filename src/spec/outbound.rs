//! `outbound`: how mail leaves when Postfix delivers it to the receivers
//! itself — the TLS policy, limits per group of receivers, and what the
//! `Received:` header says of the clients that submitted it.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load::unique_map;
use super::names::{DomainName, TransportName};

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// TLS to the receivers: `opportunistic` (default: TLS when offered,
    /// unauthenticated; an attacker on the path can strip it), `dane`
    /// (RFC 7672: a receiver that publishes TLSA records in a DNSSEC-signed
    /// zone gets TLS with a certificate those records match, or the mail
    /// waits; others opportunistic) or `dane-and-mta-sts` (DANE where
    /// published, else the receiver's MTA-STS policy, RFC 8461, through
    /// postfix-mta-sts-resolver; else opportunistic). DANE installs unbound,
    /// a local validating resolver, which /etc/resolv.conf must name.
    #[serde(default)]
    pub tls: OutboundTls,
    /// Groups of receivers delivered to more slowly, by name: each gets a
    /// Postfix transport of its own with these limits. New IPs are throttled
    /// by the large receivers; see the README for a starting set.
    #[serde(default, deserialize_with = "unique_map")]
    pub limits: IndexMap<TransportName, Limit>,
    /// Mail submitted over SMTP leaves without the client's name and address
    /// in this host's `Received:` header (the header stays, as
    /// `Received: by HOSTNAME (Postfix) with ESMTP id …`, like local mail's).
    #[serde(default)]
    pub redact_received: bool,
}

impl Outbound {
    /// Every (domain, group) the limits name, in order.
    pub fn limited_domains(&self) -> impl Iterator<Item = (&DomainName, &TransportName)> {
        self.limits
            .iter()
            .flat_map(|(name, limit)| limit.domains.iter().map(move |d| (d, name)))
    }

    /// Every (MX name, group) the limits name, in order.
    pub fn limited_mx(&self) -> impl Iterator<Item = (&DomainName, &TransportName)> {
        self.limits
            .iter()
            .flat_map(|(name, limit)| limit.mx.iter().map(move |d| (d, name)))
    }

    /// Whether Postfix needs `mailsetup socketmap` (DANE before MTA-STS, or
    /// groups found by MX).
    pub fn needs_socketmap(&self) -> bool {
        self.tls.mta_sts() || self.limits.values().any(|l| !l.mx.is_empty())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutboundTls {
    #[default]
    Opportunistic,
    Dane,
    DaneAndMtaSts,
}

impl OutboundTls {
    pub fn dane(self) -> bool {
        self != OutboundTls::Opportunistic
    }

    pub fn mta_sts(self) -> bool {
        self == OutboundTls::DaneAndMtaSts
    }
}

/// Limits for one group of receivers.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The recipient domains of this group (exactly these: `outlook.com`
    /// does not cover `eu.outlook.com`).
    #[serde(default)]
    pub domains: Vec<DomainName>,
    /// MX host names: any other recipient domain whose MX host is one of
    /// these or under one (`mail.protection.outlook.com`: every Microsoft 365
    /// tenant) is in this group too. Postfix asks `mailsetup socketmap`
    /// (run by its spawn service), which looks the MX up.
    #[serde(default)]
    pub mx: Vec<DomainName>,
    /// Connections at once to one domain of the group (Postfix
    /// `_destination_concurrency_limit`; default 20).
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
    /// Seconds between two deliveries to one domain of the group (Postfix
    /// `_destination_rate_delay`); deliveries are then one at a time.
    #[serde(default)]
    pub rate_delay_seconds: Option<RateDelay>,
}

super::names::bounded!(
    /// 1 to 100 connections.
    Concurrency(u16, "u16"), 1..=100, |v| format!("{v} connections: choose 1 to 100")
);

super::names::bounded!(
    /// 1 to 3600 seconds.
    RateDelay(u16, "u16"), 1..=3600, |v| format!("{v} seconds: choose 1 to 3600")
);

super::names::bounded!(
    /// A message size in bytes, from Postfix's header size limit (102400) to 1 GiB.
    MessageSize(u64, "u64"), 102400..=1073741824, |v| format!(
        "{v} bytes: choose 102400 (Postfix's header size limit) to 1073741824 (1 GiB)"
    )
);

/// What is wrong with `outbound` beyond each field's own syntax: the field's
/// path and the message.
pub fn problem(spec: &super::Spec) -> Option<(String, String)> {
    let outbound = &spec.outbound;
    if spec.host.relay.is_some() {
        if outbound.tls != OutboundTls::Opportunistic {
            return Some((
                "outbound.tls".into(),
                "every message leaves through host.relay, which has a TLS setting of its own \
                 (host.relay.tls); outbound.tls is for direct delivery: remove it"
                    .into(),
            ));
        }
        if !outbound.limits.is_empty() {
            return Some((
                "outbound.limits".into(),
                "every message leaves through host.relay, which paces delivery to the \
                 receivers itself; outbound.limits is for direct delivery: remove it"
                    .into(),
            ));
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (name, limit) in &outbound.limits {
        if limit.domains.is_empty() && limit.mx.is_empty() {
            return Some((
                format!("outbound.limits.{name}"),
                "name its recipient domains (domains), MX hosts (mx), or both".into(),
            ));
        }
        if limit.concurrency.is_none() && limit.rate_delay_seconds.is_none() {
            return Some((
                format!("outbound.limits.{name}"),
                "set concurrency, rate_delay_seconds or both".into(),
            ));
        }
        for (field, names) in [("domains", &limit.domains), ("mx", &limit.mx)] {
            for domain in names {
                if let Some(other) = seen.insert((field, domain), name) {
                    return Some((
                        format!("outbound.limits.{name}.{field}"),
                        format!("{domain} is in {other} already: a name belongs to one group"),
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert!(Concurrency::try_from(0).is_err());
        assert_eq!(Concurrency::try_from(2).unwrap().get(), 2);
        assert!(Concurrency::try_from(101).is_err());
        assert!(RateDelay::try_from(0).is_err());
        assert!(RateDelay::try_from(3601).is_err());
        assert!(MessageSize::try_from(1000).is_err());
        assert_eq!(MessageSize::try_from(26_214_400).unwrap().get(), 26_214_400);
    }
}
