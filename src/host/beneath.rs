//! Files reached beneath an open directory handle (Go's `os.Root`, systemd's
//! `chase()`). A path below a [`Dir`] is resolved by the kernel in one step,
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: no symlink anywhere
//! on the way or at the end, no `..`, nothing outside the handle's directory.
//! What is then created, renamed, removed or given an owner is named relative
//! to the handle of its own directory, never by a path checked earlier, so a
//! user who owns a directory on the way cannot aim root's writes elsewhere by
//! swapping it between a check and the use.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: never read or written.
    Other,
}

/// What `fstat` says of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    dev: u64,
    ino: u64,
}

impl Stat {
    fn of_meta(m: &std::fs::Metadata) -> Stat {
        let t = m.file_type();
        Stat {
            kind: if t.is_file() {
                Kind::File
            } else if t.is_dir() {
                Kind::Dir
            } else if t.is_symlink() {
                Kind::Symlink
            } else {
                Kind::Other
            },
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            nlink: m.nlink(),
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    fn of_raw(s: &nix::sys::stat::FileStat) -> Stat {
        let kind = match s.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        Stat {
            kind,
            mode: s.st_mode & 0o7777,
            uid: s.st_uid,
            gid: s.st_gid,
            size: u64::try_from(s.st_size).unwrap_or(0),
            nlink: s.st_nlink,
            dev: s.st_dev,
            ino: s.st_ino,
        }
    }

    /// Whether two stats are of the same file.
    pub fn same_file(&self, other: &Stat) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// An entry of a listed directory.
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

/// An open directory: paths below it are resolved beneath it only.
pub struct Dir {
    fd: OwnedFd,
    /// For messages and for programs that take paths.
    path: PathBuf,
}

/// The syscalls' own error, kept so callers can tell ENOENT or EXDEV apart.
type Sys<T> = std::result::Result<T, Errno>;

/// Opens beneath `dir`: the kernel refuses any symlink, `..` or absolute name.
fn open_beneath(dir: &OwnedFd, rel: &str, flags: OFlag, mode: u32) -> Sys<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let rel = if rel.is_empty() { "." } else { rel };
    // EAGAIN: the kernel saw a rename during the lookup and could not vouch
    // for it; a few tries, then the error.
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dir, rel, how) {
            Err(Errno::EAGAIN) if tries < 8 => tries += 1,
            other => return other,
        }
    }
}

/// A name for a temporary file beside `name`, unguessable so no other user can
/// take it first: `.NAME.mailsetup-new-XXXXXXXXXXXXXXXX`.
pub fn temp_name(name: &str) -> String {
    let mut bytes = [0u8; 8];
    // Without the OS's randomness the name is still unique (O_EXCL), only guessable.
    let _ = getrandom::fill(&mut bytes);
    let n = u64::from_ne_bytes(bytes) ^ u64::from(std::process::id());
    format!(".{name}{TEMP_MARK}{n:016x}")
}

/// What every temporary name carries, so what a killed run left is found.
pub const TEMP_MARK: &str = ".mailsetup-new-";

impl Dir {
    /// The directory at `path`, opened as the operator named it (it may be
    /// reached through symlinks of the operator's own: the root, an output
    /// directory); below it, nothing is followed.
    pub fn open(path: &Path) -> Result<Dir> {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("open the directory {}", path.display()))?;
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOTDIR => anyhow!("{} is not a directory", path.display()),
            e => anyhow!(e).context(format!("open the directory {}", path.display())),
        })?;
        Ok(Dir { fd, path })
    }

    /// The directory at `path`, made (with its parents) when missing.
    pub fn open_making(path: &Path) -> Result<Dir> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("create the directory {}", path.display()))?;
        Dir::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `rel`, for messages.
    pub fn show(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// The handle's own metadata.
    pub fn stat_self(&self) -> Result<Stat> {
        let st = nix::sys::stat::fstat(&self.fd)
            .with_context(|| format!("inspect {}", self.path.display()))?;
        Ok(Stat::of_raw(&st))
    }

    /// Why opening `rel` failed, in words: which part is a symlink or not a
    /// directory (looked up for the message only; nothing is decided on it).
    fn explain(&self, rel: &str, e: Errno, doing: &str) -> anyhow::Error {
        match e {
            Errno::ELOOP => {
                let mut at = self.path.clone();
                for part in rel.split('/') {
                    at.push(part);
                    if at
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                    {
                        return anyhow!(
                            "{} is a symlink; mailsetup does not follow symlinks under {} (one \
                             could lead it outside): replace it with a real directory or file",
                            at.display(),
                            self.path.display()
                        );
                    }
                }
                anyhow!(
                    "{}: a symlink on the way; mailsetup does not follow symlinks under {}",
                    self.show(rel).display(),
                    self.path.display()
                )
            }
            Errno::ENOTDIR => anyhow!(
                "{}: a part of it is not a directory",
                self.show(rel).display()
            ),
            Errno::EXDEV => anyhow!(
                "{} leads outside {}",
                self.show(rel).display(),
                self.path.display()
            ),
            Errno::ENOSYS => anyhow!(
                "this kernel lacks openat2 (Linux 5.6 or later), which mailsetup needs to \
                 reach files without following symlinks"
            ),
            e => anyhow!(e).context(format!("{doing} {}", self.show(rel).display())),
        }
    }

    /// The file at `rel`, opened for reading (O_NONBLOCK: a FIFO cannot block
    /// it), with what `fstat` says of the open file; `None` when absent.
    pub fn open_file(&self, rel: &str) -> Result<Option<(File, Stat)>> {
        match open_beneath(&self.fd, rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0) {
            Ok(fd) => {
                let file = File::from(fd);
                let meta = file
                    .metadata()
                    .with_context(|| format!("inspect {}", self.show(rel).display()))?;
                Ok(Some((file, Stat::of_meta(&meta))))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.explain(rel, e, "open")),
        }
    }

    /// A regular file's bytes, at most `max` of them; `None` when absent.
    /// Anything but a regular file is refused (`what` names it in errors).
    pub fn read(&self, rel: &str, max: u64, what: &str) -> Result<Option<(Vec<u8>, Stat)>> {
        let Some((file, stat)) = self.open_file(rel)? else {
            return Ok(None);
        };
        let path = self.show(rel);
        let bytes = read_regular(file, &stat, max, &path, what)?;
        Ok(Some((bytes, stat)))
    }

    /// The directory at `rel`; `None` when absent.
    pub fn open_dir(&self, rel: &str) -> Result<Option<Dir>> {
        match open_beneath(&self.fd, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: self.show(rel),
            })),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ENOTDIR) => match self.stat(rel)? {
                Some(s) if s.kind == Kind::Symlink => Err(self.explain(rel, Errno::ELOOP, "")),
                Some(_) => bail!(
                    "{} is not a directory; mailsetup will not use it",
                    self.show(rel).display()
                ),
                None => Err(self.explain(rel, Errno::ENOTDIR, "open")),
            },
            Err(e) => Err(self.explain(rel, e, "open")),
        }
    }

    /// The directory holding `rel` and `rel`'s last part; `None` when that
    /// directory does not exist.
    pub fn parent<'a>(&self, rel: &'a str) -> Result<Option<(Dir, &'a str)>> {
        let (dir, name) = match rel.rsplit_once('/') {
            Some((dir, name)) => (dir, name),
            None => ("", rel),
        };
        Ok(self.open_dir(dir)?.map(|d| (d, name)))
    }

    /// What is at `rel` (a symlink is reported as one, not followed); `None`
    /// when it, or its directory, does not exist.
    pub fn stat(&self, rel: &str) -> Result<Option<Stat>> {
        if rel.is_empty() {
            return self.stat_self().map(Some);
        }
        match self.parent(rel)? {
            Some((dir, name)) => dir.stat_at(name),
            None => Ok(None),
        }
    }

    /// What is at `name` in this directory, without following it.
    pub fn stat_at(&self, name: &str) -> Result<Option<Stat>> {
        check_name(name)?;
        match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat::of_raw(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("inspect {}", self.show(name).display()))),
        }
    }

    /// The entries of this directory, sorted by name.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        // A description of its own, so listing twice starts at the top again.
        let fd = open_beneath(&self.fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
            .map_err(|e| self.explain("", e, "list"))?;
        let mut listing =
            nix::dir::Dir::from_fd(fd).with_context(|| format!("list {}", self.path.display()))?;
        let mut out = Vec::new();
        for entry in listing.iter() {
            let entry = entry.with_context(|| format!("list {}", self.path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            use nix::dir::Type;
            let kind = match entry.file_type() {
                Some(Type::File) => Kind::File,
                Some(Type::Directory) => Kind::Dir,
                Some(Type::Symlink) => Kind::Symlink,
                Some(_) => Kind::Other,
                None => self.stat_at(&name)?.map_or(Kind::Other, |s| s.kind),
            };
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A new file `name` here, open for writing, with `mode` from its creation;
    /// never an existing file or a symlink's target.
    pub fn create_new(&self, name: &str, mode: u32) -> Result<File> {
        check_name(name)?;
        nix::fcntl::openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map(File::from)
        .map_err(|e| anyhow!(e).context(format!("create {}", self.show(name).display())))
    }

    /// Another handle of the same directory.
    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .with_context(|| format!("open {} again", self.path.display()))?,
            path: self.path.clone(),
        })
    }

    /// Stages `content` in a new temporary file here with its mode and owner,
    /// synced; [`Staged::commit`] puts it in place as `name`.
    pub fn stage(
        &self,
        name: &str,
        content: &[u8],
        mode: u32,
        ids: Option<(u32, u32)>,
    ) -> Result<Staged> {
        check_name(name)?;
        let tmp = temp_name(name);
        let staged = Staged {
            dir: self.try_clone()?,
            tmp,
            name: name.to_string(),
            done: false,
        };
        let mut file = self.create_new(&staged.tmp, 0o600)?;
        let shown = self.show(name);
        (|| -> Result<()> {
            if let Some((uid, gid)) = ids {
                nix::unistd::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .with_context(|| format!("set the owner of {}", shown.display()))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("set the mode of {}", shown.display()))?;
            file.write_all(content)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("write {}", shown.display()))
        })()?;
        Ok(staged)
    }

    /// Puts a new file `name` here, never replacing one: made complete (mode
    /// and owner from the first byte) in `via` when given — a directory only
    /// this process's user can write, on the same filesystem — and moved in
    /// with one rename, so no other user ever sees it half made; here, under
    /// a temporary name, when `via` is on another filesystem.
    pub fn place_new(
        &self,
        name: &str,
        content: &[u8],
        mode: u32,
        ids: Option<(u32, u32)>,
        via: Option<&Dir>,
    ) -> Result<()> {
        check_name(name)?;
        let shown = self.show(name);
        let from = via.unwrap_or(self);
        let tmp = temp_name(name);
        let mut file = from.create_new(&tmp, 0o600)?;
        let made = (|| -> Result<()> {
            if let Some((uid, gid)) = ids {
                nix::unistd::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .with_context(|| format!("set the owner of {}", shown.display()))?;
            }
            if mode != 0o600 {
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("set the mode of {}", shown.display()))?;
            }
            file.write_all(content)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("write {}", shown.display()))
        })();
        drop(file);
        let moved = made.and_then(|()| match from.rename(&tmp, self, name, true) {
            Ok(()) => Ok(None),
            Err(Errno::EXDEV) if via.is_some() => Ok(Some(())),
            Err(Errno::EEXIST) => bail!(
                "{} exists already; mailsetup never replaces it",
                shown.display()
            ),
            Err(e) => Err(anyhow!(e).context(format!(
                "move the new file into place at {}",
                shown.display()
            ))),
        });
        if !matches!(moved, Ok(None)) {
            let _ = from.unlink(&tmp);
        }
        match moved? {
            // Another filesystem: made here instead.
            Some(()) => self.place_new(name, content, mode, ids, None),
            None => {
                self.sync()?;
                if via.is_some() {
                    from.sync()?;
                }
                Ok(())
            }
        }
    }

    /// Replaces `name` here atomically: a temporary file gets the content,
    /// mode and owner, is synced, then renamed over it. A symlink at `name` is
    /// replaced, never followed.
    pub fn write_atomic(
        &self,
        name: &str,
        content: &[u8],
        mode: u32,
        ids: Option<(u32, u32)>,
    ) -> Result<()> {
        self.stage(name, content, mode, ids)?.commit()
    }

    /// The regular file `name` here, made with `mode` when missing, open for
    /// writing: a symlink is refused and a FIFO cannot block it.
    pub fn open_or_create(&self, name: &str, mode: u32) -> Result<File> {
        check_name(name)?;
        let fd = nix::fcntl::openat(
            &self.fd,
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| self.explain(name, e, "open"))?;
        let file = File::from(fd);
        let meta = file
            .metadata()
            .with_context(|| format!("inspect {}", self.show(name).display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", self.show(name).display());
        }
        Ok(file)
    }

    /// Makes directory `name` here and returns it. Its mode is set on the
    /// handle (no umask), and it must be this process's: another user who
    /// swapped in a directory of theirs is refused, not given away.
    pub fn mkdir(&self, name: &str, mode: u32, ids: Option<(u32, u32)>) -> Result<Dir> {
        check_name(name)?;
        let shown = self.show(name);
        nix::sys::stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(0o700))
            .map_err(|e| anyhow!(e).context(format!("create the directory {}", shown.display())))?;
        let dir = self
            .open_dir(name)?
            .with_context(|| format!("{} vanished as it was made", shown.display()))?;
        let stat = dir.stat_self()?;
        if stat.uid != nix::unistd::geteuid().as_raw() {
            bail!(
                "{} was replaced by another user's directory as it was made; not using it",
                shown.display()
            );
        }
        dir.set_meta(mode, ids)?;
        self.sync()?;
        Ok(dir)
    }

    /// Makes every missing directory of `rel` (mode 0755) and returns the last.
    pub fn mkdirs(&self, rel: &str) -> Result<Dir> {
        let mut dir = self.open_dir("")?.expect("a directory exists");
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir = match dir.open_dir(part)? {
                Some(d) => d,
                None => match dir.mkdir(part, 0o755, None) {
                    Ok(d) => d,
                    // Made meanwhile by someone else: take it if it is a real directory.
                    Err(_) if dir.stat_at(part)?.is_some_and(|s| s.kind == Kind::Dir) => {
                        dir.open_dir(part)?.expect("it exists")
                    }
                    Err(e) => return Err(e),
                },
            };
        }
        Ok(dir)
    }

    /// Sets this directory's owner (when given) and mode.
    pub fn set_meta(&self, mode: u32, ids: Option<(u32, u32)>) -> Result<()> {
        set_meta_fd(&self.fd, mode, ids, &self.path)
    }

    /// Sets the owner (when given) and mode of `name` here, on a handle of the
    /// file itself: a symlink is refused, and so is a file with other hard
    /// links (its owner would change for every name it has).
    pub fn set_meta_at(&self, name: &str, mode: u32, ids: Option<(u32, u32)>) -> Result<()> {
        let shown = self.show(name);
        let before = self
            .stat_at(name)?
            .with_context(|| format!("{} does not exist", shown.display()))?;
        let flags = match before.kind {
            Kind::File if before.nlink > 1 => bail!(
                "{} has {} hard links; mailsetup will not change the owner or mode of a file \
                 that has other names (remove the other links)",
                shown.display(),
                before.nlink
            ),
            Kind::File => OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Kind::Dir => OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Kind::Symlink => return Err(self.explain(name, Errno::ELOOP, "")),
            Kind::Other => bail!("{} is not a plain file or directory", shown.display()),
        };
        let fd =
            open_beneath(&self.fd, name, flags, 0).map_err(|e| self.explain(name, e, "open"))?;
        let now = Stat::of_raw(
            &nix::sys::stat::fstat(&fd).with_context(|| format!("inspect {}", shown.display()))?,
        );
        if !now.same_file(&before) || now.nlink > 1 && now.kind == Kind::File {
            bail!(
                "{} changed while mailsetup was fixing it; run again",
                shown.display()
            );
        }
        set_meta_fd(&fd, mode, ids, &shown)
    }

    /// Removes the file (or symlink) `name` here; `false` when it was not there.
    pub fn unlink(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        match nix::unistd::unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(anyhow!(e).context(format!("remove {}", self.show(name).display()))),
        }
    }

    /// Removes `name` here and, if it is a directory, everything in it,
    /// through handles (a symlink inside is removed, never followed).
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        let Some(stat) = self.stat_at(name)? else {
            return Ok(());
        };
        if stat.kind == Kind::Dir {
            let dir = self
                .open_dir(name)?
                .with_context(|| format!("{} vanished", self.show(name).display()))?;
            for entry in dir.entries()? {
                dir.remove_tree(&entry.name)?;
            }
            match nix::unistd::unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(anyhow!(e).context(format!("remove {}", self.show(name).display()))),
            }
        } else {
            self.unlink(name).map(drop)
        }
    }

    /// Renames `name` here to `to_name` in `to`; with `noreplace`, never over
    /// an existing entry. The syscall's error as it is (EXDEV, EEXIST…).
    pub fn rename(&self, name: &str, to: &Dir, to_name: &str, noreplace: bool) -> Sys<()> {
        if check_name(name).is_err() || check_name(to_name).is_err() {
            return Err(Errno::EINVAL);
        }
        let flags = if noreplace {
            RenameFlags::RENAME_NOREPLACE
        } else {
            RenameFlags::empty()
        };
        nix::fcntl::renameat2(&self.fd, name, &to.fd, to_name, flags)
    }

    /// Syncs the directory, so renames in it survive a crash.
    pub fn sync(&self) -> Result<()> {
        nix::unistd::fsync(&self.fd)
            .with_context(|| format!("sync the directory {}", self.path.display()))
    }

    /// The handle, for a program to reach a file in it through
    /// `/proc/self/fd/N/NAME` without a path anyone could swap.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A file written beside its place, not yet in it; removed unless committed.
pub struct Staged {
    dir: Dir,
    tmp: String,
    name: String,
    done: bool,
}

impl Staged {
    /// Renames the staged file over its place and syncs the directory.
    pub fn commit(mut self) -> Result<()> {
        self.dir
            .rename(&self.tmp, &self.dir, &self.name, false)
            .map_err(|e| {
                anyhow!(e).context(format!("write {}", self.dir.show(&self.name).display()))
            })?;
        self.done = true;
        self.dir.sync()
    }

    /// Where it goes, for messages.
    pub fn target(&self) -> PathBuf {
        self.dir.show(&self.name)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.dir.unlink(&self.tmp);
        }
    }
}

fn set_meta_fd(fd: &OwnedFd, mode: u32, ids: Option<(u32, u32)>, shown: &Path) -> Result<()> {
    if let Some((uid, gid)) = ids {
        nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .with_context(|| format!("set the owner of {}", shown.display()))?;
    }
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))
        .with_context(|| format!("set the mode of {}", shown.display()))
}

/// What `fstat` says of an open file.
pub fn stat_of_file(file: &File) -> std::io::Result<Stat> {
    file.metadata().map(|m| Stat::of_meta(&m))
}

/// Reads an open file that must be a regular one of at most `max` bytes.
pub fn read_regular(file: File, stat: &Stat, max: u64, path: &Path, what: &str) -> Result<Vec<u8>> {
    match stat.kind {
        Kind::File => {}
        Kind::Dir => bail!("{what} {} is a directory, not a file", path.display()),
        _ => bail!(
            "{what} {} is not a regular file (a FIFO, socket or device); mailsetup reads only plain files",
            path.display()
        ),
    }
    if stat.size > max {
        bail!(
            "{what} {} is {} bytes, more than the {max} bytes such a file can need; not read",
            path.display(),
            stat.size
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(stat.size).unwrap_or(0));
    // Read no more than the limit, even from a file that grows meanwhile.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read {what} {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "{what} {} grew past {max} bytes while being read; not read",
            path.display()
        );
    }
    Ok(bytes)
}

/// One component of a path: no `/`, not `.` or `..`, not empty, no NUL.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        bail!("{name:?} is not a plain file name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_beneath_follows_a_symlink_or_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("real/f"))
            .unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let e = format!("{:#}", dir.open_dir("link").err().unwrap());
        assert!(e.contains("is a symlink"), "{e}");
        let e = format!("{:#}", dir.open_file("link/secret").err().unwrap());
        assert!(e.contains("link is a symlink"), "{e}");
        let e = format!("{:#}", dir.open_file("real/f").err().unwrap());
        assert!(e.contains("f is a symlink"), "{e}");
        assert!(dir.open_file("real/../../x").is_err());
        assert!(dir.open_file("/etc/passwd").is_err());
        // Replacing a symlink writes a file in its place, not through it.
        let real = dir.open_dir("real").unwrap().unwrap();
        real.write_atomic("f", b"new", 0o644, None).unwrap();
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"x");
        assert_eq!(std::fs::read(tmp.path().join("real/f")).unwrap(), b"new");
        assert!(real.set_meta_at("f", 0o600, None).is_ok());
    }

    #[test]
    fn fifos_are_refused_without_blocking_and_sizes_are_capped() {
        let tmp = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&tmp.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(tmp.path().join("big"), vec![b'x'; 100]).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let e = format!("{:#}", dir.read("fifo", 10, "the file").err().unwrap());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!("{:#}", dir.read("big", 10, "the file").err().unwrap());
        assert!(e.contains("more than the 10 bytes"), "{e}");
        assert_eq!(
            dir.read("big", 100, "the file").unwrap().unwrap().0.len(),
            100
        );
        assert!(dir.read("none", 10, "the file").unwrap().is_none());
    }

    #[test]
    fn hard_linked_files_keep_their_owner_and_mode() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), "x").unwrap();
        std::fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let e = format!("{:#}", dir.set_meta_at("b", 0o600, None).unwrap_err());
        assert!(e.contains("hard links"), "{e}");
    }

    #[test]
    fn staged_files_vanish_unless_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        drop(dir.stage("f", b"x", 0o640, None).unwrap());
        assert!(dir.entries().unwrap().is_empty());
        dir.stage("f", b"x", 0o640, None).unwrap().commit().unwrap();
        let names: Vec<String> = dir.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["f"]);
        assert_eq!(dir.stat("f").unwrap().unwrap().mode, 0o640);
        let made = dir.mkdirs("x/y/z").unwrap();
        assert!(made.path().ends_with("x/y/z"));
        dir.remove_tree("x").unwrap();
        assert!(dir.stat("x").unwrap().is_none());
    }
}
