//! Bundles: a byte-reproducible `.tar.gz` that CI builds from the spec and a
//! host applies. It holds the spec and template overrides it was rendered from,
//! every rendered file under `files/<target path>` (for review, and checked on
//! the host), the DNS records, and a manifest with each file's sha256 and the
//! selector each key set signs with. Reading a bundle verifies its structure;
//! the host then renders the spec again through the managed-file table (paths,
//! modes, owners and follow-ups come from there, never from the bundle) and
//! refuses a bundle whose files differ. Credentials are rendered on the host.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::boundary::{is_key_file, is_key_set};
use crate::desired::{Desired, managed_file};
use crate::plan::sha256_hex;
use crate::source::Source;
use crate::spec::names::check_selector;

/// Written into the manifest, so an incompatible bundle is refused by name.
pub const FORMAT: &str = "mailsetup-bundle/2";
const MANIFEST: &str = "manifest.json";
/// No member of a real bundle comes near this (100,000 domains: ~10 MiB); a
/// larger one is refused unread.
const MAX_MEMBER: u64 = 64 << 20;
/// Nor does a whole bundle: reading stops here, so a gzip bomb cannot fill memory.
const MAX_TOTAL: u64 = 256 << 20;
/// So a bundle file larger than this (compressed) is refused before it is read.
pub const MAX_FILE: u64 = MAX_TOTAL;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
}

/// The selector a key set signs with (the host derives the key's paths).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChoice {
    pub set: String,
    pub selector: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The fleet host this bundle is for, if the spec names several.
    pub host: Option<String>,
    /// The spec's file name, as the rendered files' headers name it.
    pub spec_name: String,
    /// The rendered files but credential ones, which the host renders itself.
    pub files: Vec<ManifestFile>,
    pub keys: Vec<KeyChoice>,
    /// DKIM records the bundle could not include, and why.
    pub dns_missing: Vec<String>,
    /// Every other member of the archive with its checksum.
    pub members: Vec<Member>,
}

/// Why a bundle is refused. Nothing has been written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a complete mailsetup bundle (truncated or not a .tar.gz): {0}")]
    Unreadable(String),
    #[error("bundle member {0:?} is not a plain file with a plain relative name")]
    BadMember(String),
    #[error("the bundle inflates beyond {limit} MiB (member {0:?}): not a mailsetup bundle", limit = MAX_TOTAL >> 20)]
    TooLarge(String),
    #[error("bundle member {0} appears twice")]
    Duplicate(String),
    #[error("the bundle has no manifest.json")]
    NoManifest,
    #[error("manifest.json is not valid: {0}")]
    BadManifest(String),
    #[error("bundle format {0:?}; this mailsetup reads {FORMAT:?}")]
    Format(String),
    #[error("bundle member {0} is missing")]
    Missing(String),
    #[error("bundle member {0} is not listed in the manifest")]
    Unlisted(String),
    #[error(
        "bundle member {0} does not match its checksum: the bundle was changed after it was built"
    )]
    Checksum(String),
    #[error("the bundle names {0}, which is not a file mailsetup manages")]
    OutsideTree(String),
    #[error("the bundle carries {0}, a file holding credentials: those are rendered on the host")]
    Credentials(String),
    #[error("the bundle's key set {0:?} is not a key set name")]
    BadKey(String),
}

/// What goes into a bundle.
pub struct Contents<'a> {
    pub source: &'a Source,
    pub desired: &'a Desired,
    pub dns_zone: String,
    pub dns_json: String,
    pub dns_missing: Vec<String>,
    /// Private keys to ship (target path, PEM), only when explicitly asked for.
    pub private_keys: Vec<(String, Vec<u8>)>,
}

fn file_member(path: &str) -> String {
    format!("files{path}")
}

fn key_member(path: &str) -> String {
    format!("keys{path}")
}

/// Builds the archive. The same contents give the same bytes: members in
/// sorted order, every time and owner fixed, gzip without a timestamp.
pub fn build(contents: &Contents) -> anyhow::Result<Vec<u8>> {
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut files = Vec::new();
    for file in contents.desired.files.iter().filter(|f| !f.secret) {
        files.push(ManifestFile {
            path: file.path.clone(),
            sha256: sha256_hex(file.content.as_bytes()),
        });
        members.insert(file_member(&file.path), file.content.clone().into_bytes());
    }
    let source = contents.source;
    members.insert("spec.yaml".into(), source.spec_text.as_bytes().to_vec());
    members.insert(
        "dns/records.zone".into(),
        contents.dns_zone.as_bytes().to_vec(),
    );
    members.insert(
        "dns/records.json".into(),
        contents.dns_json.as_bytes().to_vec(),
    );
    for (name, text) in &source.templates {
        members.insert(format!("templates/{name}"), text.as_bytes().to_vec());
    }
    for (path, pem) in &contents.private_keys {
        members.insert(key_member(path), pem.clone());
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        host: source.host.clone(),
        spec_name: source.spec_name.clone(),
        files,
        keys: contents
            .desired
            .keys
            .iter()
            .map(|k| KeyChoice {
                set: k.set.clone(),
                selector: k.selector.clone(),
            })
            .collect(),
        dns_missing: contents.dns_missing.clone(),
        members: members
            .iter()
            .map(|(name, data)| Member {
                name: name.clone(),
                sha256: sha256_hex(data),
            })
            .collect(),
    };
    let manifest_json = serde_json::to_string_pretty(&manifest)? + "\n";

    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut append = |name: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        // Keys stay private inside the archive too.
        header.set_mode(if name.starts_with("keys/") {
            0o600
        } else {
            0o644
        });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data)?;
        Ok(())
    };
    append(MANIFEST, manifest_json.as_bytes())?;
    for (name, data) in &members {
        append(name, data)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// A verified bundle.
pub struct Bundle {
    pub manifest: Manifest,
    members: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Reads and verifies a bundle: every member a plain file with a plain
    /// name, listed once in the manifest with a matching checksum, and every
    /// target path one mailsetup manages.
    pub fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let unreadable = |e: std::io::Error| BundleError::Unreadable(e.to_string());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut members = BTreeMap::new();
        let mut total = 0;
        for entry in archive.entries().map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            total += entry.size();
            if entry.size() > MAX_MEMBER || total > MAX_TOTAL {
                return Err(BundleError::TooLarge(name));
            }
            let plain = entry.header().entry_type() == tar::EntryType::Regular
                && !name.is_empty()
                && name
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != "..");
            if !plain {
                return Err(BundleError::BadMember(name));
            }
            let mut data = Vec::new();
            entry
                .take(MAX_MEMBER)
                .read_to_end(&mut data)
                .map_err(unreadable)?;
            if members.insert(name.clone(), data).is_some() {
                return Err(BundleError::Duplicate(name));
            }
        }
        let manifest_bytes = members.remove(MANIFEST).ok_or(BundleError::NoManifest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| BundleError::BadManifest(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(BundleError::Format(manifest.format));
        }
        for member in &manifest.members {
            let data = members
                .get(&member.name)
                .ok_or_else(|| BundleError::Missing(member.name.clone()))?;
            if sha256_hex(data) != member.sha256 {
                return Err(BundleError::Checksum(member.name.clone()));
            }
        }
        if let Some(extra) = members
            .keys()
            .find(|name| !manifest.members.iter().any(|m| &m.name == *name))
        {
            return Err(BundleError::Unlisted(extra.clone()));
        }
        for file in &manifest.files {
            match managed_file(&file.path) {
                None => return Err(BundleError::OutsideTree(file.path.clone())),
                Some(f) if f.secret => return Err(BundleError::Credentials(file.path.clone())),
                Some(_) => {}
            }
            let data = members
                .get(&file_member(&file.path))
                .ok_or_else(|| BundleError::Missing(file_member(&file.path)))?;
            if sha256_hex(data) != file.sha256 {
                return Err(BundleError::Checksum(file.path.clone()));
            }
        }
        for name in members.keys() {
            if let Some(path) = name.strip_prefix("files")
                && !manifest.files.iter().any(|f| f.path == path)
            {
                return Err(BundleError::Unlisted(name.clone()));
            }
        }
        for key in &manifest.keys {
            if !is_key_set(&key.set) {
                return Err(BundleError::BadKey(key.set.clone()));
            }
            if check_selector(&key.selector).is_err() {
                return Err(BundleError::BadKey(format!("{}/{}", key.set, key.selector)));
            }
        }
        for name in members.keys() {
            if let Some(path) = name.strip_prefix("keys")
                && !is_key_file(path)
            {
                return Err(BundleError::OutsideTree(path.to_string()));
            }
        }
        Ok(Bundle { manifest, members })
    }

    /// What the bundle was rendered from: the host renders it again.
    pub fn source(&self) -> Source {
        Source {
            spec_name: self.manifest.spec_name.clone(),
            spec_text: String::from_utf8_lossy(self.member("spec.yaml")).into_owned(),
            host: self.manifest.host.clone(),
            templates: self
                .members
                .iter()
                .filter_map(|(name, data)| {
                    let name = name.strip_prefix("templates/")?;
                    Some((name.to_string(), String::from_utf8_lossy(data).into_owned()))
                })
                .collect(),
            skip_packages: false,
        }
    }

    /// The rendered file the bundle carries for `path`, if any.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.members.get(&file_member(path)).map(Vec::as_slice)
    }

    /// The DKIM keys the bundle's records publish: (record name, p= value).
    /// Keys CI did not know (marked missing) are not among them.
    pub fn published_dkim(&self) -> Vec<(String, String)> {
        let records: Vec<serde_json::Value> =
            serde_json::from_slice(self.member("dns/records.json")).unwrap_or_default();
        records
            .iter()
            .filter(|r| r["kind"] == "dkim")
            .filter_map(|r| {
                let name = r["name"].as_str()?;
                let p = r["value"]
                    .as_str()?
                    .split(';')
                    .find_map(|tag| tag.trim().strip_prefix("p="))?;
                Some((name.to_string(), p.trim().to_string()))
            })
            .collect()
    }

    /// Private keys shipped in the bundle (target path, PEM).
    pub fn private_keys(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.members
            .iter()
            .filter_map(|(name, data)| Some((name.strip_prefix("keys")?, data.as_slice())))
    }

    fn member(&self, name: &str) -> &[u8] {
        self.members
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
