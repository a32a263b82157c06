//! The spec: what the operator declares in `mailsetup.yaml`.
//!
//! Parsing is strict: unknown fields are errors with a did-you-mean hint, and
//! every value is checked for the syntax of the place it goes (see `names`), so
//! nothing later in the pipeline has to distrust a string from the spec.

mod explain;
mod load;
pub mod names;
mod ops;
mod outbound;

use std::fmt;
use std::net::IpAddr;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{SpecError, Warning, load, parse, read_text};
pub use names::{
    AbsPath, AliasName, DomainName, FleetName, HostOrAddress, Label, MailAddress, MailTarget,
    Network, PlainText, SelectorPattern, TransportName, UserName,
};

pub use ops::{Check, Days, DnsPush, QUEUE_LIFETIME_DAYS, ResolverAddr, Rotation, Ttl, ZonePush};
pub use outbound::{Limit, MessageSize, Outbound, OutboundTls};

use load::{OneOrMany, non_empty_map, unique_map};

/// The whole spec file.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "mailsetup spec",
    description = "A send-only, DKIM-signing mail server.",
    // A fleet names a hostname per host; a single host names its own.
    extend(
        "if" = { "required": ["hosts"], "properties": { "hosts": { "minProperties": 1 } } },
        "then" = { "properties": { "host": { "not": { "required": ["hostname"] } } } },
        "else" = { "required": ["host"], "properties": { "host": { "required": ["hostname"] } } }
    )
)]
pub struct Spec {
    /// This host; in a fleet, the settings every host shares.
    #[serde(default)]
    pub host: Host,
    /// A fleet: several hosts sending for the same domains, each with its own
    /// hostname and DKIM selector. Commands then take `--host NAME`.
    #[serde(default, deserialize_with = "unique_map")]
    pub hosts: IndexMap<FleetName, FleetHost>,
    /// The domains mail is sent from. Each may override the `spf` and `dmarc` defaults.
    #[serde(deserialize_with = "non_empty_map")]
    pub domains: IndexMap<DomainName, Option<DomainSettings>>,
    /// SPF policy for every domain that does not set its own.
    #[serde(default)]
    pub spf: Spf,
    /// DMARC policy for every domain that does not set its own.
    #[serde(default)]
    pub dmarc: Dmarc,
    #[serde(default)]
    pub dkim: Dkim,
    pub aliases: Aliases,
    #[serde(default)]
    pub apticron: Apticron,
    /// What `mailsetup check` looks at: this host's addresses, blocklists, the resolver.
    #[serde(default)]
    pub check: Check,
    /// Where `mailsetup dns --push` publishes the records (RFC 2136 with TSIG).
    #[serde(default)]
    pub dns: DnsPush,
    /// How mail leaves when it is delivered straight to the receivers (no
    /// `host.relay`): TLS policy, per-receiver limits, client privacy.
    #[serde(default)]
    pub outbound: Outbound,
}

/// The spec as one host sees it (`Spec::for_host`): its hostname is known,
/// and for a fleet host its own selector is the spec's.
#[derive(Clone, Debug)]
pub struct HostSpec {
    spec: Spec,
    hostname: DomainName,
}

impl HostSpec {
    fn new(spec: Spec) -> anyhow::Result<HostSpec> {
        let hostname = spec
            .host
            .hostname
            .clone()
            .ok_or_else(|| anyhow::anyhow!("host.hostname: required"))?;
        Ok(HostSpec { spec, hostname })
    }

    /// This host's name.
    pub fn hostname(&self) -> &DomainName {
        &self.hostname
    }

    /// `/etc/mailname`: the domain of system mail.
    pub fn mailname(&self) -> &DomainName {
        self.spec.host.mailname.as_ref().unwrap_or(&self.hostname)
    }

    /// How this host's system mail (root@mailname, cron, apticron, and the
    /// bounces it sends as MAILER-DAEMON@mailname) is authenticated.
    pub fn system_mail(&self) -> SystemMail<'_> {
        self.spec.system_mail_of(self.mailname())
    }

    /// The same, with packages left to the operator (`--no-install-packages`).
    pub fn without_package_install(mut self) -> HostSpec {
        self.spec.host.install_packages = false;
        self
    }
}

impl std::ops::Deref for HostSpec {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        &self.spec
    }
}

/// One host of a fleet.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetHost {
    /// Its fully qualified name.
    pub hostname: DomainName,
    /// Its DKIM selector. Default: `NAME-{date}` (e.g. mta01-20261124).
    #[serde(default)]
    pub selector: Option<SelectorPattern>,
}

/// The mail host itself.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Fully qualified host name (Postfix `myhostname`, the HELO name). Required
    /// unless the spec lists a fleet under `hosts`.
    #[serde(default)]
    pub hostname: Option<DomainName>,
    /// Domain of system mail (`/etc/mailname`, Postfix `myorigin`): root's mail comes
    /// from root@mailname. Default: the hostname.
    #[serde(default)]
    pub mailname: Option<DomainName>,
    /// Where smtpd listens: `loopback-only` (default), `all`, or a list of addresses.
    #[serde(default)]
    pub interfaces: Interfaces,
    /// Clients allowed to send through this host (Postfix `mynetworks`). Default: loopback.
    #[serde(default = "default_networks")]
    pub networks: Vec<Network>,
    /// IP protocols Postfix uses: `ipv4` (default), `all` or `ipv6`. Mail
    /// leaves over IPv6 only when this says so: choose `all` once every IPv6
    /// address the host sends from has forward-confirmed reverse DNS, which
    /// Gmail demands of mail over IPv6 (550-5.7.25) and `mailsetup check` checks.
    #[serde(default)]
    pub protocols: Protocols,
    /// Send all mail through this smart host instead of delivering directly.
    #[serde(default)]
    pub relay: Option<Relay>,
    /// Postfix writes its log to this file (`maillog_file`) instead of syslog.
    #[serde(default)]
    pub maillog_file: Option<AbsPath>,
    /// The largest message, in bytes, that clients may submit (Postfix
    /// `message_size_limit`; Postfix's default, 10240000, when not set).
    #[serde(default)]
    pub message_size_limit: Option<MessageSize>,
    /// Install the Debian packages the spec needs (postfix, opendkim,
    /// opendkim-tools, apticron; libsasl2-modules with relay auth) when they are
    /// missing. `false` for hosts whose packages are managed elsewhere.
    #[serde(default = "yes")]
    pub install_packages: bool,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            hostname: None,
            mailname: None,
            interfaces: Interfaces::default(),
            networks: default_networks(),
            protocols: Protocols::default(),
            relay: None,
            maillog_file: None,
            message_size_limit: None,
            install_packages: true,
        }
    }
}

fn default_networks() -> Vec<Network> {
    ["127.0.0.0/8", "::ffff:127.0.0.0/104", "::1/128"]
        .into_iter()
        .map(|n| Network::try_from(n.to_string()).expect("valid constant"))
        .collect()
}

/// smtpd's listening addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Interfaces {
    #[default]
    LoopbackOnly,
    All,
    #[serde(untagged)]
    Addresses(Vec<IpAddr>),
}

impl<'de> Deserialize<'de> for Interfaces {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = OneOrMany::<String>::deserialize(d)?.0;
        match items.as_slice() {
            [one] if one == "loopback-only" => return Ok(Interfaces::LoopbackOnly),
            [one] if one == "all" => return Ok(Interfaces::All),
            [] => return Err(serde::de::Error::custom("the list of interfaces is empty")),
            _ => {}
        }
        items
            .iter()
            .map(|i| {
                i.parse::<IpAddr>().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{}` is not an IP address; use `loopback-only`, `all` or a list of addresses",
                        i.escape_debug()
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map(Interfaces::Addresses)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocols {
    All,
    #[default]
    Ipv4,
    Ipv6,
}

/// A smart host that relays all outgoing mail.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub host: HostOrAddress,
    /// Default 587 (submission).
    #[serde(default = "default_relay_port")]
    pub port: u16,
    /// Look up MX records of `host` (default false: connect to the host itself).
    #[serde(default)]
    pub mx_lookup: bool,
    /// TLS to the relay: `encrypt` (default: mandatory), `may` (opportunistic) or `none`.
    #[serde(default)]
    pub tls: RelayTls,
    /// SASL login; the password is read from `password_file` on the host.
    #[serde(default)]
    pub auth: Option<RelayAuth>,
}

fn default_relay_port() -> u16 {
    587
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    None,
    May,
    #[default]
    Encrypt,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayAuth {
    pub username: UserName,
    /// File on the host holding the password on its first line (keep it 0600).
    pub password_file: AbsPath,
}

/// Per-domain settings; each replaces the top-level default as a whole.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainSettings {
    #[serde(default)]
    pub spf: Option<Spf>,
    #[serde(default)]
    pub dmarc: Option<Dmarc>,
    /// Subdomains that send mail (`[app, news]` for app.DOMAIN and news.DOMAIN).
    /// Each is signed as itself (d=app.DOMAIN, with this domain's key), so it
    /// aligns under strict DMARC, and gets its own SPF and DKIM records; the
    /// domain's DMARC policy covers it.
    #[serde(default)]
    pub subdomains: Vec<Label>,
}

/// The SPF record: `v=spf1 [a] [mx] [a:HOST…] [ip4:/ip6:…] [include:…] -all`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spf {
    /// The domain's own A/AAAA addresses may send (default true, as in the guide).
    #[serde(default = "yes")]
    pub a: bool,
    /// The domain's MX hosts may send.
    #[serde(default)]
    pub mx: bool,
    /// Other hosts whose addresses may send (`a:HOST`), e.g. this server's hostname.
    #[serde(default)]
    pub hosts: Vec<DomainName>,
    /// Networks that may send (`ip4:`/`ip6:`).
    #[serde(default)]
    pub ip: Vec<Network>,
    /// Include another domain's SPF policy (e.g. a smart-host provider).
    #[serde(default)]
    pub include: Vec<DomainName>,
    /// What happens to mail from anywhere else: `fail` (`-all`, default), `softfail` (`~all`)
    /// or `neutral` (`?all`).
    #[serde(default)]
    pub all: SpfAll,
}

fn yes() -> bool {
    true
}

impl Default for Spf {
    fn default() -> Self {
        Spf {
            a: true,
            mx: false,
            hosts: Vec::new(),
            ip: Vec::new(),
            include: Vec::new(),
            all: SpfAll::Fail,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpfAll {
    #[default]
    Fail,
    Softfail,
    Neutral,
}

/// The DMARC record published at `_dmarc.DOMAIN`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dmarc {
    /// Policy: `none` (default: monitor only, right while testing), `quarantine` or `reject`.
    #[serde(default)]
    pub p: DmarcPolicy,
    /// Policy for subdomains (default: same as `p`).
    #[serde(default)]
    pub sp: Option<DmarcPolicy>,
    /// DKIM alignment: `r` relaxed (DMARC's default) or `s` strict.
    #[serde(default)]
    pub adkim: Option<Alignment>,
    /// SPF alignment: `r` relaxed (DMARC's default) or `s` strict.
    #[serde(default)]
    pub aspf: Option<Alignment>,
    /// Addresses for aggregate reports.
    #[serde(default)]
    pub rua: Vec<MailAddress>,
    /// Addresses for failure reports.
    #[serde(default)]
    pub ruf: Vec<MailAddress>,
    /// Percentage of mail the policy applies to (default 100).
    #[serde(default)]
    pub pct: Option<Percent>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    #[default]
    None,
    Quarantine,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Alignment {
    #[serde(rename = "r")]
    Relaxed,
    #[serde(rename = "s")]
    Strict,
}

names::bounded!(
    /// 0 to 100.
    Percent(u8, "u8"), 0..=100, |v| format!("{v} is not a percentage (0 to 100)")
);

/// DKIM signing with OpenDKIM.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// `shared` (default): one key signs for every domain, as in the guide;
    /// `per-domain`: each domain has its own key.
    #[serde(default)]
    pub key: KeyMode,
    /// The selector. `{date}` becomes the key's creation day (YYYYMMDD, UTC), so a new
    /// key gets a new selector. Default `{date}`.
    #[serde(default = "default_selector")]
    pub selector: SelectorPattern,
    /// RSA key size: 2048 by default; below 1024 is refused (RFC 8301); above 2048
    /// many receivers and DNS providers cannot handle the record.
    #[serde(default)]
    pub bits: KeyBits,
    /// Signature algorithms, one signature each: `[rsa]` (default). `ed25519`
    /// (RFC 8463) is refused: Debian's OpenDKIM 2.11.0~beta2 signs with one
    /// algorithm per process, so it cannot add an Ed25519 signature beside the
    /// RSA one that most receivers still need.
    #[serde(default = "default_algorithms", deserialize_with = "algorithm_list")]
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    pub algorithms: Vec<Algorithm>,
    /// Sign mail from subdomains (x@app.example.com) with the parent domain's key
    /// (d=example.com). Default true.
    #[serde(default = "yes")]
    pub subdomains: bool,
    /// Headers signed once more as absent, so nobody can add a second one. Default [From].
    #[serde(default = "default_oversign")]
    pub oversign_headers: Vec<HeaderName>,
    /// Hosts whose mail is signed (OpenDKIM InternalHosts). Default: loopback
    /// and localhost. The networks of `host.networks` are added to these:
    /// every client Postfix lets send gets its mail signed.
    #[serde(default = "default_trusted_hosts")]
    pub trusted_hosts: Vec<TrustedHost>,
    /// Key rotation with `mailsetup rotate`: interval and grace period.
    #[serde(default)]
    pub rotation: Rotation,
}

impl Default for Dkim {
    fn default() -> Self {
        Dkim {
            key: KeyMode::default(),
            selector: default_selector(),
            bits: KeyBits::default(),
            algorithms: default_algorithms(),
            subdomains: true,
            oversign_headers: default_oversign(),
            trusted_hosts: default_trusted_hosts(),
            rotation: Rotation::default(),
        }
    }
}

fn default_selector() -> SelectorPattern {
    names::DATE_PLACEHOLDER.parse().expect("valid constant")
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::Rsa]
}

/// At least one algorithm, each once.
fn algorithm_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
    let list = Vec::<Algorithm>::deserialize(d)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "is empty: sign with at least `rsa`",
        ));
    }
    if let Some(twice) = list
        .iter()
        .enumerate()
        .find(|(i, a)| list[..*i].contains(a))
    {
        return Err(serde::de::Error::custom(format!(
            "lists `{}` twice",
            String::from(*twice.1)
        )));
    }
    Ok(list)
}

/// A DKIM signature algorithm the packaged OpenDKIM can sign with here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("enum" = ["rsa"]))]
pub enum Algorithm {
    /// rsa-sha256 (RFC 6376, RFC 8301).
    Rsa,
}

/// Why `ed25519` is refused, with the evidence, so the operator need not look it up.
pub const ED25519_REFUSED: &str = "ed25519 is not available: Debian's OpenDKIM \
(2.11.0~beta2) takes one SignatureAlgorithm per process, so one milter cannot sign \
with Ed25519 beside RSA (the per-key algorithm is upstream's KeyTable 4th field, \
OpenDKIM PR #269, not in any Debian release); Ed25519 alone would fail at every \
receiver that does not verify it. Use [rsa]";

impl TryFrom<String> for Algorithm {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        match v.as_str() {
            "rsa" => Ok(Algorithm::Rsa),
            "ed25519" => Err(ED25519_REFUSED.to_string()),
            other => Err(format!("unknown algorithm `{other}`: expected `rsa`")),
        }
    }
}

impl From<Algorithm> for String {
    fn from(a: Algorithm) -> String {
        match a {
            Algorithm::Rsa => "rsa".into(),
        }
    }
}

fn default_oversign() -> Vec<HeaderName> {
    vec![HeaderName("From".into())]
}

fn default_trusted_hosts() -> Vec<TrustedHost> {
    ["127.0.0.1", "::1", "localhost"]
        .into_iter()
        .map(|h| TrustedHost::try_from(h.to_string()).expect("valid constant"))
        .collect()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    #[default]
    Shared,
    PerDomain,
}

/// RSA key size in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u64", into = "u64")]
// try_from hides the field from schemars: the bounds are said here.
#[schemars(extend("minimum" = 1024, "maximum" = 8192, "multipleOf" = 8))]
pub struct KeyBits(usize);

impl KeyBits {
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for KeyBits {
    fn default() -> Self {
        KeyBits(2048)
    }
}

impl TryFrom<u64> for KeyBits {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        let bits = usize::try_from(v).map_err(|_| format!("{v} bits is not a key size"))?;
        crate::keys::check_bits(bits).map_err(|e| e.to_string())?;
        Ok(KeyBits(bits))
    }
}

impl From<KeyBits> for u64 {
    fn from(b: KeyBits) -> u64 {
        b.0 as u64
    }
}

/// A mail header field name such as `From`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderName(#[schemars(regex(pattern = r"^[A-Za-z0-9-]+$"))] String);

impl TryFrom<String> for HeaderName {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            Ok(HeaderName(v))
        } else {
            Err(format!(
                "`{}` is not a header name (letters, digits and `-`)",
                v.escape_debug()
            ))
        }
    }
}

impl From<HeaderName> for String {
    fn from(h: HeaderName) -> String {
        h.0
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network, address or host name whose mail OpenDKIM signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedHost(String);

/// What `TryFrom` takes: `localhost`, a network or address, or a host name.
impl JsonSchema for TrustedHost {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TrustedHost".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A network, address or host name whose mail OpenDKIM signs.",
            "anyOf": [
                { "const": "localhost" },
                generator.subschema_for::<names::Network>(),
                generator.subschema_for::<names::DomainName>(),
            ],
        })
    }
}

impl TryFrom<String> for TrustedHost {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        if v == "localhost" {
            return Ok(TrustedHost(v));
        }
        if let Ok(net) = Network::try_from(v.clone()) {
            // OpenDKIM wants a bare address for a single host.
            let single = (net.addr.is_ipv4() && net.prefix == 32) || net.prefix == 128;
            return Ok(TrustedHost(if single {
                net.addr.to_string()
            } else {
                net.to_string()
            }));
        }
        names::DomainName::try_from(v)
            .map(|d| TrustedHost(d.to_string()))
            .map_err(|e| format!("{e} (expected a network, an address, a host name or localhost)"))
    }
}

impl From<TrustedHost> for String {
    fn from(h: TrustedHost) -> String {
        h.0
    }
}

impl fmt::Display for TrustedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `/etc/aliases`: who gets mail sent to local names. `root` is required: system
/// mail must reach a person. `postmaster` defaults to root.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(extend("required" = ["root"]))]
pub struct Aliases(
    #[schemars(with = "IndexMap<AliasName, OneOrMany<MailTarget>>")]
    IndexMap<AliasName, Vec<MailTarget>>,
);

impl Aliases {
    pub fn iter(&self) -> impl Iterator<Item = (&AliasName, &[MailTarget])> {
        self.0.iter().map(|(k, v)| (k, v.as_slice()))
    }

    pub fn get(&self, name: &str) -> Option<&[MailTarget]> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.as_slice())
    }
}

impl<'de> Deserialize<'de> for Aliases {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw: IndexMap<AliasName, OneOrMany<MailTarget>> = unique_map(d)?;
        let mut map: IndexMap<AliasName, Vec<MailTarget>> =
            raw.into_iter().map(|(k, v)| (k, v.0)).collect();
        if !map.keys().any(|k| k.as_str() == "root") {
            return Err(D::Error::custom(
                "`root` is missing: name the address that reads root's mail (root: you@example.net)",
            ));
        }
        for (name, targets) in &map {
            if targets.is_empty() {
                return Err(D::Error::custom(format!("alias `{name}` has no targets")));
            }
            if targets.iter().any(|t| t.as_str() == name.as_str()) {
                return Err(D::Error::custom(format!("alias `{name}` points to itself")));
            }
        }
        let postmaster: AliasName = "postmaster".parse().map_err(D::Error::custom)?;
        map.entry(postmaster)
            .or_insert_with(|| vec!["root".parse().expect("valid constant")]);
        Ok(Aliases(map))
    }
}

/// apticron mails a list of pending package updates.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Apticron {
    /// Who gets the notices (default root, i.e. wherever root's mail goes).
    #[serde(default = "default_apticron_email")]
    pub email: MailTarget,
    /// Subject when updates are pending.
    #[serde(default)]
    pub subject: Option<PlainText>,
    /// Subject when there are none.
    #[serde(default)]
    pub no_updates_subject: Option<PlainText>,
}

impl Default for Apticron {
    fn default() -> Self {
        Apticron {
            email: default_apticron_email(),
            subject: None,
            no_updates_subject: None,
        }
    }
}

fn default_apticron_email() -> MailTarget {
    "root".parse().expect("valid constant")
}

/// How a host's system mail is signed and which SPF record covers it.
#[derive(Clone, Debug)]
pub enum SystemMail<'a> {
    /// The mailname is a listed domain or sending subdomain: signed as that.
    Listed,
    /// Under a listed domain: signed as itself with that domain's key, with
    /// SPF and DKIM records of its own (as a listed subdomain).
    Under(Domain<'a>),
    /// Under no listed domain: not signed; its SPF is the operator's.
    Outside,
}

/// One sending domain with the defaults applied.
#[derive(Clone, Debug)]
pub struct Domain<'a> {
    pub name: &'a DomainName,
    pub spf: &'a Spf,
    pub dmarc: &'a Dmarc,
    /// The sending subdomains listed for it, as full names.
    pub subdomains: Vec<DomainName>,
}

impl Spec {
    /// How system mail from `mailname` is authenticated (see `HostSpec::system_mail`).
    pub fn system_mail_of(&self, mailname: &DomainName) -> SystemMail<'_> {
        let listed = self
            .domains()
            .any(|d| d.name == mailname || d.subdomains.iter().any(|s| s == mailname));
        if listed {
            return SystemMail::Listed;
        }
        // The closest listed domain it is under.
        self.domains()
            .filter(|d| mailname.as_str().ends_with(&format!(".{}", d.name)))
            .max_by_key(|d| d.name.as_str().len())
            .map_or(SystemMail::Outside, SystemMail::Under)
    }

    /// The sending domains in the spec's order, each with its effective policies.
    pub fn domains(&self) -> impl Iterator<Item = Domain<'_>> {
        self.domains.iter().map(|(name, settings)| {
            let settings = settings.as_ref();
            Domain {
                name,
                spf: settings.and_then(|s| s.spf.as_ref()).unwrap_or(&self.spf),
                dmarc: settings
                    .and_then(|s| s.dmarc.as_ref())
                    .unwrap_or(&self.dmarc),
                subdomains: settings
                    .map(|s| s.subdomains.as_slice())
                    .unwrap_or_default()
                    .iter()
                    // Too long a name is refused when the spec is read.
                    .filter_map(|label| format!("{label}.{name}").parse().ok())
                    .collect(),
            }
        })
    }

    /// The spec as seen by one host: for a fleet, `name`'s hostname and selector.
    pub fn for_host(&self, name: Option<&str>) -> anyhow::Result<HostSpec> {
        let names = || {
            self.hosts
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            None if self.hosts.is_empty() => HostSpec::new(self.clone()),
            None => anyhow::bail!(
                "the spec lists the hosts {}: pick one with --host NAME",
                names()
            ),
            Some(n) if self.hosts.is_empty() => {
                anyhow::bail!("--host {n}: the spec lists no hosts")
            }
            Some(n) => {
                let (fleet_name, host) = self
                    .hosts
                    .iter()
                    .find(|(k, _)| k.as_str() == n)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--host {n}: the spec lists only {}", names())
                    })?;
                let mut spec = self.clone();
                spec.host.hostname = Some(host.hostname.clone());
                spec.dkim.selector = match &host.selector {
                    Some(s) => s.clone(),
                    None => format!("{fleet_name}-{}", names::DATE_PLACEHOLDER)
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("hosts.{fleet_name}: {e}"))?,
                };
                HostSpec::new(spec)
            }
        }
    }

    /// Every hostname that sends for the domains: the fleet's, or this host's.
    pub fn sending_hosts(&self) -> Vec<&DomainName> {
        if self.hosts.is_empty() {
            self.host.hostname.iter().collect()
        } else {
            self.hosts.values().map(|h| &h.hostname).collect()
        }
    }
}
