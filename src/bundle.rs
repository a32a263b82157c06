//! Bundles: a byte-reproducible `.tar.gz` that CI builds from the spec and a
//! host applies. It holds every rendered file under `files/<target path>`, the
//! DNS records, the spec itself (secrets such as the relay password are
//! rendered on the host from it) and a manifest with each file's path, mode,
//! owner and sha256. Reading a bundle verifies all of it before anything uses it.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::desired::{Desired, Dir, File, GroupMember, Key, Owner, is_managed_file, paths};
use crate::plan::{octal, sha256_hex};
use crate::spec::names::check_selector;

/// Written into the manifest, so an incompatible bundle is refused by name.
pub const FORMAT: &str = "mailsetup-bundle/1";
const MANIFEST: &str = "manifest.json";
/// No member of a real bundle comes near this; a larger one is refused unread.
const MAX_MEMBER: u64 = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    #[serde(with = "octal")]
    pub mode: u32,
    pub owner: Owner,
    pub sha256: String,
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
    pub files: Vec<ManifestFile>,
    pub dirs: Vec<Dir>,
    pub keys: Vec<Key>,
    /// Files rendered on the host from the bundled spec (they hold credentials).
    pub secrets: Vec<String>,
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
}

/// What goes into a bundle.
pub struct Contents<'a> {
    pub host: Option<String>,
    pub desired: &'a Desired,
    pub spec_name: &'a str,
    pub spec_text: &'a str,
    /// Template overrides used to render (name, text), so the host renders secrets alike.
    pub templates: Vec<(String, String)>,
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
    let mut secrets = Vec::new();
    for file in &contents.desired.files {
        if file.secret {
            secrets.push(file.path.clone());
            continue;
        }
        files.push(ManifestFile {
            path: file.path.clone(),
            mode: file.mode,
            owner: file.owner,
            sha256: sha256_hex(file.content.as_bytes()),
        });
        members.insert(file_member(&file.path), file.content.clone().into_bytes());
    }
    members.insert("spec.yaml".into(), contents.spec_text.as_bytes().to_vec());
    members.insert(
        "dns/records.zone".into(),
        contents.dns_zone.as_bytes().to_vec(),
    );
    members.insert(
        "dns/records.json".into(),
        contents.dns_json.as_bytes().to_vec(),
    );
    for (name, text) in &contents.templates {
        members.insert(format!("templates/{name}"), text.as_bytes().to_vec());
    }
    for (path, pem) in &contents.private_keys {
        members.insert(key_member(path), pem.clone());
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        host: contents.host.clone(),
        spec_name: contents.spec_name.to_string(),
        files,
        dirs: contents.desired.dirs.clone(),
        keys: contents.desired.keys.clone(),
        secrets,
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
        for entry in archive.entries().map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let plain = entry.header().entry_type() == tar::EntryType::Regular
                && !name.is_empty()
                && name
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != "..")
                && entry.size() <= MAX_MEMBER;
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
            if !is_managed_file(&file.path) {
                return Err(BundleError::OutsideTree(file.path.clone()));
            }
            let data = members
                .get(&file_member(&file.path))
                .ok_or_else(|| BundleError::Missing(file_member(&file.path)))?;
            if sha256_hex(data) != file.sha256 {
                return Err(BundleError::Checksum(file.path.clone()));
            }
        }
        for path in &manifest.secrets {
            if !is_managed_file(path) {
                return Err(BundleError::OutsideTree(path.clone()));
            }
        }
        for dir in &manifest.dirs {
            if !is_managed_dir(&dir.path) {
                return Err(BundleError::OutsideTree(dir.path.clone()));
            }
        }
        for key in &manifest.keys {
            if !is_key_file(&key.private_path) || !is_key_file(&key.txt_path) {
                return Err(BundleError::OutsideTree(key.private_path.clone()));
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

    pub fn spec_text(&self) -> String {
        String::from_utf8_lossy(self.member("spec.yaml")).into_owned()
    }

    /// The template overrides the bundle was rendered with.
    pub fn templates(&self) -> Vec<(String, String)> {
        self.members
            .iter()
            .filter_map(|(name, data)| {
                let name = name.strip_prefix("templates/")?;
                Some((name.to_string(), String::from_utf8_lossy(data).into_owned()))
            })
            .collect()
    }

    /// Private keys shipped in the bundle (target path, PEM).
    pub fn private_keys(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.members
            .iter()
            .filter_map(|(name, data)| Some((name.strip_prefix("keys")?, data.as_slice())))
    }

    /// The desired state the bundle describes; `secrets` are the credential
    /// files rendered on the host.
    pub fn desired(&self, secrets: Vec<File>) -> Desired {
        let mut files: Vec<File> = self
            .manifest
            .files
            .iter()
            .map(|f| File {
                path: f.path.clone(),
                content: String::from_utf8_lossy(self.member(&file_member(&f.path))).into_owned(),
                owner: f.owner,
                mode: f.mode,
                secret: false,
            })
            .collect();
        files.extend(secrets);
        Desired {
            dirs: self.manifest.dirs.clone(),
            keys: self.manifest.keys.clone(),
            files,
            group_members: vec![GroupMember {
                user: "postfix",
                group: "opendkim",
            }],
        }
    }

    fn member(&self, name: &str) -> &[u8] {
        self.members
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

fn is_managed_dir(path: &str) -> bool {
    let spool = format!("{}/opendkim", paths::POSTFIX_SPOOL);
    [
        "/etc/postfix",
        "/etc/default",
        paths::APTICRON_DIR,
        paths::OPENDKIM_DIR,
        paths::KEYS_DIR,
    ]
    .contains(&path)
        || path == spool
        || path
            .strip_prefix(paths::KEYS_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(is_key_set)
}

/// `/etc/opendkim/keys/<set>/<selector>.private|.txt`.
fn is_key_file(path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix(paths::KEYS_DIR)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    let Some((set, file)) = rest.split_once('/') else {
        return false;
    };
    let selector = file
        .strip_suffix(".private")
        .or_else(|| file.strip_suffix(".txt"));
    is_key_set(set) && selector.is_some_and(|s| check_selector(s).is_ok())
}

fn is_key_set(set: &str) -> bool {
    set == crate::desired::SHARED_KEY
        || set
            .parse::<crate::spec::DomainName>()
            .is_ok_and(|d| d.as_str() == set)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the desired state names, a bundle may carry.
    #[test]
    fn every_desired_path_is_accepted() {
        let (spec, _) = crate::spec::parse(
            "host:\n  hostname: mail.example.com\n  relay:\n    host: relay.example.net\n    auth:\n      username: u\n      password_file: /p\ndomains:\n  example.com:\ndkim:\n  key: per-domain\naliases:\n  root: a@example.net\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        let facts = crate::desired::HostFacts {
            key_selectors: Default::default(),
            signing_selectors: Default::default(),
            relay_password: Some("pw".into()),
            today: "2026-11-24".parse().unwrap(),
        };
        let templates = crate::templates::Templates::load(None).unwrap();
        let desired = crate::desired::desired(&spec, "t.yaml", &templates, &facts).unwrap();
        assert!(desired.files.iter().any(|f| f.secret));
        for file in &desired.files {
            assert!(is_managed_file(&file.path), "{}", file.path);
        }
        for dir in &desired.dirs {
            assert!(is_managed_dir(&dir.path), "{}", dir.path);
        }
        for key in &desired.keys {
            assert!(is_key_file(&key.private_path) && is_key_file(&key.txt_path));
        }
    }

    #[test]
    fn only_managed_paths_pass() {
        assert!(is_managed_file("/etc/postfix/main.cf"));
        assert!(!is_managed_file("/etc/shadow"));
        assert!(!is_managed_file("/etc/postfix/../shadow"));
        assert!(is_key_file("/etc/opendkim/keys/shared/20261124.private"));
        assert!(is_key_file("/etc/opendkim/keys/example.com/mail.txt"));
        assert!(!is_key_file("/etc/opendkim/keys/../../shadow.private"));
        assert!(!is_key_file("/etc/opendkim/keys/shared/../x.private"));
        assert!(is_managed_dir("/etc/opendkim/keys/example.com"));
        assert!(!is_managed_dir("/etc/opendkim/keys/.."));
        assert!(!is_managed_dir("/root"));
    }
}
