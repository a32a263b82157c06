//! Command-line definitions only; `lib.rs` turns them into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::spec::ResolverAddr;

/// Turn one YAML spec into a send-only, DKIM-signing Postfix + OpenDKIM server,
/// and print the DNS records to publish.
///
/// The usual flow: `mailsetup init` writes mailsetup.yaml; edit it; `mailsetup
/// validate mailsetup.yaml`; `mailsetup plan mailsetup.yaml` shows every change;
/// `mailsetup apply mailsetup.yaml` (as root) makes them; then publish what
/// `mailsetup dns mailsetup.yaml` prints.
#[derive(Debug, Parser)]
#[command(name = "mailsetup", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter spec.
    Init {
        /// Where to write it (`-` for standard output).
        #[arg(default_value = "mailsetup.yaml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check a spec: syntax, types and values, with file, line and field in every error.
    Validate {
        /// The spec file.
        spec: PathBuf,
    },
    /// Show what apply would change: a diff per managed file and the actions. Writes nothing.
    ///
    /// Exit status with --detailed-exitcode: 0 nothing to do, 2 changes, 1 error.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Exit 2 when there are changes (0 when none, 1 on error), for CI drift checks.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Also save the plan to FILE, for `mailsetup apply --plan FILE`. It holds the
        /// spec and the steps, no credentials (the relay password is read at apply
        /// time), so it can be kept as a CI artifact.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make the system match the spec: exactly what plan shows.
    ///
    /// Installs missing Debian packages first (non-interactively; see
    /// --no-install-packages). Checks the new configuration with postconf and opendkim -n first, backs up
    /// every file it replaces (see rollback), writes atomically, generates missing
    /// DKIM keys (0600), runs newaliases/postmap and reloads only what changed.
    Apply {
        /// The spec file (not with --plan or --bundle).
        #[arg(
            required_unless_present_any = ["plan", "bundle"],
            conflicts_with_all = ["plan", "bundle"]
        )]
        spec: Option<PathBuf>,
        /// Apply to the tree under DIR instead of the running system (staging, images,
        /// tests). Services and group membership are only changed on `/`.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// A directory whose templates replace the built-in ones (see plan).
        #[arg(long, value_name = "DIR", conflicts_with = "plan")]
        templates: Option<PathBuf>,
        /// With a fleet spec: the host (a name under `hosts`) this is.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["plan", "bundle"])]
        host: Option<String>,
        /// Apply exactly the plan saved by `plan --out FILE`: the steps are derived
        /// again here from the spec saved in it and must be the saved ones (refused
        /// when a managed file changed since, or the file was edited). The relay
        /// password is read here, at apply time.
        #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
        plan: Option<PathBuf>,
        /// Apply a bundle made by `mailsetup bundle`. Its signature (FILE.sig) is
        /// checked first when allowed signers are configured; then the spec in it is
        /// rendered here and its files must be exactly that. Keys missing here are
        /// generated here.
        #[arg(long, value_name = "FILE", conflicts_with = "templates")]
        bundle: Option<PathBuf>,
        /// With --bundle: the OpenSSH allowed_signers file listing the keys that may
        /// sign bundles (namespace mailsetup-bundle). Default:
        /// ROOT/etc/mailsetup/allowed_signers when it exists. With either, unsigned
        /// bundles are refused.
        #[arg(
            long,
            value_name = "FILE",
            requires = "bundle",
            env = "MAILSETUP_ALLOWED_SIGNERS"
        )]
        allowed_signers: Option<PathBuf>,
        /// Leave the Debian packages alone (as `host.install_packages: false`).
        #[arg(long)]
        no_install_packages: bool,
    },
    /// Build a byte-reproducible bundle for CI: the spec, the rendered files, a
    /// manifest (sha256 of each) and the DNS records; with --sign, an SSH signature
    /// beside it. Hosts apply it with `mailsetup apply --bundle FILE`. Private keys
    /// stay out unless asked for; credentials are never in it.
    ///
    /// Date-based selectors come from the public keys given, or from
    /// SOURCE_DATE_EPOCH, so the same inputs give the same bytes at any time.
    Bundle(BundleArgs),
    /// Export the public half of every DKIM key as DIR/SET/SELECTOR.txt, and
    /// which one signs on this host (DIR/SET/signing-HOSTNAME), for
    /// `mailsetup bundle --public-keys DIR` in CI. Private keys are not copied.
    PublicKeys {
        /// The spec file (it says which key of each set signs on this host).
        spec: PathBuf,
        /// With a fleet spec: the host this is.
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// The system whose keys are read.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the DNS records to publish: SPF, DKIM, DMARC and report authorization;
    /// or publish them (`--push`), or write them for octoDNS (`--format octodns`).
    Dns(DnsArgs),
    /// Put back the files the last apply replaced (and remove the ones it created).
    ///
    /// All or nothing: every file is staged first, then all are put in place.
    /// DKIM keys are kept: they may already be published. Each rollback goes one
    /// apply further back. The apply that first configured Postfix and OpenDKIM
    /// is only rolled back with --unconfigure.
    Rollback {
        /// The system to restore.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Also roll back the apply that first configured the mail services
        /// (it created main.cf or opendkim.conf): they are left without a
        /// configuration, so they are stopped.
        #[arg(long)]
        unconfigure: bool,
    },
    /// What the mail did: the queue, deliveries by receiver, signing, the keys.
    ///
    /// Read only (as root, or a member of the adm group for the logs). The queue
    /// (`postqueue -j`: by state and receiver domain, the oldest message); the
    /// deliveries of the window (`--since`, default 24h) from the log — the
    /// journal on a systemd host, host.maillog_file, or /var/log/mail.log; or
    /// the files given with --log — sent, deferred and bounced per receiver
    /// domain with the receivers' reasons grouped; what OpenDKIM signed, could
    /// not sign, and messages that left unsigned; each key set's key, its age and
    /// next rotation step; the last apply. Exit status 3 when something needs a
    /// person (a message left unsigned, OpenDKIM failing, a message waiting more
    /// than a day, a missing key, a rotation step overdue by a week, a failed
    /// apply); else 4 when this user could not read the keys or the state
    /// directory (root's; a member of adm sees the rest); else 0.
    Status(StatusArgs),
    /// Read DMARC aggregate reports: who sends as your domains, what passes, and
    /// whether p=quarantine or p=reject would lose any of your mail.
    ///
    /// Reads the reports receivers send to your `rua=` address, as they send them:
    /// .xml, .xml.gz, .zip, or whole messages (.eml, a Maildir's files) with the
    /// report attached in any MIME encoding; RFC 7489 and DMARCbis. Directories are
    /// read recursively (symlinks not followed). Per domain: messages by source
    /// address — your hosts (check.addresses, spf.ip), mail signed with your keys
    /// from elsewhere (forwarders), and others — with DKIM, SPF and DMARC passes,
    /// aligned as receivers evaluated them; then a verdict on a stricter policy,
    /// with the report rows that show it. A file that cannot be read is named with
    /// the reason, and the others are still summarised. Exit status: 1 when a file
    /// could not be read; else 3 when a stricter policy would lose (or loses) some
    /// of your mail; else 0.
    Reports {
        /// The spec file: its addresses and DKIM selectors say which mail is yours.
        spec: PathBuf,
        /// Report files, or directories of them.
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// `text`: a table and a verdict per domain; `json`: format mailsetup-reports/1.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Answer Postfix's lookups that need the DNS: which receivers publish
    /// DANE, and which group of `outbound.limits` a receiver's MX puts it in.
    ///
    /// Not for running by hand: master.cf has Postfix's spawn service run it for
    /// each connection on 127.0.0.1:8462 (as nobody), with `--mx` from the spec.
    /// Reads socketmap requests (netstrings) on standard input until it ends.
    /// Table `dane` (main.cf's smtp_tls_policy_maps, before the MTA-STS
    /// resolver): asks the validating resolver in /etc/resolv.conf for the
    /// receiver's MX and TLSA records, and answers `OK dane` when both validate,
    /// NOTFOUND (the MTA-STS resolver decides) when not. Table `transport`
    /// (transport_maps): `OK GROUP:` when one of the domain's MX hosts is a
    /// group's name or under it, else NOTFOUND. TEMP (Postfix defers the mail)
    /// when the DNS cannot say.
    Socketmap {
        /// A group of outbound.limits and an MX name: GROUP=NAME (repeated).
        #[arg(long, value_name = "GROUP=NAME")]
        mx: Vec<String>,
    },
    /// Print the JSON Schema of the spec (for editors: yaml-language-server).
    Schema,
    /// Print the shell completion script for SHELL.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): mailsetup(1), or a command's (`man plan`,
    /// `man rotate start`); with --out, write them all to a directory.
    Man {
        /// The command whose page to print (default: mailsetup itself).
        command: Vec<String>,
        /// Write every page (mailsetup.1, mailsetup-plan.1, …) into DIR instead.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        out: Option<PathBuf>,
    },
    /// Rotate DKIM keys without a message failing DKIM: start, publish, activate, finish.
    ///
    /// Each key set (`shared`, or each domain with `dkim.key: per-domain`) takes a new
    /// key through staged (published, not signing) → active (signing) → retiring (still
    /// published for dkim.rotation.grace_days) → revoked (private key archived, an empty
    /// `p=` published). The state lives in /var/lib/mailsetup/keys/SET/rotation.json. Each
    /// step is a plan carried out as apply does (shown, checked, backed up, put back on
    /// failure; `--dry-run` only shows it; `mailsetup rollback` undoes it). Every step is
    /// idempotent; `rotate auto` does whichever is due, for cron.
    Rotate {
        #[command(subcommand)]
        step: RotateStep,
    },
    /// Check what is live: SPF, DKIM and DMARC as DNS serves them, reverse DNS and
    /// blocklists of this host's addresses, and the daemons.
    ///
    /// SPF: one valid record, at most 10 lookups, passing for this host's addresses.
    /// DKIM: every selector published with the key on disk (revoked ones revoked).
    /// DMARC: one valid record, and report authorization for rua/ruf elsewhere.
    /// Addresses (check.addresses, or the hostname's): forward-confirmed reverse DNS,
    /// check.blocklists. On the running system: postfix, opendkim, the milter socket.
    /// Exit status 3 when a check fails (1: an error); a lookup that gets no answer
    /// is a warning.
    Check {
        /// The spec file.
        spec: PathBuf,
        /// The system the DKIM keys are read from.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// With a fleet spec: the host (a name under `hosts`) to check.
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// The DNS server to ask (default: check.resolver, else /etc/resolv.conf).
        #[arg(long, value_name = "ADDR[:PORT]")]
        resolver: Option<ResolverAddr>,
        /// `text`: a table; `json`: an array of {check, target, status, detail}.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// The system to report on.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// With a fleet spec: the host this is.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// The window of deliveries: 30m, 24h, 7d.
    #[arg(long, value_name = "WINDOW", default_value = "24h")]
    pub since: String,
    /// Read these log files instead (repeat it); syslog or ISO-dated lines.
    #[arg(long, value_name = "FILE")]
    pub log: Vec<PathBuf>,
    /// `text`; `json` (format mailsetup-status/1); `prometheus`: the
    /// node_exporter textfile format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    /// With --format prometheus: write DIR/mailsetup.prom (atomically) instead
    /// of printing, for node_exporter's textfile collector.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
    Prometheus,
}

/// The steps of a DKIM key rotation.
#[derive(Debug, Subcommand)]
pub enum RotateStep {
    /// Stage a new key per key set under today's selector and print its DNS records.
    ///
    /// The selector is dkim.selector with {date} as today (YYYYMMDD, UTC), `-2`, `-3`…
    /// added when taken. Signing does not change. A set with a staged key already
    /// prints that key's records again.
    Start {
        #[command(flatten)]
        keys: KeysTarget,
        /// Show the plan (the new key, the state, the archive moves, the files
        /// apply would change) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Switch signing to the staged key once DNS serves it.
    ///
    /// Looks up SELECTOR._domainkey.DOMAIN for each domain of the key set at each
    /// resolver and refuses (exit 1, nothing changed) unless every one serves
    /// exactly the staged key. Then
    /// the old selector starts retiring, and the spec is applied as by `mailsetup
    /// apply`: the KeyTable names the new key and opendkim reloads it.
    Activate {
        #[command(flatten)]
        target: Target,
        /// A DNS server to ask; repeat it for several: each must serve the key
        /// (default: check.resolver, else each nameserver of /etc/resolv.conf).
        #[arg(long, value_name = "ADDR[:PORT]")]
        resolver: Vec<ResolverAddr>,
        /// Switch even when DNS does not serve the key: mail signed with it then fails
        /// DKIM until it does.
        #[arg(long)]
        force: bool,
        /// Show the plan (the new key, the state, the archive moves, the files
        /// apply would change) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Revoke the retiring selectors whose grace period is over.
    ///
    /// Their private keys move to /var/lib/mailsetup/keys/SET/archive/ (root's alone), and
    /// `mailsetup dns` shows `v=DKIM1; p=` to publish in place of their records.
    /// Refused (exit 1) during the grace period (dkim.rotation.grace_days after
    /// activation), and while Postfix's queue holds mail that arrived before signing
    /// switched (it may carry the retiring key's signature; Postfix returns it after
    /// maximal_queue_lifetime, 5 days), unless --force.
    Finish {
        #[command(flatten)]
        keys: KeysTarget,
        /// Revoke now, before the grace period is over or the queue let go of the
        /// mail the key signed (that mail then fails DKIM).
        #[arg(long)]
        force: bool,
        /// Show the plan (the new key, the state, the archive moves, the files
        /// apply would change) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show every selector with its state, its dates and the next step.
    Status {
        #[command(flatten)]
        keys: KeysTarget,
        /// `text`: a table; `json`: one object per selector.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Do the step that is due, for cron or the timer: finish after the grace period
    /// (and once the queue holds no mail from before signing switched), activate
    /// once DNS serves the staged key, start when dkim.rotation.interval_days passed.
    ///
    /// At most one step per key set per run. Prints nothing when nothing is due, and
    /// what to publish while a staged key waits for DNS.
    Auto {
        #[command(flatten)]
        target: Target,
        /// A DNS server to ask; repeat it for several: each must serve the staged
        /// key (default: check.resolver, else each nameserver of /etc/resolv.conf).
        #[arg(long, value_name = "ADDR[:PORT]")]
        resolver: Vec<ResolverAddr>,
        /// Show the plan (the new key, the state, the archive moves, the files
        /// apply would change) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The spec and the system whose DKIM keys rotate.
#[derive(Debug, Args)]
pub struct KeysTarget {
    /// The spec file.
    pub spec: PathBuf,
    /// The system the keys are on.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// With a fleet spec: the host (a name under `hosts`) whose keys rotate.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// What goes into a bundle.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// Where to write the .tar.gz.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// With a fleet spec: the host (a name under `hosts`) the bundle is for.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Templates that replace the built-in ones (shipped in the bundle).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Public keys exported by the hosts with `mailsetup public-keys`
    /// (DIR/SET/SELECTOR.txt), so the DNS records carry the real keys.
    #[arg(long, value_name = "DIR")]
    pub public_keys: Option<PathBuf>,
    /// Read the keys from this system instead (when bundling on the host).
    #[arg(long, value_name = "DIR", conflicts_with = "public_keys")]
    pub root: Option<PathBuf>,
    /// Ship the private keys found under --root. The bundle is then a secret.
    #[arg(long, requires = "root")]
    pub include_private_keys: bool,
    /// Sign the bundle with this OpenSSH private key (unencrypted; ed25519 or RSA):
    /// writes OUT.sig, the same as `ssh-keygen -Y sign -f KEY -n mailsetup-bundle OUT`.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

/// The spec and the system it applies to.
#[derive(Debug, Args)]
pub struct Target {
    /// The spec file.
    pub spec: PathBuf,
    /// The system to work on: the tree under DIR instead of the running one
    /// (staging, images, tests). Services and group membership are only
    /// changed on `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// With a fleet spec: the host (a name under `hosts`) to plan or apply for.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// A directory whose templates (same names as the built-in ones, e.g.
    /// main.cf.tera) replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Leave the Debian packages alone (as `host.install_packages: false`): for
    /// hosts whose packages are managed elsewhere.
    #[arg(long)]
    pub no_install_packages: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DnsFormat {
    Zone,
    Json,
    Octodns,
}

#[derive(Args, Debug)]
pub struct DnsArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// The system the DKIM keys are read from.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Read the keys from what the hosts exported with `mailsetup public-keys`
    /// instead (CI: every host of a fleet at once).
    #[arg(long, value_name = "DIR")]
    pub public_keys: Option<PathBuf>,
    /// With a fleet spec: only this host's DKIM record (default: every host's).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// `zone`: BIND zone lines, TXT split in 255-byte strings; `json`: one object
    /// per record with name, type and the whole value; `octodns`: octoDNS YAML
    /// zone files, DIR/ZONE.yaml (needs --out).
    #[arg(long, value_enum, default_value_t = DnsFormat::Zone, conflicts_with = "push")]
    pub format: DnsFormat,
    /// With --format octodns: the directory the zone files are written to.
    #[arg(long, value_name = "DIR", conflicts_with = "push")]
    pub out: Option<PathBuf>,
    /// Publish the records at each zone's primary server: RFC 2136 updates signed
    /// with TSIG (`dns.server`, `dns.tsig_key` in the spec). Only mailsetup's
    /// records change (the SPF value, `_domainkey`, `_dmarc`, report authorization);
    /// an edit made meanwhile makes the update fail rather than be overwritten.
    #[arg(long)]
    pub push: bool,
    /// With --push: show what would change and send nothing.
    #[arg(long, requires = "push")]
    pub dry_run: bool,
    /// With --push: the primary server for every zone, ADDR or ADDR:PORT.
    #[arg(long, value_name = "ADDR[:PORT]", requires = "push")]
    pub server: Option<ResolverAddr>,
    /// With --push: the TSIG key for every zone, a file as `tsig-keygen` writes it
    /// (mode 0600).
    #[arg(long, value_name = "FILE", requires = "push")]
    pub tsig_key: Option<PathBuf>,
}
