//! The host: the only module that touches files, accounts, commands, services
//! and locks. Everything else is pure, or reaches the host through these traits.
//!
//! Two traits split what a command may do. [`Host`] looks: files under the
//! root prefix, accounts, installed programs, running services. [`HostMut`]
//! changes: writes, keys, directories, packages, reloads, the apply lock. The
//! real system ([`System`]) is both; [`ReadOnly`] is only a `Host`, and it is
//! what `plan`, `dns`, `check` and `rotate status` get, so they cannot write by
//! construction (chezmoi's `System` with its read-only wrapper is the model).
//! The operator's own files (the spec, templates, saved plans, bundles,
//! outputs named on the command line) are in [`local`].

pub mod beneath;
pub mod local;
mod system;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::keys::Zeroizing;

pub use beneath::Staged;

/// Whether an error comes from a permission the user lacks (EACCES, EPERM):
/// for read-only commands that can say what they could not read and go on.
pub fn denied(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<nix::errno::Errno>(),
            Some(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM)
        ) || cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    })
}
pub use system::{
    Accounts, CommandOutput, FileState, Ids, Lock, Meta, Scratch, ServiceAction, System,
};

/// The daemons mailsetup configures and reloads.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Postfix,
    Opendkim,
}

impl Service {
    /// Its name, as its systemd unit and its messages say.
    pub fn name(self) -> &'static str {
        match self {
            Service::Postfix => "postfix",
            Service::Opendkim => "opendkim",
        }
    }
}

/// Where opendkim (Debian's) writes its PID: how a running one is found
/// without systemd.
pub const OPENDKIM_PID: &str = "/run/opendkim/opendkim.pid";

/// An entry of a directory on the host.
pub struct Listed {
    pub name: String,
    pub is_dir: bool,
}

/// Looking at one target system (`/` or a tree under `--root`); target paths
/// are absolute paths inside it.
pub trait Host {
    /// The root prefix, as the host names it.
    fn root(&self) -> &Path;
    /// The running system itself, where services and accounts are managed.
    fn is_live(&self) -> bool;
    /// Only root can give files to other users; without it ownership is left alone.
    fn can_chown(&self) -> bool;
    /// The user mailsetup runs as: the owner its own files must have.
    fn own_uid(&self) -> u32;
    /// The host path of a target path (`/etc/x` → `ROOT/etc/x`), for messages
    /// and for the daemons' own tools, which take host paths.
    fn path(&self, target: &str) -> PathBuf;
    /// Whether anything (a file, a directory, a dangling symlink) is at
    /// `target`; an error (a symlinked directory on the way, no permission)
    /// is an error, never "absent".
    fn exists(&self, target: &str) -> Result<bool>;
    /// A managed file; a symlink or anything but a regular file is refused.
    fn read_file(&self, target: &str) -> Result<Option<FileState>>;
    /// Mode and owner of a regular file, without reading it; a symlink or
    /// anything else in its place is refused.
    fn file_meta(&self, target: &str) -> Result<Option<Meta>>;
    /// A managed directory; a symlink in its place is refused.
    fn read_dir_meta(&self, target: &str) -> Result<Option<Meta>>;
    /// The entries of a directory, sorted by name; none when it does not exist.
    fn list_dir(&self, target: &str) -> Result<Vec<Listed>>;
    /// A secret file: plain, its owner's only (root's when running as root).
    fn read_secret(&self, target: &str, what: &str) -> Result<Option<Zeroizing<String>>>;
    /// The target's accounts (/etc/passwd, /etc/group).
    fn accounts(&self) -> Result<Accounts>;
    /// Whether something accepts connections on a Unix socket (the milter's).
    fn connect_unix(&self, target: &str) -> Result<()>;
    /// Whether a program is installed (searched in PATH and the sbin directories).
    fn find_program(&self, name: &str) -> Option<PathBuf>;
    /// Whether Cyrus SASL's PLAIN/LOGIN plugins are installed.
    fn has_sasl_login_mechanisms(&self) -> bool;
    /// Whether a service is running on the live system.
    fn service_running(&self, service: Service) -> bool;
    /// A log file under the root, streamed (a plain file, reached without a
    /// symlink); `None` when absent.
    fn open_log(&self, target: &str) -> Result<Option<Box<dyn std::io::BufRead>>>;
    /// Runs a command that only reports (`postqueue -j`, `journalctl`),
    /// handing each line of its output to `each` as it comes.
    fn report_lines(&self, program: &str, args: &[&str], each: &mut dyn FnMut(&str)) -> Result<()>;

    /// The first line of the relay password file (see `read_secret`).
    fn read_secret_line(&self, target: &str) -> Result<Option<String>> {
        let Some(text) = self.read_secret(target, "password file")? else {
            return Ok(None);
        };
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() || line.chars().any(char::is_control) {
            bail!(
                "{}: the first line must hold the password (non-empty, no control characters)",
                self.path(target).display()
            );
        }
        Ok(Some(line))
    }
}

/// Changing the target system: only apply (through `job::execute`), rollback,
/// `apply --bundle`'s key install and rotation get one.
pub trait HostMut: Host {
    /// Replaces a file atomically (temporary file, mode, owner, sync, rename).
    fn write_file(&self, target: &str, content: &[u8], mode: u32, ids: Option<Ids>) -> Result<()>;
    /// Writes a file's new content beside it (mode, owner, synced), to be put
    /// in place by `Staged::commit` — a rename, which needs no space — or
    /// removed when dropped: several files change all or nothing this way.
    fn stage_file(
        &self,
        target: &str,
        content: &[u8],
        mode: u32,
        ids: Option<Ids>,
    ) -> Result<Staged>;
    /// Creates a private key file, 0600 from its first byte; never replaces
    /// one. It is made in `via`, a directory root's alone, and moved in.
    fn create_private_file(
        &self,
        target: &str,
        content: &[u8],
        ids: Option<Ids>,
        via: &str,
    ) -> Result<()>;
    fn create_dir(&self, target: &str, mode: u32, ids: Option<Ids>) -> Result<()>;
    /// Sets mode and (when given) owner, without following a symlink.
    fn set_meta(&self, target: &str, mode: u32, ids: Option<Ids>) -> Result<()>;
    /// Removes a directory and everything in it (a half-made backup).
    fn remove_tree(&self, target: &str) -> Result<()>;
    /// Removes what a killed run left in `dir`: temporary files, and entries
    /// named `prefix` or `prefix-…` (scratch directories).
    fn remove_debris(&self, dir: &str, prefix: Option<&str>) -> Result<()>;
    /// A private scratch directory in `dir`, removed when dropped.
    fn scratch(&self, dir: &str, prefix: &str) -> Result<Scratch>;
    /// Creates a directory and its missing parents, with the default mode.
    fn create_dirs(&self, target: &str) -> Result<()>;
    fn remove_file(&self, target: &str) -> Result<()>;
    /// Moves a file without ever replacing one at `to`.
    fn rename_noreplace(&self, from: &str, to: &str) -> Result<()>;
    /// Holds the apply lock until dropped; a second apply fails at once.
    fn lock(&self, target: &str) -> Result<Lock>;
    /// Runs a command; a non-zero exit is an error carrying its output.
    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput>;
    /// Installs Debian packages with apt, answering no question.
    fn install_packages(&self, packages: &[&str]) -> Result<()>;
    /// Reloads, restarts or starts a service.
    fn service(&self, service: Service, action: ServiceAction) -> Result<()>;
}

/// The real system, able only to look: what plan, dns and check get.
pub struct ReadOnly(System);

impl ReadOnly {
    pub fn new(root: &Path) -> Result<ReadOnly> {
        System::new(root).map(ReadOnly)
    }
}

impl Host for ReadOnly {
    fn root(&self) -> &Path {
        self.0.root()
    }
    fn is_live(&self) -> bool {
        self.0.is_live()
    }
    fn can_chown(&self) -> bool {
        self.0.can_chown()
    }
    fn own_uid(&self) -> u32 {
        self.0.own_uid()
    }
    fn path(&self, target: &str) -> PathBuf {
        self.0.path(target)
    }
    fn exists(&self, target: &str) -> Result<bool> {
        self.0.exists(target)
    }
    fn read_file(&self, target: &str) -> Result<Option<FileState>> {
        self.0.read_file(target)
    }
    fn file_meta(&self, target: &str) -> Result<Option<Meta>> {
        self.0.file_meta(target)
    }
    fn read_dir_meta(&self, target: &str) -> Result<Option<Meta>> {
        self.0.read_dir_meta(target)
    }
    fn list_dir(&self, target: &str) -> Result<Vec<Listed>> {
        self.0.list_dir(target)
    }
    fn read_secret(&self, target: &str, what: &str) -> Result<Option<Zeroizing<String>>> {
        self.0.read_secret(target, what)
    }
    fn accounts(&self) -> Result<Accounts> {
        self.0.accounts()
    }
    fn connect_unix(&self, target: &str) -> Result<()> {
        self.0.connect_unix(target)
    }
    fn find_program(&self, name: &str) -> Option<PathBuf> {
        self.0.find_program(name)
    }
    fn has_sasl_login_mechanisms(&self) -> bool {
        self.0.has_sasl_login_mechanisms()
    }
    fn service_running(&self, service: Service) -> bool {
        self.0.service_running(service)
    }
    fn open_log(&self, target: &str) -> Result<Option<Box<dyn std::io::BufRead>>> {
        self.0.open_log(target)
    }
    fn report_lines(&self, program: &str, args: &[&str], each: &mut dyn FnMut(&str)) -> Result<()> {
        self.0.report_lines(program, args, each)
    }
}
