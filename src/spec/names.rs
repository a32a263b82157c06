//! Validated values: every string from the spec that reaches a config file or a
//! path goes through one of these types, so a newline, separator or `..` is
//! refused while parsing, with the field's path and line in the error.

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Defines a newtype over `String` that deserializes through a checking function
/// and serializes as the plain string.
macro_rules! checked_string {
    ($(#[doc = $doc:literal])* $name:ident, $check:path, $schema_pattern:expr) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                $check(&value).map(Self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(value: &str) -> Result<Self, String> {
                $check(value).map(Self)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $schema_pattern,
                    "description": concat!($($doc),*).trim(),
                })
            }
        }
    };
}

/// Defines a newtype over an unsigned integer that deserializes only within
/// `MIN..=MAX` (the schema says so too), with the message given otherwise.
macro_rules! bounded {
    ($(#[doc = $doc:literal])* $name:ident($int:ty, $int_name:literal), $min:literal ..= $max:literal,
     |$v:ident| $message:expr) => {
        $(#[doc = $doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        #[serde(try_from = "u64", into = $int_name)]
        #[schemars(extend("minimum" = $min, "maximum" = $max))]
        pub struct $name($int);

        impl $name {
            pub fn get(self) -> $int {
                self.0
            }
        }

        impl TryFrom<u64> for $name {
            type Error = String;
            fn try_from($v: u64) -> Result<Self, String> {
                <$int>::try_from($v)
                    .ok()
                    .filter(|n| ($min..=$max).contains(n))
                    .map($name)
                    .ok_or_else(|| $message)
            }
        }

        impl From<$name> for $int {
            fn from(n: $name) -> $int {
                n.0
            }
        }
    };
}
pub(crate) use bounded;

checked_string!(
    /// A fully qualified domain name in ASCII (IDNs as xn-- A-labels), lower-cased.
    DomainName,
    check_domain,
    "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
);
checked_string!(
    /// A DKIM selector, optionally with `{date}` (replaced by YYYYMMDD when the key is made).
    SelectorPattern,
    check_selector_pattern,
    "^(?=.)(?!-)(?!.*-$)[a-z0-9-]*(\\{date\\}[a-z0-9-]*)?$"
);
checked_string!(
    /// A local alias name (the left side of /etc/aliases).
    AliasName,
    check_local_name,
    "^[A-Za-z0-9_][A-Za-z0-9._+-]*$"
);
checked_string!(
    /// A mail address (local@domain) or a local name such as `root`.
    MailTarget,
    check_mail_target,
    "^[A-Za-z0-9_][A-Za-z0-9._+-]*(@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)?$"
);
checked_string!(
    /// A mail address local@domain.
    MailAddress,
    check_mail_address,
    "^[A-Za-z0-9_][A-Za-z0-9._+-]*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
);
checked_string!(
    /// Free text placed in a shell-quoted value: printable, no quotes, `$`, backquote or backslash.
    PlainText,
    check_plain_text,
    "^(?=.*\\S)[^\"$`\\\\\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]{1,200}$"
);
checked_string!(
    /// An absolute path without `..`, whitespace or control characters.
    AbsPath,
    check_abs_path,
    "^/(?!(.*/)?\\.{1,2}(/|$))[^\\s,\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]*$"
);
checked_string!(
    /// The name of a fleet host (mta01): a DNS label, as it starts its selector.
    FleetName,
    check_selector,
    "^(?!-)(?!.*-$)[a-z0-9-]{1,63}$"
);
checked_string!(
    /// One DNS label naming a sending subdomain (`app` for app.example.com).
    Label,
    check_selector,
    "^(?!-)(?!.*-$)[a-z0-9-]{1,63}$"
);
checked_string!(
    /// A name for a group of receivers: the Postfix transport that delivers to
    /// them (master.cf) and the prefix of its limits (main.cf).
    TransportName,
    check_transport_name,
    // Not one of POSTFIX_SERVICES (a test keeps the two lists one).
    "^(?!(smtp|pickup|cleanup|qmgr|tlsmgr|rewrite|bounce|defer|trace|verify|flush|proxymap|proxywrite|relay|showq|error|retry|discard|local|virtual|lmtp|anvil|scache|postlog|default|smtpd|submission|smtps|uucp|maildrop|postscreen|dnsblog|tlsproxy)$)[a-z][a-z0-9]{0,19}$"
);
checked_string!(
    /// A host name or IP address (a relay host).
    HostOrAddress,
    check_host_or_address,
    "^[A-Za-z0-9.:-]+$"
);
checked_string!(
    /// A SASL user name: no whitespace, control characters or `:`.
    UserName,
    check_user_name,
    "^[^\\s:\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]+$"
);

/// A network in CIDR form (`127.0.0.0/8`, `::1/128`); a bare address means a single host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is in it (an IPv4 address is not in an IPv6 network).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => (u128::from(a.to_bits()) << 96, 32),
            IpAddr::V6(a) => (a.to_bits(), 128),
        };
        let ((net, len), (addr, addr_len)) = (bits(self.addr), bits(ip));
        let prefix = u32::from(self.prefix);
        len == addr_len && (prefix == 0 || (net ^ addr) >> (128 - prefix) == 0)
    }

    /// The form Postfix wants in mynetworks: IPv6 in brackets.
    pub fn postfix(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("{a}/{}", self.prefix),
            IpAddr::V6(a) => format!("[{a}]/{}", self.prefix),
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let (addr, prefix) = match value.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (value.as_str(), None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{value}` is not an IP network (like 127.0.0.0/8 or ::1/128)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{value}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl From<Network> for String {
    fn from(value: Network) -> String {
        value.to_string()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl JsonSchema for Network {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Network".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IP network in CIDR form (127.0.0.0/8, ::1/128) or a single address.",
            // IPv4 with a prefix of at most 32; IPv6 (loosely) with at most 128.
            "pattern": NETWORK_PATTERN,
        })
    }
}

/// What the schema accepts as a network; `Network::try_from` decides.
pub const NETWORK_PATTERN: &str = "^(((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(/(3[0-2]|[12]?[0-9]))?|\\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\\]?(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$";

/// No control character, nor an invisible one that reads as a line break or
/// reorders text (Unicode line/paragraph separators, bidi and zero-width marks).
fn ascii_printable(s: &str) -> Result<(), String> {
    let invisible = |c: char| {
        matches!(c, '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("contains a control character ({c:?})"));
    }
    if let Some(c) = s.chars().find(|&c| invisible(c)) {
        return Err(format!(
            "contains an invisible character ({c:?}) that reads as a line break or reorders text"
        ));
    }
    Ok(())
}

fn check_domain(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    let lower = s.to_ascii_lowercase();
    if lower.is_empty() {
        return Err("is empty; expected a domain name like example.com".into());
    }
    if !lower.is_ascii() {
        return Err(format!(
            "`{s}` is not ASCII; write internationalized names in their xn-- form"
        ));
    }
    if lower.ends_with('.') {
        return Err(format!("`{s}`: write the name without the trailing dot"));
    }
    if lower.len() > 253 {
        return Err(format!("`{s}` is longer than 253 characters"));
    }
    let labels: Vec<&str> = lower.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "`{s}` is not a fully qualified domain name (expected at least two labels, like example.com)"
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!("`{s}` has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "`{s}`: label `{label}` is longer than 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{s}` contains {c:?}; a domain name has only letters, digits, `-` and dots"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{s}`: label `{label}` starts or ends with `-`"));
        }
    }
    Ok(lower)
}

/// `{date}` in a selector pattern stands for the key's creation day.
pub const DATE_PLACEHOLDER: &str = "{date}";

/// The YYYYMMDD stamp `{date}` stands for in `selector`, when `pattern` (one
/// with `{date}`) made it: the one reading of dated selectors.
pub fn date_in<'a>(pattern: &str, selector: &'a str) -> Option<&'a str> {
    let (prefix, suffix) = pattern.split_once(DATE_PLACEHOLDER)?;
    let stamp = selector.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (stamp.len() == 8 && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(stamp)
}

fn check_selector_pattern(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    if s.matches(DATE_PLACEHOLDER).count() > 1 {
        return Err(format!("`{s}` uses {DATE_PLACEHOLDER} more than once"));
    }
    let plain = s.replace(DATE_PLACEHOLDER, "20000101");
    check_selector(&plain).map_err(|e| format!("`{s}`: {e}"))?;
    Ok(s.to_string())
}

/// A concrete selector: one DNS label in lower case (it names a file and a DNS record).
pub fn check_selector(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    if s.is_empty() || s.len() > 63 {
        return Err("a selector is 1 to 63 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "a selector has only lower-case letters, digits and `-`, not {c:?}"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("a selector does not start or end with `-`".into());
    }
    Ok(s.to_string())
}

/// master.cf's own services: a group may not take one's name.
const POSTFIX_SERVICES: &[&str] = &[
    "smtp",
    "pickup",
    "cleanup",
    "qmgr",
    "tlsmgr",
    "rewrite",
    "bounce",
    "defer",
    "trace",
    "verify",
    "flush",
    "proxymap",
    "proxywrite",
    "relay",
    "showq",
    "error",
    "retry",
    "discard",
    "local",
    "virtual",
    "lmtp",
    "anvil",
    "scache",
    "postlog",
    "default",
    "smtpd",
    "submission",
    "smtps",
    "uucp",
    "maildrop",
    "postscreen",
    "dnsblog",
    "tlsproxy",
];

fn check_transport_name(s: &str) -> Result<String, String> {
    let shape = s.len() <= 20
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !shape {
        return Err(format!(
            "`{}` is not a group name: a lower-case letter, then up to 19 letters or digits \
             (it names a Postfix transport)",
            s.escape_debug()
        ));
    }
    if POSTFIX_SERVICES.contains(&s) {
        return Err(format!(
            "`{s}` is one of Postfix's own services (master.cf); choose another name"
        ));
    }
    Ok(s.to_string())
}

fn check_local_name(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    if s.is_empty() || s.len() > 64 {
        return Err("a local name is 1 to 64 characters".into());
    }
    let first = s.chars().next().unwrap_or('.');
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!("`{s}` must start with a letter, digit or `_`"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(format!(
            "`{s}` contains {c:?}; local names have only letters, digits and . _ + -"
        ));
    }
    Ok(s.to_string())
}

fn check_mail_address(s: &str) -> Result<String, String> {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(format!(
            "`{s}` is not a mail address (expected local@domain)"
        ));
    };
    check_local_name(local).map_err(|e| format!("`{s}`: {e}"))?;
    let domain = check_domain(domain).map_err(|e| format!("`{s}`: {e}"))?;
    Ok(format!("{local}@{domain}"))
}

fn check_mail_target(s: &str) -> Result<String, String> {
    if s.contains('@') {
        check_mail_address(s)
    } else {
        check_local_name(s)
    }
}

fn check_plain_text(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    if s.trim().is_empty() {
        return Err("is empty; leave the field out for the default".into());
    }
    if let Some(c) = s.chars().find(|c| matches!(c, '"' | '$' | '`' | '\\')) {
        return Err(format!("contains {c:?}, which is not allowed in this text"));
    }
    if s.len() > 200 {
        return Err("is longer than 200 characters".into());
    }
    Ok(s.to_string())
}

fn check_abs_path(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    if !s.starts_with('/') {
        return Err(format!("`{s}` is not an absolute path"));
    }
    if s.chars().any(char::is_whitespace) || s.contains(',') {
        return Err(format!("`{s}` contains whitespace or a comma"));
    }
    if s.split('/').any(|part| part == ".." || part == ".") {
        return Err(format!("`{s}` contains `.` or `..`"));
    }
    Ok(s.to_string())
}

fn check_host_or_address(s: &str) -> Result<String, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    check_domain(s).map_err(|e| format!("{e} (expected a host name or an IP address)"))
}

fn check_user_name(s: &str) -> Result<String, String> {
    ascii_printable(s)?;
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c == ':') {
        return Err(format!("`{s}` contains whitespace or `:`"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_checked() {
        assert_eq!(check_domain("Example.COM").unwrap(), "example.com");
        for bad in [
            "example",
            "example.com.",
            "exa mple.com",
            "example.com\nmydestination = evil",
            "../etc.com",
            "a..com",
            "-a.com",
            "a,b.com",
            "a=b.com",
            "exämple.com",
            "a/b.com",
        ] {
            assert!(check_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = |s: &str| Network::try_from(s.to_string()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("192.0.2.0/24").contains(ip("192.0.2.200")));
        assert!(!net("192.0.2.0/24").contains(ip("192.0.3.1")));
        assert!(net("192.0.2.25").contains(ip("192.0.2.25")));
        assert!(!net("192.0.2.25").contains(ip("192.0.2.26")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(!net("::/0").contains(ip("192.0.2.1")));
    }

    #[test]
    fn selectors_are_single_lowercase_labels() {
        assert!(check_selector_pattern("{date}").is_ok());
        assert!(check_selector_pattern("mta01-{date}").is_ok());
        assert!(check_selector_pattern("mail").is_ok());
        for bad in [
            "",
            "a.b",
            "../x",
            "a b",
            "A1",
            "{date}{date}",
            "x\n",
            "-a",
            "{dat}",
        ] {
            assert!(check_selector_pattern(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mail_targets_reject_pipes_files_and_lists() {
        assert!(check_mail_target("root").is_ok());
        assert!(check_mail_target("ops+mail@Example.net").is_ok());
        for bad in [
            "|/bin/sh",
            "/tmp/file",
            ":include:/etc/x",
            "a, b",
            "a@b@c.com",
            "a@b",
            "\"a\"@b.com",
            "a\n@b.com",
        ] {
            assert!(check_mail_target(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn networks_parse_and_render_for_postfix() {
        let n = Network::try_from("::1/128".to_string()).unwrap();
        assert_eq!(n.postfix(), "[::1]/128");
        let n = Network::try_from("[::ffff:127.0.0.0]/104".to_string()).unwrap();
        assert_eq!(n.postfix(), "[::ffff:127.0.0.0]/104");
        let n = Network::try_from("10.1.2.3".to_string()).unwrap();
        assert_eq!(n.postfix(), "10.1.2.3/32");
        assert!(Network::try_from("10.0.0.0/33".to_string()).is_err());
        assert!(Network::try_from("10.0.0.0/8 0.0.0.0/0".to_string()).is_err());
    }

    #[test]
    fn plain_text_and_paths() {
        assert!(check_plain_text("System updates.").is_ok());
        assert!(check_plain_text("x\" ; rm -rf /").is_err());
        assert!(check_plain_text("$(id)").is_err());
        assert!(check_abs_path("/etc/mailsetup/pw").is_ok());
        assert!(check_abs_path("/etc/../shadow").is_err());
        assert!(check_abs_path("relative").is_err());
        assert!(check_user_name("user@example.com").is_ok());
        assert!(check_user_name("a b").is_err());
    }

    use proptest::prelude::*;

    /// Strings made of what breaks config files: separators, quotes, control
    /// characters, path parts, non-ASCII, next to ordinary name characters.
    fn hostile() -> impl Strategy<Value = String> {
        proptest::string::string_regex(
            "[a-zA-Z0-9.@:/_+=,#;|{}\\[\\]\"'$` \t\r\n\\\\\u{0}\u{7f}\u{85}\u{2028}ä-]{0,24}",
        )
        .unwrap()
    }

    /// Accepted values keep to `allowed` and read back as themselves.
    fn holds<T>(value: &str, allowed: impl Fn(char) -> bool)
    where
        T: std::str::FromStr + fmt::Display + PartialEq + fmt::Debug,
    {
        if let Ok(v) = value.parse::<T>() {
            let text = v.to_string();
            assert!(
                text.chars().all(|c| !c.is_control() && allowed(c)),
                "{value:?} accepted as {text:?}"
            );
            assert_eq!(
                text.parse::<T>().ok(),
                Some(v),
                "{value:?} does not read back"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn checked_strings_hold_no_separator(s in hostile()) {
            let name = |c: char| c.is_ascii_alphanumeric() || c == '-';
            holds::<DomainName>(&s, |c| name(c) || c == '.');
            holds::<SelectorPattern>(&s, |c| name(c) || c == '{' || c == '}');
            holds::<FleetName>(&s, name);
            holds::<Label>(&s, name);
            holds::<AliasName>(&s, |c| name(c) || "._+".contains(c));
            holds::<MailTarget>(&s, |c| name(c) || "._+@".contains(c));
            holds::<MailAddress>(&s, |c| name(c) || "._+@".contains(c));
            holds::<HostOrAddress>(&s, |c| name(c) || ".:".contains(c));
            holds::<UserName>(&s, |c| !c.is_whitespace() && c != ':');
            holds::<PlainText>(&s, |c| !"\"$`\\\u{2028}".contains(c));
            holds::<AbsPath>(&s, |c| !c.is_whitespace() && c != ',');
            if let Ok(p) = s.parse::<AbsPath>() {
                prop_assert!(p.as_str().starts_with('/'));
                prop_assert!(!p.as_str().split('/').any(|part| part == ".." || part == "."));
            }
            if let Ok(n) = Network::try_from(s.clone()) {
                prop_assert!(n.postfix().chars().all(|c| c.is_ascii_hexdigit() || "[].:/".contains(c)));
            }
            if let Ok(sel) = check_selector(&s) {
                prop_assert!(sel.chars().all(name));
            }
        }
    }

    #[test]
    fn the_schema_refuses_every_postfix_service_as_a_group_name() {
        let schema = schemars::schema_for!(TransportName);
        let pattern = schema.get("pattern").and_then(|p| p.as_str()).unwrap();
        let listed = pattern
            .strip_prefix("^(?!(")
            .and_then(|p| p.split_once(")$)"))
            .map(|(names, _)| names.split('|').collect::<Vec<_>>())
            .unwrap();
        assert_eq!(listed, POSTFIX_SERVICES);
        for service in POSTFIX_SERVICES {
            assert!(check_transport_name(service).is_err());
        }
        assert!(check_transport_name("microsoft").is_ok());
    }
}
