//! The real system: files under the root prefix, the account database,
//! commands and services.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::keys::Zeroizing;
use anyhow::{Context, Result, bail};

use super::{Host, HostMut, Listed, Service};

/// A file as found on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    pub content: Vec<u8>,
    pub meta: Meta,
}

/// Mode and owner of a file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// User and group ids, resolved from names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// The target system's accounts, from its /etc/passwd and /etc/group.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    users: HashMap<String, u32>,
    groups: HashMap<String, (u32, Vec<String>)>,
}

impl Accounts {
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let fields = |line: &str| line.split(':').map(str::to_string).collect::<Vec<_>>();
        let users = passwd
            .lines()
            .map(fields)
            .filter_map(|f| Some((f.first()?.clone(), f.get(2)?.parse().ok()?)))
            .collect();
        let groups = group
            .lines()
            .map(fields)
            .filter_map(|f| {
                let members = f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Some((f.first()?.clone(), (f.get(2)?.parse().ok()?, members)))
            })
            .collect();
        Accounts { users, groups }
    }

    pub fn ids(&self, user: &str, group: &str) -> Option<Ids> {
        Some(Ids {
            uid: *self.users.get(user)?,
            gid: self.groups.get(group)?.0,
        })
    }

    /// Whether `user` is listed as a supplementary member of `group`.
    pub fn is_member(&self, user: &str, group: &str) -> Option<bool> {
        self.users.get(user)?;
        Some(self.groups.get(group)?.1.iter().any(|m| m == user))
    }
}

/// What to do to a running service.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceAction {
    Reload,
    Restart,
    /// Enable and start (after a fresh install); restart when already running.
    Start,
}

/// The apply lock, held until dropped. Functions that must run under it take
/// a `&Lock`, so they cannot be called without it.
pub struct Lock {
    /// Released when dropped.
    _held: nix::fcntl::Flock<fs::File>,
}

/// Access to one target system: `/` or a tree under `--root`.
pub struct System {
    root: PathBuf,
    /// Directories already found to be real directories (no symlink on the way).
    checked: std::cell::RefCell<std::collections::HashSet<PathBuf>>,
}

impl System {
    pub fn new(root: &Path) -> Result<System> {
        let root = fs::canonicalize(root)
            .with_context(|| format!("open the root directory {}", root.display()))?;
        if !root.is_dir() {
            bail!("the root {} is not a directory", root.display());
        }
        Ok(System {
            root,
            checked: Default::default(),
        })
    }

    /// The host path of a target path that is read or written: a plain absolute
    /// path (no `.`, `..` or empty parts) under the root, none of whose existing
    /// directories is a symlink, so nothing is read or written outside the tree.
    fn resolve(&self, target: &str) -> Result<PathBuf> {
        let plain = target.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'))
        });
        if !plain {
            bail!("{target:?} is not a plain absolute path; mailsetup will not use it");
        }
        let path = self.path(target);
        let mut dir = path.parent().expect("target has a parent").to_path_buf();
        let mut chain = Vec::new();
        while dir != self.root && !self.checked.borrow().contains(&dir) {
            chain.push(dir.clone());
            if !dir.pop() {
                break;
            }
        }
        for dir in chain.into_iter().rev() {
            match self.lstat(&dir)? {
                Some(m) if m.file_type().is_symlink() => bail!(
                    "{} is a symlink; mailsetup will not write through it (it could lead \
                     outside {})",
                    dir.display(),
                    self.root.display()
                ),
                Some(m) if !m.is_dir() => bail!("{} is not a directory", dir.display()),
                // What does not exist yet is checked again once it does.
                None => return Ok(path),
                Some(_) => {
                    self.checked.borrow_mut().insert(dir);
                }
            }
        }
        Ok(path)
    }

    fn lstat(&self, path: &Path) -> Result<Option<fs::Metadata>> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("inspect {}", path.display())),
        }
    }

    /// `run` with extra environment variables and text on standard input.
    fn run_with(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&str>,
    ) -> Result<CommandOutput> {
        let exe = self
            .find_program(program)
            .with_context(|| format!("{program} is not installed"))?;
        let mut child = Command::new(&exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(if input.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", exe.display()))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .with_context(|| format!("write to {}", exe.display()))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("run {}", exe.display()))?;
        let result = CommandOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !result.success {
            bail!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                result.stderr.trim()
            );
        }
        Ok(result)
    }

    fn systemd(&self) -> bool {
        Path::new("/run/systemd/system").is_dir()
    }
}

impl Host for System {
    fn root(&self) -> &Path {
        &self.root
    }

    /// The running system itself, where services and accounts are managed.
    fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Only root can give files to other users; without it ownership is left alone.
    fn can_chown(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// The host path of a target path (`/etc/x` → `ROOT/etc/x`).
    fn path(&self, target: &str) -> PathBuf {
        debug_assert!(target.starts_with('/') && !target.split('/').any(|p| p == ".."));
        self.root.join(target.trim_start_matches('/'))
    }

    fn exists(&self, target: &str) -> Result<bool> {
        Ok(self.lstat(&self.resolve(target)?)?.is_some())
    }

    /// A managed file; a symlink or anything but a regular file is refused, since
    /// writing through it would change a file mailsetup does not manage.
    fn read_file(&self, target: &str) -> Result<Option<FileState>> {
        let path = self.resolve(target)?;
        let Some(meta) = self.lstat(&path)? else {
            return Ok(None);
        };
        if !meta.file_type().is_file() {
            bail!(
                "{} is not a regular file (a symlink or other kind); mailsetup will not write through it — remove it or replace it with a plain file",
                path.display()
            );
        }
        let content = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        Ok(Some(FileState {
            content,
            meta: to_meta(&meta),
        }))
    }

    /// A managed directory; a symlink in its place is refused.
    fn read_dir_meta(&self, target: &str) -> Result<Option<Meta>> {
        let path = self.resolve(target)?;
        let Some(meta) = self.lstat(&path)? else {
            return Ok(None);
        };
        if !meta.file_type().is_dir() {
            bail!(
                "{} is not a directory (a symlink or other kind); mailsetup will not follow it",
                path.display()
            );
        }
        Ok(Some(to_meta(&meta)))
    }

    fn list_dir(&self, target: &str) -> Result<Vec<Listed>> {
        if self.read_dir_meta(target)?.is_none() {
            return Ok(Vec::new());
        }
        let path = self.path(target);
        let mut entries = fs::read_dir(&path)
            .and_then(|entries| {
                entries
                    .map(|e| {
                        let e = e?;
                        Ok(Listed {
                            name: e.file_name().to_string_lossy().into_owned(),
                            is_dir: e.file_type()?.is_dir(),
                        })
                    })
                    .collect::<std::io::Result<Vec<Listed>>>()
            })
            .with_context(|| format!("list {}", path.display()))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// A secret file (the relay password, a TSIG key). It must be a plain file
    /// readable by its owner only, and that owner root when mailsetup runs as
    /// root: otherwise a spec could have any file (/etc/shadow, say) sent to a
    /// server of its choosing, or the secret was never private. `what` names
    /// it in errors. `None` when the file does not exist (yet).
    fn read_secret(&self, target: &str, what: &str) -> Result<Option<Zeroizing<String>>> {
        let path = self.resolve(target)?;
        let Some(meta) = self.lstat(&path)? else {
            return Ok(None);
        };
        if !meta.is_file() {
            bail!("the {what} {} is not a plain file", path.display());
        }
        if meta.mode() & 0o077 != 0 {
            bail!(
                "the {what} {} is readable by others (mode {:04o}): chmod 600 it",
                path.display(),
                meta.mode() & 0o7777
            );
        }
        if self.can_chown() && meta.uid() != 0 {
            bail!(
                "the {what} {} belongs to uid {}, not root: chown root it",
                path.display(),
                meta.uid()
            );
        }
        fs::read_to_string(&path)
            .map(|text| Some(Zeroizing::new(text)))
            .with_context(|| format!("read the {what} {}", path.display()))
    }

    /// The target's accounts; a tree without its own /etc/passwd (a staging
    /// directory) uses the running system's.
    fn accounts(&self) -> Result<Accounts> {
        let base = if self.path("/etc/passwd").exists() {
            self.root.clone()
        } else {
            PathBuf::from("/")
        };
        let read = |name: &str| -> Result<String> {
            let path = base.join(name.trim_start_matches('/'));
            match fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
            }
        };
        Ok(Accounts::parse(&read("/etc/passwd")?, &read("/etc/group")?))
    }

    /// Whether something accepts connections on a Unix socket (the milter's).
    fn connect_unix(&self, target: &str) -> Result<()> {
        let path = self.path(target);
        std::os::unix::net::UnixStream::connect(&path)
            .map(drop)
            .with_context(|| format!("connect to {}", path.display()))
    }

    /// Whether a program is installed (searched in PATH and the sbin directories).
    fn find_program(&self, name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    /// Whether Cyrus SASL's PLAIN/LOGIN plugins (libsasl2-modules) are installed,
    /// which Postfix needs to log in to a relay.
    fn has_sasl_login_mechanisms(&self) -> bool {
        let Ok(dirs) = fs::read_dir("/usr/lib") else {
            return false;
        };
        dirs.filter_map(|d| d.ok())
            .map(|d| d.path().join("sasl2"))
            .chain([PathBuf::from("/usr/lib/sasl2")])
            .any(|dir| {
                fs::read_dir(dir).is_ok_and(|mut files| {
                    files.any(|f| {
                        f.is_ok_and(|f| {
                            let name = f.file_name();
                            let name = name.to_string_lossy();
                            name.starts_with("libplain.so") || name.starts_with("liblogin.so")
                        })
                    })
                })
            })
    }

    /// Whether a service is running on the live system.
    fn service_running(&self, service: Service) -> bool {
        if self.systemd() {
            return self
                .run(
                    "systemctl",
                    &["is-active", "--quiet", service_unit(service)],
                )
                .is_ok();
        }
        match service {
            Service::Postfix => self.run("postfix", &["status"]).is_ok(),
            Service::Opendkim => fs::read_to_string(super::OPENDKIM_PID)
                .ok()
                .and_then(|pid| pid.trim().parse::<i32>().ok())
                .is_some_and(|pid| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                }),
        }
    }
}

impl HostMut for System {
    /// Replaces a file atomically: a temporary file in the same directory gets the
    /// content, mode and owner, is synced, then renamed over the target.
    fn write_file(&self, target: &str, content: &[u8], mode: u32, ids: Option<Ids>) -> Result<()> {
        let path = self.resolve(target)?;
        let dir = path.parent().expect("target has a parent");
        let mut tmp = tempfile::Builder::new()
            .prefix(".mailsetup-")
            .tempfile_in(dir)
            .with_context(|| format!("create a temporary file in {}", dir.display()))?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("set the mode of {}", tmp.path().display()))?;
        if let Some(ids) = ids {
            std::os::unix::fs::fchown(tmp.as_file(), Some(ids.uid), Some(ids.gid))
                .with_context(|| format!("set the owner of {}", tmp.path().display()))?;
        }
        tmp.write_all(content)
            .and_then(|_| tmp.as_file().sync_all())
            .with_context(|| format!("write {}", tmp.path().display()))?;
        tmp.persist(&path)
            .with_context(|| format!("rename into {}", path.display()))?;
        sync_dir(dir)
    }

    /// Creates a private key file that is 0600 from its first byte and never
    /// replaces an existing key.
    fn create_private_file(&self, target: &str, content: &[u8], ids: Option<Ids>) -> Result<()> {
        let path = self.resolve(target)?;
        let dir = path.parent().expect("target has a parent");
        let tmp = dir.join(format!(
            ".mailsetup-new-{}-{}",
            std::process::id(),
            path.file_name().expect("file name").to_string_lossy()
        ));
        let result = (|| -> Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("create {}", tmp.display()))?;
            if let Some(ids) = ids {
                std::os::unix::fs::fchown(&file, Some(ids.uid), Some(ids.gid))
                    .with_context(|| format!("set the owner of {}", tmp.display()))?;
            }
            file.write_all(content)
                .and_then(|_| file.sync_all())
                .with_context(|| format!("write {}", tmp.display()))?;
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &path,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .with_context(|| format!("move the new key into place at {}", path.display()))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn create_dir(&self, target: &str, mode: u32, ids: Option<Ids>) -> Result<()> {
        let path = self.resolve(target)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("create the directory {}", parent.display()))?;
        }
        fs::DirBuilder::new()
            .mode(mode)
            .create(&path)
            .with_context(|| format!("create the directory {}", path.display()))?;
        self.set_meta(target, mode, ids)
    }

    /// Sets mode and (when given) owner, without following a symlink.
    fn set_meta(&self, target: &str, mode: u32, ids: Option<Ids>) -> Result<()> {
        let path = self.resolve(target)?;
        if let Some(ids) = ids {
            std::os::unix::fs::lchown(&path, Some(ids.uid), Some(ids.gid))
                .with_context(|| format!("set the owner of {}", path.display()))?;
        }
        if self
            .lstat(&path)?
            .is_some_and(|m| m.file_type().is_symlink())
        {
            bail!("{} is a symlink; not changing it", path.display());
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("set the mode of {}", path.display()))
    }

    fn date_back(&self, target: &str) -> Result<()> {
        date_back(&self.resolve(target)?, 2)
    }

    /// Removes a directory and everything in it (a half-made backup).
    fn remove_tree(&self, target: &str) -> Result<()> {
        let path = self.resolve(target)?;
        removed(fs::remove_dir_all(&path), &path)
    }

    /// Removes what a killed run left in `dir`: entries named `prefix` or
    /// `prefix-…`. Only call it holding the apply lock.
    fn remove_debris(&self, dir: &str, prefix: &str) -> Result<()> {
        let path = self.resolve(&format!("{dir}/{prefix}"))?;
        let parent = path.parent().expect("has a parent");
        let Ok(entries) = fs::read_dir(parent) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == prefix || name.starts_with(&format!("{prefix}-")) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    fn scratch(&self, dir: &str, prefix: &str) -> Result<Scratch> {
        let parent = self.resolve(&format!("{dir}/x"))?;
        let parent = parent.parent().expect("has a parent");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map(|dir| Scratch { dir })
            .with_context(|| format!("create a temporary directory in {}", parent.display()))
    }

    fn create_dirs(&self, target: &str) -> Result<()> {
        let path = self.resolve(target)?;
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))
    }

    fn remove_file(&self, target: &str) -> Result<()> {
        let path = self.resolve(target)?;
        removed(fs::remove_file(&path), &path)
    }

    /// Moves a file (a retired DKIM key into its archive) without ever replacing
    /// one already at `to`; both directories are synced.
    fn rename_noreplace(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.resolve(from)?, self.resolve(to)?);
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &src,
            nix::fcntl::AT_FDCWD,
            &dst,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .with_context(|| format!("move {} to {}", src.display(), dst.display()))?;
        sync_dir(dst.parent().expect("target has a parent"))?;
        sync_dir(src.parent().expect("target has a parent"))
    }

    /// Holds the apply lock until dropped; a second apply fails at once.
    fn lock(&self, target: &str) -> Result<Lock> {
        let path = self.path(target);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("open the lock file {}", path.display()))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map(|held| Lock { _held: held })
            .map_err(|(_, errno)| {
                anyhow::anyhow!(
                    "another mailsetup is changing this system (lock {} is held): {errno}",
                    path.display()
                )
            })
    }

    /// Runs a command; a non-zero exit is an error carrying its output.
    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput> {
        self.run_with(program, args, &[], None)
    }

    /// Installs Debian packages with apt, answering no question: Postfix's
    /// debconf question is preseeded to "No configuration" (mailsetup writes
    /// main.cf), no recommends, existing configuration files kept. Waits up to
    /// two minutes for another package manager's lock; the package lists are
    /// refreshed once when a package is not found.
    fn install_packages(&self, packages: &[&str]) -> Result<()> {
        self.run_with(
            "debconf-set-selections",
            &[],
            &[],
            Some("postfix postfix/main_mailer_type select No configuration\n"),
        )?;
        let env = [("DEBIAN_FRONTEND", "noninteractive")];
        let mut args = vec![
            "-q",
            "-y",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=120",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "install",
        ];
        args.extend_from_slice(packages);
        let install = || self.run_with("apt-get", &args, &env, None);
        let explain = |e: anyhow::Error| {
            let text = format!("{e:#}");
            let why = if text.contains("Could not get lock") {
                "another package manager holds the dpkg lock (apt says which process above); \
                 waited 2 minutes"
            } else if text.contains("Temporary failure resolving")
                || text.contains("Failed to fetch")
                || text.contains("Could not connect")
            {
                "apt could not reach the package mirror"
            } else if text.contains("held") {
                "a package is held (apt-mark showhold)"
            } else {
                "apt failed"
            };
            e.context(format!(
                "install {}: {why}; install them by hand, or set host.install_packages: false \
                 (--no-install-packages) where packages are managed elsewhere",
                packages.join(" ")
            ))
        };
        match install() {
            Ok(_) => Ok(()),
            Err(e) if format!("{e:#}").contains("Unable to locate package") => {
                self.run_with("apt-get", &["-q", "update"], &env, None)
                    .map_err(explain)?;
                install().map(drop).map_err(explain)
            }
            Err(e) => Err(explain(e)),
        }
    }

    /// Reloads or restarts a service with systemd when it is PID 1, else with the
    /// daemons' own tools and init scripts.
    fn service(&self, service: Service, action: ServiceAction) -> Result<()> {
        let unit = service_unit(service);
        if self.systemd() {
            let args: &[&str] = match action {
                ServiceAction::Reload => &["reload", unit],
                ServiceAction::Restart => &["restart", unit],
                ServiceAction::Start => &["enable", "--now", unit],
            };
            return self.run("systemctl", args).map(drop);
        }
        match (service, action) {
            (Service::Postfix, ServiceAction::Start) => self.run("postfix", &["start"]).map(drop),
            (Service::Opendkim, ServiceAction::Start) => {
                self.run("/etc/init.d/opendkim", &["start"]).map(drop)
            }
            (Service::Postfix, ServiceAction::Reload) => self.run("postfix", &["reload"]).map(drop),
            (Service::Postfix, ServiceAction::Restart) => {
                self.run("postfix", &["stop"])?;
                self.run("postfix", &["start"]).map(drop)
            }
            (Service::Opendkim, ServiceAction::Reload) => {
                self.run("/etc/init.d/opendkim", &["reload"]).map(drop)
            }
            (Service::Opendkim, ServiceAction::Restart) => {
                self.run("/etc/init.d/opendkim", &["restart"]).map(drop)
            }
        }
    }
}

fn service_unit(service: Service) -> &'static str {
    match service {
        Service::Postfix => "postfix",
        Service::Opendkim => "opendkim",
    }
}

/// A private scratch directory on the host, removed when dropped: the staged
/// configuration the daemons check, an empty main.cf for Postfix's map tools.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` at `rel` inside, dated 10 s back: Postfix waits until
    /// a just-modified main.cf is a second old, and a copy can be dated instead.
    pub fn put(&self, rel: &str, content: &[u8]) -> Result<()> {
        let file = self.dir.path().join(rel.trim_start_matches('/'));
        fs::create_dir_all(file.parent().expect("parent"))
            .with_context(|| format!("create {}", file.display()))?;
        fs::write(&file, content).with_context(|| format!("write {}", file.display()))?;
        date_back(&file, 10)
    }
}

/// A removal's result: what is gone already counts as removed.
fn removed(result: std::io::Result<()>, path: &Path) -> Result<()> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Dates a file `secs` seconds back unless it is older; a missing file is left be.
fn date_back(path: &Path, secs: u64) -> Result<()> {
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    let file = match fs::File::options().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    if file.metadata()?.modified()? > past {
        file.set_modified(past)
            .with_context(|| format!("date {}", path.display()))?;
    }
    Ok(())
}

pub struct CommandOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn to_meta(m: &fs::Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync the directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_ids_and_members() {
        let a = Accounts::parse(
            "root:x:0:0:root:/root:/bin/bash\npostfix:x:101:104::/var/spool/postfix:/usr/sbin/nologin\nopendkim:x:102:105::/run/opendkim:/usr/sbin/nologin\n",
            "root:x:0:\npostfix:x:104:\nopendkim:x:105:postfix,other\n",
        );
        assert_eq!(
            a.ids("opendkim", "opendkim"),
            Some(Ids { uid: 102, gid: 105 })
        );
        assert_eq!(a.ids("nobody", "root"), None);
        assert_eq!(a.is_member("postfix", "opendkim"), Some(true));
        assert_eq!(a.is_member("root", "opendkim"), Some(false));
        assert_eq!(a.is_member("ghost", "opendkim"), None);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let sys = System::new(root.path()).unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("etc/mailname")).unwrap();
        let e = sys.read_file("/etc/mailname").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn private_files_are_0600_and_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let sys = System::new(root.path()).unwrap();
        sys.create_private_file("/k.private", b"secret", None)
            .unwrap();
        let meta = fs::metadata(root.path().join("k.private")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            sys.create_private_file("/k.private", b"other", None)
                .is_err()
        );
        assert_eq!(fs::read(root.path().join("k.private")).unwrap(), b"secret");
        let leftovers: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn unix_sockets_connect_only_when_someone_listens() {
        let root = tempfile::tempdir().unwrap();
        let sys = System::new(root.path()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(root.path().join("s.sock")).unwrap();
        sys.connect_unix("/s.sock").unwrap();
        let e = sys.connect_unix("/none.sock").unwrap_err();
        assert!(format!("{e:#}").contains("none.sock"), "{e:#}");
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let root = tempfile::tempdir().unwrap();
        let sys = System::new(root.path()).unwrap();
        sys.write_file("/f", b"one", 0o640, None).unwrap();
        sys.write_file("/f", b"two", 0o644, None).unwrap();
        let state = sys.read_file("/f").unwrap().unwrap();
        assert_eq!(state.content, b"two");
        assert_eq!(state.meta.mode, 0o644);
    }
}
