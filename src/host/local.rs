//! The operator's own files, named on the command line and outside any managed
//! tree: the spec, template overrides, saved plans, bundles and their
//! signatures, exported public keys, octoDNS zone files. Outputs are written
//! all or nothing, so a failed run never leaves half a file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A file's bytes.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// A text file; the I/O error as it is, for callers that tell "missing" apart.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// A text file, or `None` when it does not exist.
pub fn read_text_if_present(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A text file of at most `max` bytes (`what` names it in errors), so a wrong
/// path to a huge file is refused instead of read.
pub fn read_small(path: &Path, max: u64, what: &str) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("read {what} {}", path.display()))?;
    if meta.len() > max {
        bail!("{}: too large for {what}", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("read {what} {}", path.display()))
}

/// An entry of a directory.
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub is_dir: bool,
}

/// The entries of a directory, sorted by name.
pub fn entries(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("read {}", dir.display()))?;
        out.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            is_dir: entry.file_type()?.is_dir(),
            path: entry.path(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create the directory {}", dir.display()))
}

/// Writes a file all or nothing: a temporary file beside it gets the content
/// and mode, is synced, then renamed into place.
pub fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
