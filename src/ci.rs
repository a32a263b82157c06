//! The CI flow around bundles: `public-keys` on the hosts, `bundle` in CI,
//! `apply --bundle` back on each host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::BundleArgs;
use crate::desired::{self, HostFacts};
use crate::spec::{self, Spec};
use crate::system::System;
use crate::{
    Job, actual, backup, bundle as archive, dns, execute, keys, load_spec, out, plan, preflight,
    rotate, templates, today, warn_missing,
};

/// Pairs each key with its public half, read from the private key on `system`.
fn with_public_keys(
    system: &System,
    keys: Vec<desired::Key>,
) -> Result<Vec<(desired::Key, Option<keys::DkimPublicKey>)>> {
    keys.into_iter()
        .map(|key| {
            let public = match system.read_file(&key.private_path)? {
                None => None,
                Some(file) => Some(
                    keys::DkimPublicKey::from_private_pem(&String::from_utf8_lossy(&file.content))
                        .with_context(|| format!("read the DKIM key {}", key.private_path))?,
                ),
            };
            Ok((key, public))
        })
        .collect()
}

/// Public keys exported with `public-keys`: DIR/SET/SELECTOR.txt.
fn read_public_keys(dir: &Path) -> Result<Exported> {
    let mut out: Exported = BTreeMap::new();
    let sets = std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))?;
    for set in sets {
        let set = set?;
        if !set.file_type()?.is_dir() {
            continue;
        }
        let set_name = set.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(set.path())? {
            let path = file?.path();
            let Some(selector) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".txt"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            // The record's quoted strings joined, then its p= tag.
            let value: String = text.split('"').skip(1).step_by(2).collect();
            let p = value
                .split(';')
                .find_map(|tag| tag.trim().strip_prefix("p="))
                .with_context(|| format!("{}: no p= tag", path.display()))?;
            let public = keys::DkimPublicKey::from_p_value(p)
                .with_context(|| format!("read the public key in {}", path.display()))?;
            out.entry(set_name.clone())
                .or_default()
                .insert(selector.to_string(), public);
        }
    }
    Ok(out)
}

/// The file in an export that names the selector signing on one host: a
/// staged key is exported too (it must be published), but must not sign yet.
fn signing_marker(set: &str, hostname: &spec::DomainName) -> String {
    format!("{set}/signing-{hostname}")
}

pub fn public_keys(
    spec_path: &Path,
    host: Option<&str>,
    root: &Path,
    out_dir: &Path,
) -> Result<u8> {
    let spec = load_spec(spec_path)?.for_host(host)?;
    let system = System::new(root)?;
    let mut written = Vec::new();
    let mut write = |rel: String, text: String| -> Result<()> {
        let path = out_dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a directory"))
            .with_context(|| format!("create the directory of {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        written.push(path.display().to_string());
        Ok(())
    };
    for (set, selectors) in system.key_selectors()? {
        for selector in selectors {
            let private_path = format!("{}/{selector}.private", desired::key_dir(&set));
            let file = system
                .read_file(&private_path)?
                .with_context(|| format!("{private_path} vanished"))?;
            let public =
                keys::DkimPublicKey::from_private_pem(&String::from_utf8_lossy(&file.content))
                    .with_context(|| format!("read the DKIM key {private_path}"))?;
            write(
                format!("{set}/{selector}.txt"),
                public.genkey_txt(&selector, ""),
            )?;
        }
    }
    let signing = desired::keys(
        &spec,
        &system.key_selectors()?,
        &rotate::signing_selectors(&spec, &system)?,
        today()?,
    )?;
    for key in signing {
        write(
            signing_marker(&key.set, spec.hostname()),
            format!("{}\n", key.selector),
        )?;
    }
    out(format!(
        "wrote {} files:\n  {}\n",
        written.len(),
        written.join("\n  ")
    ))
}

/// The signing selector of each key set in an export, for this host.
fn exported_signing(dir: &Path, spec: &Spec) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (set, _) in desired::key_sets(spec) {
        let path = dir.join(signing_marker(&set, spec.hostname()));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let selector = spec::names::check_selector(text.trim())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                out.insert(set, selector);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        }
    }
    Ok(out)
}

type Exported = BTreeMap<String, BTreeMap<String, keys::DkimPublicKey>>;

/// Each key with its public half from an export, if the export has it.
fn paired_with_export(
    keys: &[desired::Key],
    exported: &Exported,
) -> Vec<(desired::Key, Option<keys::DkimPublicKey>)> {
    keys.iter()
        .map(|k| {
            let public = exported
                .get(&k.set)
                .and_then(|s| s.get(&k.selector))
                .cloned();
            (k.clone(), public)
        })
        .collect()
}

/// The records of one host (a `for_host` spec) from the public keys its host
/// exported: what `dns --public-keys` prints in CI.
pub(crate) fn records_from_export(
    spec: &Spec,
    dir: &Path,
) -> Result<(Vec<dns::Record>, Vec<String>)> {
    let exported = read_public_keys(dir)?;
    let known = exported
        .iter()
        .map(|(set, sels)| (set.clone(), sels.keys().cloned().collect()))
        .collect();
    let keys = desired::keys(spec, &known, &exported_signing(dir, spec)?, today()?)?;
    Ok(dns::records(spec, &paired_with_export(&keys, &exported)))
}

pub fn bundle(args: BundleArgs) -> Result<u8> {
    let spec_text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("read {}", args.spec.display()))?;
    let spec = load_spec(&args.spec)?.for_host(args.host.as_deref())?;
    let overrides = match &args.templates {
        Some(dir) => templates::read_dir(dir)?,
        None => Vec::new(),
    };
    let templates = templates::Templates::with_overrides(overrides.clone())?;
    // Keys: from the host tree, from exported public keys, or none (CI before the first apply).
    let (known, system) = match (&args.root, &args.public_keys) {
        (Some(root), _) => {
            let system = System::new(root)?;
            (system.key_selectors()?, Some(system))
        }
        (None, Some(dir)) => {
            let exported = read_public_keys(dir)?;
            let selectors = exported
                .iter()
                .map(|(set, sels)| (set.clone(), sels.keys().cloned().collect()))
                .collect();
            (selectors, None)
        }
        (None, None) => (BTreeMap::new(), None),
    };
    let dated = spec
        .dkim
        .selector
        .as_str()
        .contains(spec::names::DATE_PLACEHOLDER);
    let unknown_sets = desired::key_sets(&spec)
        .iter()
        .any(|(set, _)| known.get(set).is_none_or(Vec::is_empty));
    if dated && unknown_sets && std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        bail!(
            "dkim.selector contains {{date}} and no key is known for it: give --public-keys \
             (or --root), or set SOURCE_DATE_EPOCH, so the bundle does not depend on the day it is built"
        );
    }
    let facts = HostFacts {
        key_selectors: known,
        // On the host, its rotation state says which key signs; an export says
        // what that host's state said.
        signing_selectors: match (&system, &args.public_keys) {
            (Some(system), _) => rotate::signing_selectors(&spec, system)?,
            (None, Some(dir)) => exported_signing(dir, &spec)?,
            (None, None) => BTreeMap::new(),
        },
        // Credentials are rendered on the host from the bundled spec, never in CI.
        relay_password: Some(String::new()),
        today: today()?,
    };
    let spec_name = args
        .spec
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let desired = desired::desired(&spec, &spec_name, &templates, &facts)?;
    let with_public = match (&system, &args.public_keys) {
        (Some(system), _) => with_public_keys(system, desired.keys.clone())?,
        (None, Some(dir)) => paired_with_export(&desired.keys, &read_public_keys(dir)?),
        (None, None) => desired.keys.iter().map(|k| (k.clone(), None)).collect(),
    };
    let (records, missing) = dns::records(&spec, &with_public);
    warn_missing(&missing);
    let mut private_keys = Vec::new();
    if args.include_private_keys {
        let system = system
            .as_ref()
            .expect("--include-private-keys requires --root");
        for key in &desired.keys {
            if let Some(file) = system.read_file(&key.private_path)? {
                private_keys.push((key.private_path.clone(), file.content));
            }
        }
        let mut stderr = anstream::stderr();
        let yellow = anstyle::AnsiColor::Yellow.on_default().bold();
        let _ = writeln!(
            stderr,
            "{yellow}warning:{yellow:#} the bundle holds {} private key(s): store and send it like a password",
            private_keys.len()
        );
    }
    let bytes = archive::build(&archive::Contents {
        host: args.host.clone(),
        desired: &desired,
        spec_name: &spec_name,
        spec_text: &spec_text,
        templates: overrides,
        dns_zone: dns::zone(&records, &missing),
        dns_json: serde_json::to_string_pretty(&records)? + "\n",
        dns_missing: missing,
        private_keys,
    })?;
    write_atomically(
        &args.out,
        &bytes,
        if args.include_private_keys {
            0o600
        } else {
            0o644
        },
    )?;
    out(format!(
        "wrote {} ({} bytes)\n",
        args.out.display(),
        bytes.len()
    ))
}

/// Writes a file outside any managed tree (a bundle), all or nothing.
fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
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

pub fn apply_bundle(file: &Path, root: &Path) -> Result<u8> {
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let bundle =
        archive::Bundle::read(&bytes).with_context(|| format!("refuse {}", file.display()))?;
    let (spec, warnings) =
        spec::parse(&bundle.spec_text(), Path::new("spec.yaml (in the bundle)"))?;
    let spec = spec.for_host(bundle.manifest.host.as_deref())?;
    for w in warnings {
        warn_missing(&[w.to_string()]);
    }
    let templates = templates::Templates::with_overrides(bundle.templates())?;
    let system = System::new(root)?;
    preflight(&system, &spec)?;
    let job = Job {
        spec,
        spec_name: bundle.manifest.spec_name.clone(),
        templates,
        system,
    };
    let facts = job.facts()?;
    // Only the credential files are rendered here; everything else is the bundle's.
    let secrets: Vec<desired::File> = job
        .desired(&facts)?
        .files
        .into_iter()
        .filter(|f| bundle.manifest.secrets.contains(&f.path))
        .collect();
    let desired = bundle.desired(secrets);
    backup::ensure_state_dir(&job.system)?;
    let _lock = job.system.lock(backup::LOCK)?;
    for (path, pem) in bundle.private_keys() {
        if job.system.path(path).symlink_metadata().is_err() {
            let ids = job
                .system
                .can_chown()
                .then(|| {
                    job.system
                        .accounts()
                        .ok()?
                        .ids(desired::OPENDKIM.user, desired::OPENDKIM.group)
                })
                .flatten();
            let dir = Path::new(path).parent().expect("key path has a directory");
            std::fs::create_dir_all(job.system.path(&dir.to_string_lossy()))?;
            job.system.create_private_file(path, pem, ids)?;
        }
    }
    let actual = actual::read(&job.system, &desired)?;
    let plan = plan::plan(&job.system.root().display().to_string(), &desired, &actual);
    execute(&job.system, &plan)
}
