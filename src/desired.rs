//! The desired state: every file, directory, key and group membership the spec
//! asks for, with owners and modes. Pure: the few facts it needs from the host
//! (which keys exist, the relay password) are passed in.

use std::collections::BTreeMap;

use anyhow::Result;
use jiff::civil::Date;
use serde::Serialize;

use crate::spec::names::{DATE_PLACEHOLDER, check_selector};
use crate::spec::{
    DomainName, HostSpec, Interfaces, KeyMode, OutboundTls, Protocols, RelayTls, Spec,
};
use crate::templates::Templates;

/// Paths of the managed files, in one place.
pub mod paths {
    pub const MAIN_CF: &str = "/etc/postfix/main.cf";
    pub const SENDER_CANONICAL: &str = "/etc/postfix/sender_canonical";
    pub const HEADER_CHECKS: &str = "/etc/postfix/header_checks";
    /// Where the .deb installs mailsetup: Postfix's spawn runs `socketmap` from here.
    pub const MAILSETUP_BIN: &str = "/usr/bin/mailsetup";
    /// Where postfix-mta-sts-resolver answers (its Debian default).
    pub const MTA_STS_RESOLVER: &str = "127.0.0.1:8461";
    /// Where master.cf's spawn service runs `mailsetup socketmap`.
    pub const SOCKETMAP: &str = "127.0.0.1:8462";
    pub const MASTER_CF: &str = "/etc/postfix/master.cf";
    pub const SASL_PASSWD: &str = "/etc/postfix/sasl_passwd";
    pub const OPENDKIM_CONF: &str = "/etc/opendkim.conf";
    pub const OPENDKIM_DIR: &str = "/etc/opendkim";
    pub const KEYS_DIR: &str = "/etc/opendkim/keys";
    pub const KEY_TABLE: &str = "/etc/opendkim/KeyTable";
    pub const SIGNING_TABLE: &str = "/etc/opendkim/SigningTable";
    pub const TRUSTED_HOSTS: &str = "/etc/opendkim/TrustedHosts";
    pub const DEFAULT_OPENDKIM: &str = "/etc/default/opendkim";
    pub const MAILNAME: &str = "/etc/mailname";
    pub const ALIASES: &str = "/etc/aliases";
    pub const APTICRON_DIR: &str = "/etc/apticron";
    pub const APTICRON_CONF: &str = "/etc/apticron/apticron.conf";
    /// Postfix's queue directory, where smtpd and cleanup are chrooted.
    pub const POSTFIX_SPOOL: &str = "/var/spool/postfix";
    pub const OPENDKIM_RUN_DIR: &str = "/run/opendkim";
    pub const OPENDKIM_PID: &str = crate::host::OPENDKIM_PID;
}

/// The milter socket, inside Postfix's chroot. Both daemons' settings derive from
/// this one value, so they cannot disagree.
const MILTER_SOCKET_IN_SPOOL: &str = "opendkim/opendkim.sock";

/// The milter socket as seen from outside Postfix's chroot.
pub fn milter_socket() -> String {
    format!("{}/{MILTER_SOCKET_IN_SPOOL}", paths::POSTFIX_SPOOL)
}

/// The key set signing for everything when `dkim.key` is `shared`.
pub const SHARED_KEY: &str = "shared";

pub use crate::host::Service;

/// What must happen after a file changes so the change takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    Reload(Service),
    Restart(Service),
    /// Rebuild the aliases database (newaliases).
    Newaliases,
    /// Rebuild a lookup table's .db (postmap).
    Postmap,
}

/// One file mailsetup manages: where it lives, the template that renders it,
/// its owner and mode, and what must follow a change to it. This table is the
/// trust boundary: whatever channel produced a plan (spec, saved plan, bundle),
/// apply writes only these paths, with these owners and modes.
#[derive(Debug)]
pub struct ManagedFile {
    pub path: &'static str,
    pub template: &'static str,
    pub owner: Owner,
    pub mode: u32,
    /// Holds credentials: never shown, hashed or carried in a plan or bundle.
    pub secret: bool,
    pub effects: &'static [Effect],
    /// Whether the spec needs the file at all (main.cf names it only then).
    pub needed: fn(&Spec) -> bool,
}

fn always(_: &Spec) -> bool {
    true
}

const fn managed(
    path: &'static str,
    template: &'static str,
    owner: Owner,
    effects: &'static [Effect],
) -> ManagedFile {
    ManagedFile {
        path,
        template,
        owner,
        mode: 0o644,
        secret: false,
        effects,
        needed: always,
    }
}

/// Every file mailsetup renders. OpenDKIM re-reads its tables and keys on
/// reload (SIGUSR1), but its socket, user and pid file only at start.
pub const MANAGED_FILES: &[ManagedFile] = &[
    managed(
        paths::MAIN_CF,
        "main.cf.tera",
        ROOT,
        &[Effect::Reload(Service::Postfix)],
    ),
    managed(
        paths::MASTER_CF,
        "master.cf.tera",
        ROOT,
        &[Effect::Reload(Service::Postfix)],
    ),
    managed(
        paths::SENDER_CANONICAL,
        "sender_canonical.tera",
        ROOT,
        &[Effect::Reload(Service::Postfix)],
    ),
    ManagedFile {
        needed: |spec| spec.outbound.redact_received,
        ..managed(
            paths::HEADER_CHECKS,
            "header_checks.tera",
            ROOT,
            &[Effect::Reload(Service::Postfix)],
        )
    },
    managed(
        paths::OPENDKIM_CONF,
        "opendkim.conf.tera",
        ROOT,
        &[Effect::Restart(Service::Opendkim)],
    ),
    managed(
        paths::KEY_TABLE,
        "KeyTable.tera",
        OPENDKIM,
        &[Effect::Reload(Service::Opendkim)],
    ),
    managed(
        paths::SIGNING_TABLE,
        "SigningTable.tera",
        OPENDKIM,
        &[Effect::Reload(Service::Opendkim)],
    ),
    managed(
        paths::TRUSTED_HOSTS,
        "TrustedHosts.tera",
        OPENDKIM,
        &[Effect::Reload(Service::Opendkim)],
    ),
    managed(
        paths::DEFAULT_OPENDKIM,
        "default-opendkim.tera",
        ROOT,
        &[Effect::Restart(Service::Opendkim)],
    ),
    managed(
        paths::MAILNAME,
        "mailname.tera",
        ROOT,
        &[Effect::Reload(Service::Postfix)],
    ),
    managed(paths::ALIASES, "aliases.tera", ROOT, &[Effect::Newaliases]),
    managed(paths::APTICRON_CONF, "apticron.conf.tera", ROOT, &[]),
    ManagedFile {
        mode: 0o600,
        secret: true,
        ..managed(
            paths::SASL_PASSWD,
            "sasl_passwd.tera",
            ROOT,
            &[Effect::Postmap, Effect::Reload(Service::Postfix)],
        )
    },
];

/// A main.cf setting's value as Postfix reads it: the last line that sets it.
pub fn main_cf_setting(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .next_back()
}

/// The managed file at `path`, if mailsetup manages one there.
pub fn managed_file(path: &str) -> Option<&'static ManagedFile> {
    MANAGED_FILES.iter().find(|f| f.path == path)
}

/// Whether mailsetup renders a file at `path`.
pub fn is_managed_file(path: &str) -> bool {
    managed_file(path).is_some()
}

/// What must follow a change to the managed file at `path`.
pub fn effects_of(path: &str) -> &'static [Effect] {
    managed_file(path).map_or(&[], |f| f.effects)
}

/// The fixed directories mailsetup manages; key set directories come on top
/// (`key_dir`, mode `KEY_DIR_MODE`).
pub fn managed_dirs() -> Vec<Dir> {
    let dir = |path: &str, owner, mode| Dir {
        path: path.to_string(),
        owner,
        mode,
    };
    vec![
        dir("/etc/postfix", ROOT, 0o755),
        dir("/etc/default", ROOT, 0o755),
        dir(paths::APTICRON_DIR, ROOT, 0o755),
        dir(paths::OPENDKIM_DIR, OPENDKIM, 0o755),
        dir(paths::KEYS_DIR, OPENDKIM, KEY_DIR_MODE),
        dir(
            &format!("{}/{}", paths::POSTFIX_SPOOL, socket_dir()),
            OPENDKIM,
            0o750,
        ),
    ]
}

/// Key set directories: private keys, readable by opendkim only.
pub const KEY_DIR_MODE: u32 = 0o700;

/// Owner and group by name; resolved to ids against the target system's accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub user: &'static str,
    pub group: &'static str,
}

/// Owners are one of a few known pairs; reading a saved plan maps the names back.
impl<'de> serde::Deserialize<'de> for Owner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Names {
            user: String,
            group: String,
        }
        let names = Names::deserialize(d)?;
        [ROOT, OPENDKIM]
            .into_iter()
            .find(|o| o.user == names.user && o.group == names.group)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown owner {}:{}", names.user, names.group))
            })
    }
}

pub const ROOT: Owner = Owner {
    user: "root",
    group: "root",
};
pub const OPENDKIM: Owner = Owner {
    user: "opendkim",
    group: "opendkim",
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct File {
    pub path: String,
    /// Kept out of JSON views; bundles carry it as a file of its own.
    #[serde(skip)]
    pub content: String,
    pub owner: Owner,
    pub mode: u32,
    /// Never shown in a diff or plan (credentials).
    pub secret: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Dir {
    pub path: String,
    pub owner: Owner,
    pub mode: u32,
}

/// A DKIM key pair that must exist: `<dir>/<selector>.private` and `.txt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Key {
    /// `shared` or the domain it belongs to.
    pub set: String,
    pub selector: String,
    pub bits: usize,
    pub private_path: String,
    pub txt_path: String,
    /// The domain named in the .txt file's comment.
    pub domain: DomainName,
}

impl Key {
    pub fn dir(&self) -> String {
        key_dir(&self.set)
    }
}

/// The directory of one key set.
pub fn key_dir(set: &str) -> String {
    format!("{}/{set}", paths::KEYS_DIR)
}

/// Where one key lives, the one place its file names are made:
/// `/etc/opendkim/keys/SET/SELECTOR.private` and `.txt` (opendkim-genkey's names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPath {
    pub private: String,
    pub txt: String,
}

impl KeyPath {
    pub fn new(set: &str, selector: &str) -> KeyPath {
        let dir = key_dir(set);
        KeyPath {
            private: format!("{dir}/{selector}.private"),
            txt: format!("{dir}/{selector}.txt"),
        }
    }

    /// Where the key goes when its selector is revoked: (from, to) for the
    /// private key and the record, into the set's archive.
    pub fn archived(set: &str, selector: &str) -> [(String, String); 2] {
        let from = KeyPath::new(set, selector);
        let dir = archive_dir(set);
        [
            (from.private, format!("{dir}/{selector}.private")),
            (from.txt, format!("{dir}/{selector}.txt")),
        ]
    }
}

/// What mailsetup keeps of a key set: its rotation state and archive, in the
/// state directory (root's alone). Not in the key directory, which is
/// opendkim's: its owner could otherwise aim root's writes there.
pub fn keyset_state_dir(set: &str) -> String {
    format!("{}/{set}", crate::state::KEYSETS)
}

/// Where revoked private keys go: `/var/lib/mailsetup/keys/SET/archive/`.
pub const ARCHIVE_DIR: &str = "archive";
pub const ARCHIVE_DIR_MODE: u32 = 0o700;

/// A key set's archive of revoked keys.
pub fn archive_dir(set: &str) -> String {
    format!("{}/{ARCHIVE_DIR}", keyset_state_dir(set))
}

/// A rotation state holds no secret: 0644, like the keys' .txt records (its
/// directory is root's alone all the same).
pub const ROTATION_STATE_MODE: u32 = 0o644;

/// A key set's rotation state (which selector is staged, signs, retires, was
/// revoked): `rotation.json`, or `rotation-HOST.json` for the hosts of a
/// fleet, which may share a key directory.
pub fn rotation_state(set: &str, host: Option<&str>) -> String {
    rotation_file(&keyset_state_dir(set), host)
}

fn rotation_file(dir: &str, host: Option<&str>) -> String {
    match host {
        None => format!("{dir}/rotation.json"),
        Some(host) => format!("{dir}/rotation-{host}.json"),
    }
}

/// Where mailsetup 0.1 kept the rotation state and archive: in the key
/// directory. The next apply or rotation moves them (`Step::MoveKeySetState`).
pub mod legacy {
    /// The rotation state in the key directory.
    pub fn rotation_state(set: &str, host: Option<&str>) -> String {
        super::rotation_file(&super::key_dir(set), host)
    }

    /// The archive in the key directory.
    pub fn archive_dir(set: &str) -> String {
        format!("{}/{}", super::key_dir(set), super::ARCHIVE_DIR)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub user: &'static str,
    pub group: &'static str,
}

/// Everything the spec asks of the host.
#[derive(Clone, Debug, Serialize)]
pub struct Desired {
    /// Debian packages to have installed (none with `install_packages: false`).
    pub packages: Vec<&'static str>,
    pub dirs: Vec<Dir>,
    pub keys: Vec<Key>,
    pub files: Vec<File>,
    pub group_members: Vec<GroupMember>,
}

/// Facts from the host that the desired state depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// Selectors of the private keys present, per key set.
    pub key_selectors: BTreeMap<String, Vec<String>>,
    /// The selector each key set signs with by its rotation state
    /// (`rotate::signing_selectors`); sets without one follow `dkim.selector`.
    pub signing_selectors: BTreeMap<String, String>,
    /// First line of the relay password file, when the spec names one.
    pub relay_password: Option<String>,
    /// The day a key made now would be dated (UTC).
    pub today: Date,
}

/// The key set that signs for `domain`.
pub fn key_set_of<'a>(spec: &Spec, domain: &'a DomainName) -> &'a str {
    match spec.dkim.key {
        KeyMode::Shared => SHARED_KEY,
        KeyMode::PerDomain => domain.as_str(),
    }
}

/// The key sets the spec uses: `shared`, or one per domain.
pub fn key_sets(spec: &Spec) -> Vec<(String, DomainName)> {
    match spec.dkim.key {
        KeyMode::Shared => {
            let first = spec
                .domains
                .keys()
                .next()
                .expect("spec has a domain")
                .clone();
            vec![(SHARED_KEY.to_string(), first)]
        }
        KeyMode::PerDomain => spec
            .domains
            .keys()
            .map(|d| (d.to_string(), d.clone()))
            .collect(),
    }
}

/// The selector of a key set: a fixed one as written; a date-based one is the
/// newest existing key matching the pattern, or today's date for a new key.
pub fn selector_for(pattern: &str, existing: &[String], today: Date) -> String {
    let Some((prefix, suffix)) = pattern.split_once(DATE_PLACEHOLDER) else {
        return pattern.to_string();
    };
    existing
        .iter()
        .filter_map(|s| crate::spec::names::date_in(pattern, s).map(|d| (d, s)))
        .max()
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| format!("{prefix}{}{suffix}", today.strftime("%Y%m%d")))
}

/// The DKIM keys the spec needs, with their selectors resolved: the one a key
/// set's rotation state makes active (`signing`), else from `dkim.selector`.
pub fn keys(
    spec: &Spec,
    existing: &BTreeMap<String, Vec<String>>,
    signing: &BTreeMap<String, String>,
    today: Date,
) -> Result<Vec<Key>> {
    key_sets(spec)
        .into_iter()
        .map(|(set, domain)| {
            let have = existing.get(&set).map(Vec::as_slice).unwrap_or(&[]);
            let selector = match signing.get(&set) {
                Some(active) => active.clone(),
                None => selector_for(spec.dkim.selector.as_str(), have, today),
            };
            // The pattern was checked with a stand-in date; check the real one too.
            check_selector(&selector).map_err(|e| anyhow::anyhow!("dkim.selector: {e}"))?;
            let path = KeyPath::new(&set, &selector);
            Ok(Key {
                private_path: path.private,
                txt_path: path.txt,
                set,
                selector,
                bits: spec.dkim.bits.get(),
                domain,
            })
        })
        .collect()
}

#[derive(Serialize)]
struct Vars<'a> {
    header: String,
    host: HostVars,
    relay: Option<RelayVars>,
    smtp_tls_security_level: &'static str,
    queue_lifetime_days: u16,
    milter: MilterVars,
    opendkim: OpendkimVars,
    keys: Vec<KeyTableEntry<'a>>,
    signing: Vec<SigningEntry>,
    trusted_hosts: Vec<String>,
    /// Envelope senders rewritten to the listed domain, one entry per domain
    /// whose unlisted subdomains are signed with its key.
    sender_canonical: Vec<CanonicalVars>,
    aliases: Vec<AliasVars>,
    apticron: AptVars,
    sasl: Option<SaslVars>,
    outbound: OutboundVars,
}

#[derive(Serialize)]
struct OutboundVars {
    /// `smtp_dns_support_level = dnssec` and DANE.
    dane: bool,
    /// MTA-STS after DANE: the policy maps.
    mta_sts: bool,
    /// master.cf's `mailsetup socketmap` service, with its `--mx` arguments.
    socketmap: Option<String>,
    /// `GROUP=MX` pairs: transport_maps asks the socketmap.
    mx_groups: bool,
    socketmap_address: &'static str,
    mta_sts_resolver: &'static str,
    limits: Vec<LimitVars>,
    /// `domain → group` lines of the transport map.
    transports: Vec<(String, String)>,
    /// The HELO name as a regular expression, for the Received header rule.
    redact_received: Option<String>,
    message_size_limit: Option<u64>,
}

#[derive(Serialize)]
struct LimitVars {
    name: String,
    concurrency: Option<u16>,
    rate_delay: Option<u16>,
}

#[derive(Serialize)]
struct HostVars {
    hostname: String,
    mailname: String,
    mydestination: Vec<String>,
    networks: Vec<String>,
    interfaces: String,
    protocols: &'static str,
    maillog_file: Option<String>,
}

#[derive(Serialize)]
struct RelayVars {
    nexthop: String,
    sasl_passwd: Option<&'static str>,
}

#[derive(Serialize)]
struct MilterVars {
    postfix: String,
    opendkim: String,
}

#[derive(Serialize)]
struct OpendkimVars {
    key_table: &'static str,
    signing_table: &'static str,
    trusted_hosts: &'static str,
    pid_file: &'static str,
    run_dir: &'static str,
    canonicalization: &'static str,
    oversign_headers: String,
}

#[derive(Serialize)]
struct KeyTableEntry<'a> {
    name: String,
    domain: String,
    selector: &'a str,
    path: &'a str,
}

#[derive(Serialize)]
struct SigningEntry {
    pattern: String,
    key: String,
}

#[derive(Serialize)]
struct CanonicalVars {
    domain: String,
    /// The domain as a regular expression (dots escaped).
    pattern: String,
    /// Its subdomains that send as themselves (listed ones, the mailname,
    /// listed domains under it), as regular expressions.
    keep: Vec<String>,
}

#[derive(Serialize)]
struct AliasVars {
    name: String,
    targets: Vec<String>,
}

#[derive(Serialize)]
struct AptVars {
    email: String,
    subject: Option<String>,
    no_updates_subject: Option<String>,
}

#[derive(Clone, Serialize)]
struct SaslVars {
    nexthop: String,
    username: String,
    /// Rendered into the credential file only: no other template can print it.
    #[serde(skip)]
    password: String,
}

/// What the credential file's template sees: the password too.
#[derive(Serialize)]
struct SecretVars<'a> {
    nexthop: &'a str,
    username: &'a str,
    password: &'a str,
}

/// Computes the desired state of the host.
pub fn desired(spec: &HostSpec, templates: &Templates, facts: &HostFacts) -> Result<Desired> {
    let keys = keys(
        spec,
        &facts.key_selectors,
        &facts.signing_selectors,
        facts.today,
    )?;
    let vars = vars(spec, facts, &keys)?;
    let mut context = tera::Context::from_serialize(&vars)?;
    let render = |f: &ManagedFile, context: &tera::Context| -> Result<File> {
        let content = if f.secret {
            templates.render_secret(f.template, context)?
        } else {
            templates.render(f.template, context)?
        };
        Ok(File {
            path: f.path.to_string(),
            content,
            owner: f.owner,
            mode: f.mode,
            secret: f.secret,
        })
    };
    let mut files = MANAGED_FILES
        .iter()
        .filter(|f| !f.secret && (f.needed)(spec))
        .map(|f| render(f, &context))
        .collect::<Result<Vec<_>>>()?;
    // Only now does the context get the password: no other template sees it.
    // (One context, not a copy: at 100,000 domains it is most of the memory.)
    if let Some(sasl) = &vars.sasl {
        let secret = SecretVars {
            nexthop: &sasl.nexthop,
            username: &sasl.username,
            password: &sasl.password,
        };
        context.insert("sasl", &secret);
        for f in MANAGED_FILES.iter().filter(|f| f.secret) {
            files.push(render(f, &context)?);
        }
    }

    let mut dirs = managed_dirs();
    dirs.extend(keys.iter().map(|k| Dir {
        path: k.dir(),
        owner: OPENDKIM,
        mode: KEY_DIR_MODE,
    }));

    Ok(Desired {
        packages: if spec.host.install_packages {
            crate::packages::required(spec)
        } else {
            Vec::new()
        },
        dirs,
        keys,
        files,
        group_members: vec![GroupMember {
            user: "postfix",
            group: "opendkim",
        }],
    })
}

/// The socket's directory inside the spool (`opendkim`).
fn socket_dir() -> &'static str {
    MILTER_SOCKET_IN_SPOOL
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .unwrap_or(MILTER_SOCKET_IN_SPOOL)
}

fn vars<'a>(spec: &'a HostSpec, facts: &HostFacts, keys: &'a [Key]) -> Result<Vars<'a>> {
    let hostname = spec.hostname().to_string();
    let mailname = spec.mailname().to_string();
    let mut mydestination = vec!["$myhostname".to_string(), "localhost".to_string()];
    if mailname != hostname {
        mydestination.push(mailname.clone());
    }
    let relay = spec.host.relay.as_ref();
    let nexthop = relay.map(|r| {
        if r.mx_lookup {
            format!("{}:{}", r.host, r.port)
        } else {
            format!("[{}]:{}", r.host, r.port)
        }
    });
    let sasl = match relay.and_then(|r| r.auth.as_ref()) {
        None => None,
        Some(auth) => {
            let password = facts.relay_password.clone().ok_or_else(|| {
                anyhow::anyhow!("the relay password from {} is missing", auth.password_file)
            })?;
            Some(SaslVars {
                nexthop: nexthop.clone().expect("relay is set"),
                username: auth.username.to_string(),
                password,
            })
        }
    };
    let smtp_tls_security_level = match (relay.map(|r| r.tls), spec.outbound.tls) {
        (Some(RelayTls::Encrypt), _) => "encrypt",
        (Some(RelayTls::None), _) => "none",
        (Some(RelayTls::May), _) => "may",
        (None, OutboundTls::Opportunistic) => "may",
        (None, OutboundTls::Dane | OutboundTls::DaneAndMtaSts) => "dane",
    };

    // One KeyTable entry per domain, so d= is always the domain itself; with
    // subdomain signing, mail from x.example.com is signed for example.com.
    let by_set: std::collections::HashMap<&str, &'a Key> =
        keys.iter().map(|k| (k.set.as_str(), k)).collect();
    let key_of = |domain: &DomainName| -> &'a Key {
        match spec.dkim.key {
            KeyMode::Shared => &keys[0],
            KeyMode::PerDomain => by_set[domain.as_str()],
        }
    };
    let mut key_entries = Vec::with_capacity(spec.domains.len());
    let mut signing = Vec::with_capacity(spec.domains.len() * 2);
    for d in spec.domains() {
        let domain = d.name;
        let key = key_of(domain);
        key_entries.push(KeyTableEntry {
            name: domain.to_string(),
            domain: domain.to_string(),
            selector: &key.selector,
            path: &key.private_path,
        });
        // A listed subdomain signs as itself (d=app.example.com) with its
        // domain's key, so it aligns under strict DMARC too.
        for sub in &d.subdomains {
            key_entries.push(KeyTableEntry {
                name: sub.to_string(),
                domain: sub.to_string(),
                selector: &key.selector,
                path: &key.private_path,
            });
            signing.push(SigningEntry {
                pattern: sub.to_string(),
                key: sub.to_string(),
            });
        }
        // OpenDKIM looks a sender up as user@host, host, then user@.parent and
        // .parent for each parent domain: "example.com" signs its own mail,
        // ".example.com" that of every subdomain.
        signing.push(SigningEntry {
            pattern: domain.to_string(),
            key: domain.to_string(),
        });
        if spec.dkim.subdomains {
            signing.push(SigningEntry {
                pattern: format!(".{domain}"),
                key: domain.to_string(),
            });
        }
    }
    // System mail signs as the mailname itself, with the key of the listed
    // domain it is under: root@mailname passes DKIM aligned, even strictly.
    if let crate::spec::SystemMail::Under(d) = spec.system_mail() {
        let key = key_of(d.name);
        let mailname = spec.mailname().to_string();
        key_entries.push(KeyTableEntry {
            name: mailname.clone(),
            domain: mailname.clone(),
            selector: &key.selector,
            path: &key.private_path,
        });
        signing.push(SigningEntry {
            pattern: mailname.clone(),
            key: mailname,
        });
    }

    Ok(Vars {
        // The same whatever the spec file is called or where it lives: renaming
        // it must not rewrite every file and restart OpenDKIM.
        header: "Managed by mailsetup: edit the spec, not this file; mailsetup apply \
                 overwrites local changes."
            .to_string(),
        host: HostVars {
            hostname,
            mailname,
            mydestination,
            networks: spec.host.networks.iter().map(|n| n.postfix()).collect(),
            interfaces: match &spec.host.interfaces {
                Interfaces::LoopbackOnly => "loopback-only".into(),
                Interfaces::All => "all".into(),
                Interfaces::Addresses(a) => a
                    .iter()
                    .map(|ip| match ip {
                        std::net::IpAddr::V4(v4) => v4.to_string(),
                        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            protocols: match spec.host.protocols {
                Protocols::All => "all",
                Protocols::Ipv4 => "ipv4",
                Protocols::Ipv6 => "ipv6",
            },
            maillog_file: spec.host.maillog_file.as_ref().map(ToString::to_string),
        },
        relay: nexthop.map(|nexthop| RelayVars {
            nexthop,
            sasl_passwd: sasl.as_ref().map(|_| paths::SASL_PASSWD),
        }),
        smtp_tls_security_level,
        queue_lifetime_days: crate::spec::QUEUE_LIFETIME_DAYS,
        milter: MilterVars {
            postfix: format!("unix:{MILTER_SOCKET_IN_SPOOL}"),
            opendkim: format!("local:{}", milter_socket()),
        },
        opendkim: OpendkimVars {
            key_table: paths::KEY_TABLE,
            signing_table: paths::SIGNING_TABLE,
            trusted_hosts: paths::TRUSTED_HOSTS,
            pid_file: paths::OPENDKIM_PID,
            run_dir: paths::OPENDKIM_RUN_DIR,
            canonicalization: "relaxed/relaxed",
            oversign_headers: spec
                .dkim
                .oversign_headers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        },
        keys: key_entries,
        signing,
        trusted_hosts: trusted_hosts(spec),
        sender_canonical: sender_canonical(spec),
        aliases: spec
            .aliases
            .iter()
            .map(|(name, targets)| AliasVars {
                name: name.to_string(),
                targets: targets.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        apticron: AptVars {
            email: spec.apticron.email.to_string(),
            subject: spec.apticron.subject.as_ref().map(ToString::to_string),
            no_updates_subject: spec
                .apticron
                .no_updates_subject
                .as_ref()
                .map(ToString::to_string),
        },
        sasl,
        outbound: OutboundVars {
            // (The spec refuses outbound.tls and limits with a relay.)
            dane: spec.outbound.tls.dane(),
            mta_sts: spec.outbound.tls.mta_sts(),
            socketmap: spec
                .outbound
                .needs_socketmap()
                .then(|| socketmap_command(spec)),
            mx_groups: spec.outbound.limited_mx().next().is_some(),
            socketmap_address: paths::SOCKETMAP,
            mta_sts_resolver: paths::MTA_STS_RESOLVER,
            limits: spec
                .outbound
                .limits
                .iter()
                .map(|(name, l)| LimitVars {
                    name: name.to_string(),
                    concurrency: l.concurrency.map(|c| c.get()),
                    rate_delay: l.rate_delay_seconds.map(|d| d.get()),
                })
                .collect(),
            transports: spec
                .outbound
                .limited_domains()
                .map(|(d, name)| (d.to_string(), name.to_string()))
                .collect(),
            redact_received: spec
                .outbound
                .redact_received
                .then(|| as_regex(spec.hostname())),
            message_size_limit: spec.host.message_size_limit.map(|s| s.get()),
        },
    })
}

/// The command master.cf's spawn service runs: `mailsetup socketmap` with
/// each `--mx GROUP=NAME` of the limits (validated names: no space or
/// separator can reach master.cf from them).
pub fn socketmap_command(spec: &Spec) -> String {
    let mut command = format!("{} socketmap", paths::MAILSETUP_BIN);
    for (mx, group) in spec.outbound.limited_mx() {
        command += &format!(" --mx {group}={mx}");
    }
    command
}

/// Whose mail OpenDKIM signs: `dkim.trusted_hosts`, and every network of
/// `host.networks` beyond loopback — a client Postfix lets send must not have
/// its mail leave unsigned.
fn trusted_hosts(spec: &Spec) -> Vec<String> {
    let mut out: Vec<String> = spec
        .dkim
        .trusted_hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    for n in &spec.host.networks {
        let entry = format!("{}/{}", n.addr, n.prefix);
        if !n.addr.to_canonical().is_loopback() && !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// A domain name as a Postfix regexp table matches it: its dots escaped (a
/// validated name has no other special character).
fn as_regex(name: &DomainName) -> String {
    name.as_str().replace('.', "\\.")
}

/// With `dkim.subdomains`, mail from a subdomain the spec does not list is
/// signed d=its listed domain, but that subdomain has no SPF record: its
/// envelope sender is rewritten to the listed domain (the From header stays),
/// whose SPF covers this host, so SPF passes and aligns (relaxed) as DKIM
/// does. Listed subdomains, the mailname and listed domains under it keep
/// theirs: they have SPF of their own.
fn sender_canonical(spec: &HostSpec) -> Vec<CanonicalVars> {
    if !spec.dkim.subdomains {
        return Vec::new();
    }
    // Each name that sends as itself, under each listed domain above it
    // (found by walking up its labels: linear in the names).
    let mut keep: std::collections::HashMap<&str, Vec<String>> = spec
        .domains()
        .map(|d| (d.name.as_str(), Vec::new()))
        .collect();
    let own = spec
        .domains()
        .flat_map(|d| {
            std::iter::once(d.name.clone())
                .chain(d.subdomains)
                .collect::<Vec<_>>()
        })
        .chain(std::iter::once(spec.mailname().clone()));
    for name in own {
        let mut parent = name.as_str();
        while let Some((_, up)) = parent.split_once('.') {
            if let Some(list) = keep.get_mut(up) {
                list.push(as_regex(&name));
            }
            parent = up;
        }
    }
    spec.domains()
        .map(|d| CanonicalVars {
            domain: d.name.to_string(),
            pattern: as_regex(d.name),
            keep: keep.remove(d.name.as_str()).unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn date_selectors_reuse_the_newest_existing_key() {
        let today = date("2026-11-24");
        assert_eq!(selector_for("{date}", &[], today), "20261124");
        assert_eq!(selector_for("mail", &["x".into()], today), "mail");
        let existing = vec!["20250101".into(), "20260301".into(), "other".into()];
        assert_eq!(selector_for("{date}", &existing, today), "20260301");
        let existing = vec!["mta01-20250101".into(), "mta02-20260101".into()];
        assert_eq!(
            selector_for("mta01-{date}", &existing, today),
            "mta01-20250101"
        );
        assert_eq!(
            selector_for("x{date}y", &["x2025y".into()], today),
            "x20261124y"
        );
    }
}
