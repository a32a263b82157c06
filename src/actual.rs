//! The actual state: what the host has now of everything the desired state names.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use crate::desired::Desired;
use crate::host::{Accounts, FileState, Host, Meta};

#[derive(Clone, Debug)]
pub struct Actual {
    pub files: HashMap<String, Option<FileState>>,
    /// What mailsetup last wrote (path → sha256), from its state directory.
    pub applied: BTreeMap<String, String>,
    /// Files mailsetup wrote before that the spec no longer asks for, as they are now.
    pub dropped: BTreeMap<String, FileState>,
    pub dirs: HashMap<String, Option<Meta>>,
    /// Private key paths that exist.
    pub keys: HashMap<String, bool>,
    pub accounts: Accounts,
    /// Running as root: owners can be set.
    pub can_chown: bool,
    /// The target is the running system (`/`), not a tree under `--root`.
    pub live: bool,
    /// The desired packages dpkg does not list as installed.
    pub missing_packages: Vec<&'static str>,
    /// Which of the map tools (postalias, postmap) are installed.
    pub has_postalias: bool,
    pub has_postmap: bool,
}

pub fn read(system: &impl Host, desired: &Desired) -> Result<Actual> {
    let files = desired
        .files
        .iter()
        .map(|f| Ok((f.path.clone(), system.read_file(&f.path)?)))
        .collect::<Result<_>>()?;
    let applied = crate::state::read_applied(system)?;
    let mut dropped = BTreeMap::new();
    for path in applied.keys() {
        if desired.files.iter().any(|f| &f.path == path) {
            continue;
        }
        if let Some(state) = system.read_file(path)? {
            dropped.insert(path.clone(), state);
        }
    }
    let dirs = desired
        .dirs
        .iter()
        .map(|d| Ok((d.path.clone(), system.read_dir_meta(&d.path)?)))
        .collect::<Result<_>>()?;
    let keys = desired
        .keys
        .iter()
        .map(|k| {
            // Only existence matters; the key's bytes are not read.
            let exists = system.path(&k.private_path).symlink_metadata().is_ok();
            (k.private_path.clone(), exists)
        })
        .collect();
    Ok(Actual {
        files,
        applied,
        dropped,
        dirs,
        keys,
        accounts: system.accounts()?,
        can_chown: system.can_chown(),
        live: system.is_live(),
        missing_packages: if desired.packages.is_empty() {
            Vec::new()
        } else {
            let status = system.read_file(crate::packages::DPKG_STATUS)?;
            let status = status.map(|f| String::from_utf8_lossy(&f.content).into_owned());
            crate::packages::missing(&desired.packages, status.as_deref().unwrap_or(""))
        },
        has_postalias: system.find_program("postalias").is_some(),
        has_postmap: system.find_program("postmap").is_some(),
    })
}
