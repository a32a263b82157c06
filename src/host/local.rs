//! The operator's own files, named on the command line and outside any managed
//! tree: the spec, template overrides, saved plans, bundles and their
//! signatures, exported public keys, octoDNS zone files. Each is opened once,
//! without blocking (a FIFO in its place is refused, not waited on), checked
//! on the open handle (a regular file, under a size cap) and read from it.
//! Below a directory the operator named (templates, an export, an output
//! directory) nothing is followed: every entry is reached beneath its handle.
//! Outputs are written all or nothing, so a failed run never leaves half a file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::beneath::{Dir, Kind};

/// Whether the last component of a named file may be a symlink.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The operator's own choice of file (a spec linked from a checkout).
    Yes,
    /// A file that decides what root trusts (a signature, allowed signers,
    /// a template, a secret): a symlink is refused.
    No,
}

/// A regular file of at most `max` bytes (`what` names it in errors), or
/// `None` when it does not exist.
pub fn read_if_present(
    path: &Path,
    what: &str,
    max: u64,
    follow: Follow,
) -> Result<Option<Vec<u8>>> {
    let (dir, name) = split(path)?;
    let dir = match Dir::open(dir) {
        Ok(dir) => dir,
        Err(_) if !dir.exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = match follow {
        Follow::No => dir.open_file(name)?,
        Follow::Yes => open_following(path)?,
    };
    let Some((file, stat)) = file else {
        return Ok(None);
    };
    super::beneath::read_regular(file, &stat, max, path, what).map(Some)
}

/// A regular file of at most `max` bytes; a missing one is an error.
pub fn read(path: &Path, what: &str, max: u64, follow: Follow) -> Result<Vec<u8>> {
    read_if_present(path, what, max, follow)?
        .with_context(|| format!("{what} {} does not exist", path.display()))
}

/// A text file; the I/O error as it is, for callers that tell "missing" apart.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    let bytes = read_if_present(path, "", max, Follow::Yes)
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8: save the file as UTF-8",
        )
    })
}

/// `path` opened for reading, following the operator's symlink, without blocking.
fn open_following(path: &Path) -> Result<Option<(std::fs::File, super::beneath::Stat)>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
    {
        Ok(file) => {
            let stat = super::beneath::stat_of_file(&file)
                .with_context(|| format!("inspect {}", path.display()))?;
            Ok(Some((file, stat)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("open {}", path.display())),
    }
}

/// The directory and file name of a named file.
fn split(path: &Path) -> Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not name a file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// The regular files of a directory the operator named, as (name, bytes),
/// each at most `max` bytes; a symlink, subdirectory or other entry is
/// refused (`what` names the directory in errors).
pub fn read_files(dir: &Path, what: &str, max: u64) -> Result<Vec<(String, Vec<u8>)>> {
    let handle = Dir::open(dir).with_context(|| format!("read {what} {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in handle.entries()? {
        if entry.kind != Kind::File {
            bail!(
                "{} is not a plain file (a symlink, directory or other kind); {what} holds \
                 plain files only",
                handle.show(&entry.name).display()
            );
        }
        let (bytes, _) = handle
            .read(&entry.name, max, "")?
            .with_context(|| format!("{} vanished", handle.show(&entry.name).display()))?;
        out.push((entry.name, bytes));
    }
    Ok(out)
}

/// Every regular file beneath a directory the operator named, in name order,
/// each handed to `each` with its bytes (at most `max`) or why it could not
/// be read. Subdirectories are entered down to `depth` levels; symlinks are
/// not followed and hidden entries (`.name`) are passed over.
pub fn each_file_under(
    dir: &Path,
    max: u64,
    depth: usize,
    each: &mut dyn FnMut(PathBuf, std::result::Result<Vec<u8>, String>),
) -> Result<()> {
    fn walk(
        handle: &Dir,
        max: u64,
        depth: usize,
        each: &mut dyn FnMut(PathBuf, std::result::Result<Vec<u8>, String>),
    ) -> Result<()> {
        for entry in handle.entries()? {
            if entry.name.starts_with('.') {
                continue;
            }
            let path = handle.show(&entry.name);
            match entry.kind {
                Kind::File => {
                    let bytes = match handle.read(&entry.name, max, "") {
                        Ok(Some((bytes, _))) => Ok(bytes),
                        Ok(None) => Err("vanished while being read".to_string()),
                        Err(e) => Err(format!("{e:#}")),
                    };
                    each(path, bytes);
                }
                Kind::Dir if depth > 0 => {
                    if let Some(sub) = handle.open_dir(&entry.name)? {
                        walk(&sub, max, depth - 1, each)?;
                    }
                }
                Kind::Dir => each(path, Err("too deep: not entered".into())),
                Kind::Symlink => each(path, Err("a symlink: not followed".into())),
                Kind::Other => each(path, Err("not a plain file".into())),
            }
        }
        Ok(())
    }
    walk(&Dir::open(dir)?, max, depth, each)
}

/// An export the operator named (`public-keys --out`'s): directories of
/// regular files, read beneath its handle, as (subdirectory, name, bytes).
/// Symlinks are refused; other entries at the top are skipped.
pub fn read_tree(dir: &Path, max: u64) -> Result<Vec<(String, String, Vec<u8>)>> {
    let handle = Dir::open(dir)?;
    let mut out = Vec::new();
    for set in handle.entries()? {
        match set.kind {
            Kind::Dir => {}
            Kind::Symlink => bail!(
                "{} is a symlink; mailsetup reads exports without following them",
                handle.show(&set.name).display()
            ),
            _ => continue,
        }
        let sub = handle
            .open_dir(&set.name)?
            .with_context(|| format!("{} vanished", handle.show(&set.name).display()))?;
        for (name, bytes) in read_files(sub.path(), "an export directory", max)? {
            out.push((set.name.clone(), name, bytes));
        }
    }
    Ok(out)
}

/// A directory of outputs the operator named (made when missing); below it
/// every file and directory is made beneath its handle, never through a
/// symlink someone planted there.
pub struct OutDir(Dir);

impl OutDir {
    pub fn open(dir: &Path) -> Result<OutDir> {
        Dir::open_making(dir).map(OutDir)
    }

    /// Writes `rel` (`SET/FILE` or `FILE`) all or nothing, making its directory.
    pub fn write(&self, rel: &str, data: &[u8], mode: u32) -> Result<PathBuf> {
        let (dir, name) = match rel.rsplit_once('/') {
            Some((dir, name)) => (self.0.mkdirs(dir)?, name),
            None => (self.0.mkdirs("")?, rel),
        };
        dir.write_atomic(name, data, mode, None)?;
        Ok(dir.show(name))
    }
}

/// Whether `path` is a directory (following a symlink the operator named).
pub fn is_dir(path: &Path) -> bool {
    path.is_dir()
}

/// Whether anything (a file, a directory, a symlink) is at `path`.
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Writes a file all or nothing: a temporary file beside it gets the content
/// and mode, is synced, then renamed into place (a symlink there is replaced,
/// not followed).
pub fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = split(path)?;
    Dir::open(dir)?.write_atomic(name, data, mode, None)
}

/// Writes a new file all or nothing, refusing when anything is there already.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = split(path)?;
    Dir::open(dir)?.place_new(name, data, mode, None, None)
}

/// A file that decides what root trusts (`allowed_signers`), read only when
/// no one but root (or this user) could have written it, like sshd's
/// StrictModes: every directory from `/` down and the file itself owned by
/// root or this user and writable by no group or others, the file regular,
/// no symlink anywhere on the way. A sticky directory (`/tmp`) is accepted on
/// the way: no one else can rename or replace what is in it. Else refused,
/// with the reason.
pub fn read_strict(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let me = nix::unistd::geteuid().as_raw();
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("find the current directory")?
            .join(path)
    };
    let mut parts = Vec::new();
    for part in abs.components() {
        match part {
            std::path::Component::RootDir => {}
            std::path::Component::Normal(p) => parts.push(
                p.to_str()
                    .with_context(|| format!("{} is not UTF-8", abs.display()))?,
            ),
            _ => bail!(
                "{what} {}: a path with `.` or `..` is not accepted",
                path.display()
            ),
        }
    }
    let Some((name, dirs)) = parts.split_last() else {
        bail!("{what} {} does not name a file", path.display());
    };
    let trusted = |uid: u32| uid == 0 || uid == me;
    let mut dir = Dir::open(Path::new("/"))?;
    let check_dir = |dir: &Dir| -> Result<()> {
        let stat = dir.stat_self()?;
        let sticky = stat.mode & 0o1000 != 0;
        if !trusted(stat.uid) || (stat.mode & 0o022 != 0 && !sticky) {
            bail!(
                "{what} {} is refused: the directory {} is {} (uid {}, mode {:04o}), so \
                 another user could replace the file; it must be root's and writable by no \
                 one else",
                path.display(),
                dir.path().display(),
                if trusted(stat.uid) {
                    "writable by others"
                } else {
                    "another user's"
                },
                stat.uid,
                stat.mode
            );
        }
        Ok(())
    };
    check_dir(&dir)?;
    for part in dirs {
        dir = dir
            .open_dir(part)
            .with_context(|| format!("{what} {} is refused", path.display()))?
            .with_context(|| format!("{what} {} does not exist", path.display()))?;
        check_dir(&dir)?;
    }
    let (file, stat) = dir
        .open_file(name)
        .with_context(|| format!("{what} {} is refused", path.display()))?
        .with_context(|| format!("{what} {} does not exist", path.display()))?;
    if stat.kind != Kind::File {
        bail!("{what} {} is refused: not a regular file", path.display());
    }
    if !trusted(stat.uid) || stat.mode & 0o022 != 0 {
        bail!(
            "{what} {} is refused: it is {} (uid {}, mode {:04o}); it must be root's and \
             writable by no one else (chown root, chmod 644)",
            path.display(),
            if trusted(stat.uid) {
                "writable by others"
            } else {
                "another user's"
            },
            stat.uid,
            stat.mode
        );
    }
    super::beneath::read_regular(file, &stat, max, path, what)
}

/// A log file the operator named, streamed line by line (a plain file; it may
/// be large, so it is not read whole).
pub fn open_lines(path: &Path) -> Result<Box<dyn std::io::BufRead>> {
    let (file, stat) = open_following(path)?
        .with_context(|| format!("the log {} does not exist", path.display()))?;
    if stat.kind != Kind::File {
        bail!("the log {} is not a plain file", path.display());
    }
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, file)))
}
