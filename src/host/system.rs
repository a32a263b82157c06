//! The real system: files under the root prefix, the account database,
//! commands and services.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::keys::Zeroizing;
use anyhow::{Context, Result, bail};

use super::beneath::{self, Dir, Kind, Stat};
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

impl Ids {
    fn pair(self) -> (u32, u32) {
        (self.uid, self.gid)
    }
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
    /// Stop (a rollback past the apply that first configured the daemons).
    Stop,
}

/// The apply lock, held until dropped. Functions that must run under it take
/// a `&Lock`, so they cannot be called without it.
pub struct Lock {
    /// Released when dropped.
    _held: nix::fcntl::Flock<fs::File>,
}

/// No managed file comes near this (100,000 aliases: a few MiB).
const MAX_MANAGED: u64 = 256 << 20;
/// Nor any secret file: a password or TSIG key is one line.
const MAX_SECRET: u64 = 64 << 10;

/// Access to one target system: `/` or a tree under `--root`, every path
/// reached beneath the handle of its root (see `beneath`).
pub struct System {
    root: Dir,
}

impl System {
    pub fn new(root: &Path) -> Result<System> {
        let root = Dir::open(root).context("open the root directory")?;
        Ok(System { root })
    }

    /// A target path (`/etc/x`) as a path beneath the root (`etc/x`): plain
    /// and absolute (no `.`, `..` or empty parts), else refused.
    fn rel<'a>(&self, target: &'a str) -> Result<&'a str> {
        let rel = target.strip_prefix('/').filter(|rest| {
            rest.split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'))
        });
        rel.with_context(|| {
            format!("{target:?} is not a plain absolute path; mailsetup will not use it")
        })
    }

    /// The directory holding `target`, which must exist, and the name in it.
    fn parent<'a>(&self, target: &'a str) -> Result<(Dir, &'a str)> {
        let rel = self.rel(target)?;
        self.root.parent(rel)?.with_context(|| {
            format!(
                "the directory of {} does not exist",
                self.path(target).display()
            )
        })
    }

    /// A directory this process's user alone can write, to make files in
    /// before they move somewhere others can see.
    fn private_dir(&self, target: &str) -> Result<Dir> {
        let dir = self
            .root
            .open_dir(self.rel(target)?)?
            .with_context(|| format!("{} does not exist", self.path(target).display()))?;
        let stat = dir.stat_self()?;
        if stat.uid != nix::unistd::geteuid().as_raw() || stat.mode & 0o077 != 0 {
            bail!(
                "{} must be this user's alone (mode 0700) to make private files in",
                dir.path().display()
            );
        }
        Ok(dir)
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
        self.root.path()
    }

    /// The running system itself, where services and accounts are managed.
    fn is_live(&self) -> bool {
        self.root.path() == Path::new("/")
    }

    /// Only root can give files to other users; without it ownership is left alone.
    fn can_chown(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn own_uid(&self) -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// The host path of a target path (`/etc/x` → `ROOT/etc/x`).
    fn path(&self, target: &str) -> PathBuf {
        debug_assert!(target.starts_with('/') && !target.split('/').any(|p| p == ".."));
        self.root.show(target.trim_start_matches('/'))
    }

    fn exists(&self, target: &str) -> Result<bool> {
        Ok(self.root.stat(self.rel(target)?)?.is_some())
    }

    /// A managed file; a symlink or anything but a regular file is refused, since
    /// writing through it would change a file mailsetup does not manage.
    fn read_file(&self, target: &str) -> Result<Option<FileState>> {
        let rel = self.rel(target)?;
        let Some((file, stat)) = self.root.open_file(rel)? else {
            return Ok(None);
        };
        if stat.kind != Kind::File {
            bail!(
                "{} is not a regular file (a directory, FIFO or other kind); mailsetup will not \
                 write through it — remove it or replace it with a plain file",
                self.path(target).display()
            );
        }
        let content = beneath::read_regular(file, &stat, MAX_MANAGED, &self.path(target), "")?;
        Ok(Some(FileState {
            content,
            meta: to_meta(&stat),
        }))
    }

    fn file_meta(&self, target: &str) -> Result<Option<Meta>> {
        match self.root.stat(self.rel(target)?)? {
            None => Ok(None),
            Some(s) if s.kind == Kind::File => Ok(Some(to_meta(&s))),
            Some(s) if s.kind == Kind::Symlink => bail!(
                "{} is a symlink; mailsetup will not write through it (it could lead anywhere) \
                 — remove it",
                self.path(target).display()
            ),
            Some(_) => bail!(
                "{} is not a regular file (a symlink or other kind); mailsetup will not write \
                 through it — remove it",
                self.path(target).display()
            ),
        }
    }

    /// A managed directory; a symlink in its place is refused.
    fn read_dir_meta(&self, target: &str) -> Result<Option<Meta>> {
        match self.root.open_dir(self.rel(target)?)? {
            None => Ok(None),
            Some(dir) => Ok(Some(to_meta(&dir.stat_self()?))),
        }
    }

    fn list_dir(&self, target: &str) -> Result<Vec<Listed>> {
        let Some(dir) = self.root.open_dir(self.rel(target)?)? else {
            return Ok(Vec::new());
        };
        Ok(dir
            .entries()?
            .into_iter()
            .map(|e| Listed {
                is_dir: e.kind == Kind::Dir,
                name: e.name,
            })
            .collect())
    }

    /// A secret file (the relay password, a TSIG key). It must be a plain file
    /// readable by its owner only, and that owner root when mailsetup runs as
    /// root: otherwise a spec could have any file (/etc/shadow, say) sent to a
    /// server of its choosing, or the secret was never private. Checked on the
    /// open file, which is then read (64 KiB at most). `what` names it in
    /// errors. `None` when the file does not exist (yet).
    fn read_secret(&self, target: &str, what: &str) -> Result<Option<Zeroizing<String>>> {
        let path = self.path(target);
        let Some((file, stat)) = self.root.open_file(self.rel(target)?)? else {
            return Ok(None);
        };
        if stat.kind != Kind::File {
            bail!("the {what} {} is not a plain file", path.display());
        }
        if stat.mode & 0o077 != 0 {
            bail!(
                "the {what} {} is readable by others (mode {:04o}): chmod 600 it",
                path.display(),
                stat.mode
            );
        }
        if self.can_chown() && stat.uid != 0 {
            bail!(
                "the {what} {} belongs to uid {}, not root: chown root it",
                path.display(),
                stat.uid
            );
        }
        let bytes = Zeroizing::new(beneath::read_regular(
            file,
            &stat,
            MAX_SECRET,
            &path,
            &format!("the {what}"),
        )?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("the {what} {} is not UTF-8 text", path.display()))?;
        Ok(Some(Zeroizing::new(text.to_string())))
    }

    /// The target's accounts; a tree without its own /etc/passwd (a staging
    /// directory) uses the running system's.
    fn accounts(&self) -> Result<Accounts> {
        let own = self.root.stat("etc/passwd")?.is_some();
        let base = if own {
            Dir::open(self.root.path())?
        } else {
            Dir::open(Path::new("/"))?
        };
        let read = |rel: &str| -> Result<String> {
            Ok(base
                .read(rel, MAX_MANAGED, "the account database")?
                .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default())
        };
        Ok(Accounts::parse(&read("etc/passwd")?, &read("etc/group")?))
    }

    /// Whether something accepts connections on a Unix socket (the milter's),
    /// reached through the handle of its directory.
    fn connect_unix(&self, target: &str) -> Result<()> {
        let path = self.path(target);
        let (dir, name) = self.parent(target)?;
        let via = format!(
            "/proc/self/fd/{}/{name}",
            std::os::fd::AsRawFd::as_raw_fd(&dir.as_fd())
        );
        std::os::unix::net::UnixStream::connect(via)
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

    fn open_log(&self, target: &str) -> Result<Option<Box<dyn std::io::BufRead>>> {
        self.open_log_file(target)
    }

    fn report_lines(&self, program: &str, args: &[&str], each: &mut dyn FnMut(&str)) -> Result<()> {
        self.stream_command(program, args, each)
    }

    /// Whether a service is running on the live system: Postfix by its own
    /// `postfix status` (Debian 12's postfix.service is a wrapper that says
    /// "active" whatever its instance does), OpenDKIM by its unit under
    /// systemd, else by its PID file.
    fn service_running(&self, service: Service) -> bool {
        match service {
            Service::Postfix => self.run("postfix", &["status"]).is_ok(),
            Service::Opendkim if self.systemd() => self
                .run(
                    "systemctl",
                    &["is-active", "--quiet", service_unit(service)],
                )
                .is_ok(),
            // Its directory is opendkim's: read beneath a handle, small, never
            // a FIFO someone planted to hang us.
            Service::Opendkim => Dir::open(Path::new("/"))
                .and_then(|top| top.read(super::OPENDKIM_PID.trim_start_matches('/'), 64, ""))
                .ok()
                .flatten()
                .and_then(|(pid, _)| String::from_utf8_lossy(&pid).trim().parse::<i32>().ok())
                .is_some_and(|pid| {
                    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                }),
        }
    }
}

impl System {
    fn open_log_file(&self, target: &str) -> Result<Option<Box<dyn std::io::BufRead>>> {
        let Some((file, stat)) = self.root.open_file(self.rel(target)?)? else {
            return Ok(None);
        };
        if stat.kind != Kind::File {
            bail!(
                "the log {} is not a plain file",
                self.path(target).display()
            );
        }
        Ok(Some(Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            file,
        ))))
    }

    fn stream_command(
        &self,
        program: &str,
        args: &[&str],
        each: &mut dyn FnMut(&str),
    ) -> Result<()> {
        use std::io::BufRead;
        let exe = self
            .find_program(program)
            .with_context(|| format!("{program} is not installed"))?;
        let mut child = Command::new(&exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut reader = std::io::BufReader::with_capacity(1 << 16, stdout);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .with_context(|| format!("read what {program} prints"))?;
            if n == 0 {
                break;
            }
            each(line.trim_end_matches('\n'));
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("run {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl HostMut for System {
    /// Replaces a file atomically: a temporary file in the same directory gets the
    /// content, mode and owner, is synced, then renamed over the target.
    fn write_file(&self, target: &str, content: &[u8], mode: u32, ids: Option<Ids>) -> Result<()> {
        let (dir, name) = self.parent(target)?;
        dir.write_atomic(name, content, mode, ids.map(Ids::pair))
    }

    fn stage_file(
        &self,
        target: &str,
        content: &[u8],
        mode: u32,
        ids: Option<Ids>,
    ) -> Result<beneath::Staged> {
        let (dir, name) = self.parent(target)?;
        dir.stage(name, content, mode, ids.map(Ids::pair))
    }

    /// Creates a private key file, 0600 and its owner's from the first byte,
    /// never replacing one: made in `via` (root's alone) and moved in with
    /// one rename, so the key directory's owner never sees it half made.
    fn create_private_file(
        &self,
        target: &str,
        content: &[u8],
        ids: Option<Ids>,
        via: &str,
    ) -> Result<()> {
        let via = self.private_dir(via)?;
        let (dir, name) = self.parent(target)?;
        dir.place_new(name, content, 0o600, ids.map(Ids::pair), Some(&via))
    }

    fn create_dir(&self, target: &str, mode: u32, ids: Option<Ids>) -> Result<()> {
        let rel = self.rel(target)?;
        let (parent, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => (self.root.mkdirs(parent)?, name),
            None => (Dir::open(self.root.path())?, rel),
        };
        parent.mkdir(name, mode, ids.map(Ids::pair)).map(drop)
    }

    /// Sets mode and (when given) owner on the file's own handle: a symlink,
    /// or a file with other hard links, is refused.
    fn set_meta(&self, target: &str, mode: u32, ids: Option<Ids>) -> Result<()> {
        let (dir, name) = self.parent(target)?;
        dir.set_meta_at(name, mode, ids.map(Ids::pair))
    }

    /// Removes a directory and everything in it (a half-made backup).
    fn remove_tree(&self, target: &str) -> Result<()> {
        let (dir, name) = self.parent(target)?;
        dir.remove_tree(name)
    }

    /// Removes what a killed run left in `dir`: entries named `prefix` or
    /// `prefix-…`, and temporary files (`.NAME.mailsetup-new-…`). Only call it
    /// holding the apply lock.
    fn remove_debris(&self, dir: &str, prefix: Option<&str>) -> Result<()> {
        let Some(handle) = self.root.open_dir(self.rel(dir)?)? else {
            return Ok(());
        };
        for entry in handle.entries()? {
            let name = &entry.name;
            let scratch = prefix.is_some_and(|p| name == p || name.starts_with(&format!("{p}-")));
            if scratch || name.contains(beneath::TEMP_MARK) {
                handle.remove_tree(name)?;
            }
        }
        Ok(())
    }

    fn scratch(&self, dir: &str, prefix: &str) -> Result<Scratch> {
        let parent = self.private_dir(dir)?;
        let name = beneath::temp_name(prefix)
            .trim_start_matches('.')
            .replace(beneath::TEMP_MARK, "-");
        let dir = parent.mkdir(&name, 0o700, None)?;
        Ok(Scratch { dir, parent, name })
    }

    fn create_dirs(&self, target: &str) -> Result<()> {
        self.root.mkdirs(self.rel(target)?).map(drop)
    }

    fn remove_file(&self, target: &str) -> Result<()> {
        let rel = self.rel(target)?;
        // What is gone already, its directory too, counts as removed.
        match self.root.parent(rel)? {
            Some((dir, name)) => dir.unlink(name).map(drop),
            None => Ok(()),
        }
    }

    /// Moves a file (a retired DKIM key into its archive, and back) without
    /// ever replacing one at `to`; both directories are synced. Across
    /// filesystems the file is copied (mode and owner kept), then removed.
    fn rename_noreplace(&self, from: &str, to: &str) -> Result<()> {
        let (src, src_name) = self.parent(from)?;
        let (dst, dst_name) = self.parent(to)?;
        let (shown_from, shown_to) = (self.path(from), self.path(to));
        match src.rename(src_name, &dst, dst_name, true) {
            Ok(()) => {}
            Err(nix::errno::Errno::EXDEV) => {
                let (content, stat) = src
                    .read(src_name, MAX_MANAGED, "")?
                    .with_context(|| format!("{} vanished", shown_from.display()))?;
                let ids = self.can_chown().then_some((stat.uid, stat.gid));
                dst.place_new(dst_name, &content, stat.mode, ids, None)?;
                src.unlink(src_name)?;
            }
            Err(nix::errno::Errno::EEXIST) => bail!(
                "move {} to {}: something is there already; mailsetup never replaces it",
                shown_from.display(),
                shown_to.display()
            ),
            Err(e) => {
                return Err(anyhow::anyhow!(e).context(format!(
                    "move {} to {}",
                    shown_from.display(),
                    shown_to.display()
                )));
            }
        }
        dst.sync()?;
        src.sync()
    }

    /// Holds the apply lock until dropped; a second apply fails at once.
    fn lock(&self, target: &str) -> Result<Lock> {
        let path = self.path(target);
        let (dir, name) = self.parent(target)?;
        let file = dir
            .open_or_create(name, 0o600)
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
                ServiceAction::Stop => &["stop", unit],
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
            (Service::Postfix, ServiceAction::Stop) => self.run("postfix", &["stop"]).map(drop),
            (Service::Opendkim, ServiceAction::Stop) => {
                self.run("/etc/init.d/opendkim", &["stop"]).map(drop)
            }
        }
    }
}

fn service_unit(service: Service) -> &'static str {
    service.name()
}

/// A private scratch directory on the host (root's alone, in the state
/// directory), removed when dropped: the staged configuration the daemons
/// check, the map databases Postfix's tools build.
pub struct Scratch {
    dir: Dir,
    parent: Dir,
    name: String,
}

impl Scratch {
    /// Its host path, for the daemons' own tools.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` at `rel` inside, dated 10 s back: Postfix waits until
    /// a just-modified main.cf is a second old, and a copy can be dated instead.
    pub fn put(&self, rel: &str, content: &[u8]) -> Result<()> {
        let rel = rel.trim_start_matches('/');
        let (dir, name) = match rel.rsplit_once('/') {
            Some((dir, name)) => (self.dir.mkdirs(dir)?, name),
            None => (self.dir.mkdirs("")?, rel),
        };
        dir.write_atomic(name, content, 0o600, None)?;
        let (file, _) = dir.open_file(name)?.context("a file just written")?;
        date_back(&file, 10).with_context(|| format!("date {}", dir.show(name).display()))
    }

    /// The file at `rel` inside, as a tool left it.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .dir
            .read(rel.trim_start_matches('/'), MAX_MANAGED, "")?
            .map(|(bytes, _)| bytes))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.parent.remove_tree(&self.name);
    }
}

/// Dates an open file `secs` seconds back unless it is older.
fn date_back(file: &fs::File, secs: u64) -> std::io::Result<()> {
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    if file.metadata()?.modified()? > past {
        file.set_modified(past)?;
    }
    Ok(())
}

pub struct CommandOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn to_meta(s: &Stat) -> Meta {
    Meta {
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
        assert!(e.contains("is a symlink"), "{e}");
    }

    #[test]
    fn private_files_are_0600_and_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let sys = System::new(root.path()).unwrap();
        std::fs::create_dir(root.path().join("private")).unwrap();
        std::fs::set_permissions(
            root.path().join("private"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        sys.create_private_file("/k.private", b"secret", None, "/private")
            .unwrap();
        let meta = fs::metadata(root.path().join("k.private")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            sys.create_private_file("/k.private", b"other", None, "/private")
                .is_err()
        );
        assert_eq!(fs::read(root.path().join("k.private")).unwrap(), b"secret");
        let leftovers: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "temporary file left behind");
        assert_eq!(
            fs::read_dir(root.path().join("private")).unwrap().count(),
            0
        );
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
