//! Command-line definitions only; `lib.rs` turns them into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turn one YAML spec into a send-only, DKIM-signing Postfix + OpenDKIM server,
/// and print the DNS records to publish.
///
/// The usual flow: `mailsetup init`, edit mailsetup.yaml, `mailsetup validate`,
/// `mailsetup plan` (shows every change), `sudo mailsetup apply`, then publish
/// what `mailsetup dns` prints.
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
        /// Also save the plan to FILE (mode 0600: it holds the new files, credentials
        /// included), for `mailsetup apply --plan FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make the system match the spec: exactly what plan shows.
    ///
    /// Checks the new configuration with postconf and opendkim -n first, backs up
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
        /// Apply exactly the plan saved by `plan --out FILE`; refused when a managed
        /// file changed since the plan was made.
        #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
        plan: Option<PathBuf>,
        /// Apply a bundle made by `mailsetup bundle`: every checksum is verified
        /// before anything is touched; keys missing here are generated here.
        #[arg(long, value_name = "FILE", conflicts_with = "templates")]
        bundle: Option<PathBuf>,
    },
    /// Build a byte-reproducible bundle for CI: the rendered files, a manifest
    /// (path, mode, owner, sha256) and the DNS records. Hosts apply it with
    /// `mailsetup apply --bundle FILE`. Private keys stay out unless asked for.
    ///
    /// Date-based selectors come from the public keys given, or from
    /// SOURCE_DATE_EPOCH, so the same inputs give the same bytes at any time.
    Bundle(BundleArgs),
    /// Export the public half of every DKIM key as DIR/SET/SELECTOR.txt, for
    /// `mailsetup bundle --public-keys DIR` in CI. Private keys are not copied.
    PublicKeys {
        /// The system whose keys are read.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the DNS records to publish: SPF, DKIM, DMARC and report authorization.
    Dns {
        /// The spec file.
        spec: PathBuf,
        /// The system the DKIM keys are read from.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// `zone`: BIND zone lines, TXT split in 255-byte strings; `json`: one object
        /// per record with name, type and the whole value.
        #[arg(long, value_enum, default_value_t = DnsFormat::Zone)]
        format: DnsFormat,
    },
    /// Put back the files the last apply replaced (and remove the ones it created).
    ///
    /// DKIM keys are kept: they may already be published. Each rollback goes one
    /// apply further back.
    Rollback {
        /// The system to restore.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
    /// Print the JSON Schema of the spec (for editors: yaml-language-server).
    Schema,
}

/// What goes into a bundle.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// Where to write the .tar.gz.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
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
}

/// The spec and the system it applies to.
#[derive(Debug, Args)]
pub struct Target {
    /// The spec file.
    pub spec: PathBuf,
    /// Apply to the tree under DIR instead of the running system (staging, images,
    /// tests). Services and group membership are only changed on `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// A directory whose templates (same names as the built-in ones, e.g.
    /// main.cf.tera) replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DnsFormat {
    Zone,
    Json,
}
