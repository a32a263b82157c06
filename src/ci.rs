//! The CI flow around bundles: `public-keys` on the hosts, `bundle` in CI,
//! `apply --bundle` back on each host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::BundleArgs;
use crate::desired::{self, HostFacts};
use crate::exit::Exit;
use crate::host::{Host, HostMut, ReadOnly, System, local};
use crate::job::{Job, execute, load_spec, preflight, today};
use crate::source::Source;
use crate::spec::{self, HostSpec};
use crate::state;
use crate::ui::Ui;
use crate::{bundle as archive, dns, keys, keysets, signature};

/// Pairs each key with its public half, read from the private key on `system`.
fn with_public_keys(
    system: &impl Host,
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

/// No exported record or marker comes near this.
const MAX_EXPORTED: u64 = 64 << 10;

/// Public keys exported with `public-keys`: DIR/SET/SELECTOR.txt.
fn read_public_keys(dir: &Path) -> Result<Exported> {
    let mut out: Exported = BTreeMap::new();
    for (set_name, name, bytes) in local::read_tree(dir, MAX_EXPORTED)? {
        {
            let path = dir.join(&set_name).join(&name);
            let Some(selector) = name.strip_suffix(".txt") else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
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
    ui: &mut Ui,
) -> Result<Exit> {
    let spec = load_spec(spec_path, ui)?.for_host(host)?;
    let system = ReadOnly::new(root)?;
    let out = local::OutDir::open(out_dir)?;
    let mut written = Vec::new();
    let mut write = |rel: String, text: String| -> Result<()> {
        let path = out.write(&rel, text.as_bytes(), 0o644)?;
        written.push(path.display().to_string());
        Ok(())
    };
    for (set, selectors) in keysets::key_selectors(&system)? {
        for selector in selectors {
            let private_path = desired::KeyPath::new(&set, &selector).private;
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
        &keysets::key_selectors(&system)?,
        &keysets::signing_selectors(&spec, &system)?,
        today()?,
    )?;
    for key in signing {
        write(
            signing_marker(&key.set, spec.hostname()),
            format!("{}\n", key.selector),
        )?;
    }
    ui.out(&format!(
        "wrote {} files:\n  {}\n",
        written.len(),
        written.join("\n  ")
    ))?;
    Ok(Exit::Ok)
}

/// The signing selector of each key set in an export, for this host.
fn exported_signing(dir: &Path, spec: &HostSpec) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (set, _) in desired::key_sets(spec) {
        let path = dir.join(signing_marker(&set, spec.hostname()));
        if let Some(bytes) =
            local::read_if_present(&path, "the signing marker", MAX_EXPORTED, local::Follow::No)?
        {
            let text = String::from_utf8_lossy(&bytes);
            let selector = spec::names::check_selector(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            out.insert(set, selector);
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
    spec: &HostSpec,
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

pub fn bundle(args: BundleArgs, ui: &mut Ui) -> Result<Exit> {
    let source = Source::read_parts(&args.spec, args.host.as_deref(), args.templates.as_deref())?;
    let spec = load_spec(&args.spec, ui)?.for_host(args.host.as_deref())?;
    let templates = source.templates()?;
    let (known, system) = match (&args.root, &args.public_keys) {
        (Some(root), _) => {
            let system = ReadOnly::new(root)?;
            (keysets::key_selectors(&system)?, Some(system))
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
            (Some(system), _) => keysets::signing_selectors(&spec, system)?,
            (None, Some(dir)) => exported_signing(dir, &spec)?,
            (None, None) => BTreeMap::new(),
        },
        // Credentials are rendered on the host from the bundled spec, never in CI.
        relay_password: Some(String::new()),
        today: today()?,
    };
    let desired = desired::desired(&spec, &templates, &facts)?;
    let with_public = match (&system, &args.public_keys) {
        (Some(system), _) => with_public_keys(system, desired.keys.clone())?,
        (None, Some(dir)) => paired_with_export(&desired.keys, &read_public_keys(dir)?),
        (None, None) => desired.keys.iter().map(|k| (k.clone(), None)).collect(),
    };
    let (records, missing) = dns::records(&spec, &with_public);
    for m in &missing {
        ui.warn(m);
    }
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
        ui.warn(format_args!(
            "the bundle holds {} private key(s): store and send it like a password",
            private_keys.len()
        ));
    }
    let bytes = archive::build(&archive::Contents {
        source: &source,
        desired: &desired,
        dns_zone: dns::zone(&records, &missing),
        dns_json: serde_json::to_string_pretty(&records)? + "\n",
        dns_missing: missing,
        private_keys,
    })?;
    local::write_atomically(
        &args.out,
        &bytes,
        if args.include_private_keys {
            0o600
        } else {
            0o644
        },
    )?;
    let mut text = format!("wrote {} ({} bytes)\n", args.out.display(), bytes.len());
    if let Some(key) = &args.sign {
        let sig_path = signature::signature_path(&args.out);
        let armored = signature::sign(&bytes, key)?;
        local::write_atomically(&sig_path, armored.as_bytes(), 0o644)?;
        text += &format!(
            "wrote {} (SSH signature, namespace {})\n",
            sig_path.display(),
            signature::NAMESPACE
        );
    }
    ui.out(&text)?;
    Ok(Exit::Ok)
}

/// Applies a bundle: its signature is checked before anything else is read,
/// then the host renders the spec it carries (paths, modes, owners from the
/// managed-file table; credentials from this host) and refuses the bundle unless
/// its files are exactly that rendering.
pub fn apply_bundle(
    file: &Path,
    root: &Path,
    allowed_signers: Option<&Path>,
    skip_packages: bool,
    ui: &mut Ui,
) -> Result<Exit> {
    let bytes = read_signed(file, root, allowed_signers, ui)
        .with_context(|| format!("refuse {}; nothing was written", file.display()))?;
    let bundle =
        archive::Bundle::read(&bytes).with_context(|| format!("refuse {}", file.display()))?;
    let label = PathBuf::from(format!("{} (the spec in it)", file.display()));
    let source = Source {
        skip_packages,
        ..bundle.source()
    };
    let (job, warnings) = Job::<System>::from_source(source, &label, root)?;
    ui.warn_spec(&label, &warnings);
    preflight(&job.system, &job.spec)?;

    // The key each set signs with is the bundle's choice (CI knew what each host
    // exported); its paths are derived here.
    let sets: Vec<String> = desired::key_sets(&job.spec)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let chosen: BTreeMap<String, String> = bundle
        .manifest
        .keys
        .iter()
        .map(|k| (k.set.clone(), k.selector.clone()))
        .collect();
    if chosen.keys().ne(sets.iter()) || chosen.len() != bundle.manifest.keys.len() {
        bail!(
            "refuse {}: its keys name the sets {:?}, its spec has {:?}; nothing was written",
            file.display(),
            chosen.keys().collect::<Vec<_>>(),
            sets
        );
    }
    let facts = HostFacts {
        signing_selectors: chosen,
        ..job.facts(today()?)?
    };
    let desired = job.desired(&facts)?;
    let differs = |path: &str| {
        anyhow::anyhow!(
            "refuse {}: its {path} is not what its spec renders here (the bundle was altered, \
             or built by another mailsetup version); nothing was written",
            file.display()
        )
    };
    for f in desired.files.iter().filter(|f| !f.secret) {
        if bundle.file(&f.path) != Some(f.content.as_bytes()) {
            return Err(differs(&f.path));
        }
    }
    if let Some(extra) = bundle
        .manifest
        .files
        .iter()
        .find(|m| !desired.files.iter().any(|f| f.path == m.path))
    {
        return Err(differs(&extra.path));
    }
    let shipped: Vec<(desired::Key, &[u8])> = bundle
        .private_keys()
        .map(|(path, pem)| {
            desired
                .keys
                .iter()
                .find(|k| k.private_path == path)
                .map(|k| (k.clone(), pem))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "refuse {}: it carries the key {path}, which its spec does not use; \
                         nothing was written",
                        file.display()
                    )
                })
        })
        .collect::<Result<_>>()?;

    let fresh = keys_agree(&job, &desired.keys, &bundle, &shipped)
        .with_context(|| format!("refuse {}; nothing was written", file.display()))?;

    let lock = state::lock(&job.system)?;
    for (key, pem) in &shipped {
        install_private_key(&job.system, key, pem)?;
    }
    let plan = job.plan_to(desired)?;
    let exit = execute(
        &job.system,
        &lock,
        plan,
        || {
            // The opendkim user came with the packages just installed: the
            // shipped keys become its own.
            for (key, pem) in &shipped {
                install_private_key(&job.system, key, pem)?;
            }
            job.plan_to(job.desired(&facts)?)
        },
        ui,
    )?;
    // Keys made here are new: nothing publishes them yet.
    let mut text = String::new();
    for key in &fresh {
        if let Some(public) = keysets::public_key(&job.system, &key.private_path)? {
            let set = keysets::key_sets(&job.spec)
                .into_iter()
                .find(|s| s.name == key.set)
                .expect("the key's set is the spec's");
            text += &set.zone_lines(&key.selector, &public.dns_value());
        }
    }
    if !text.is_empty() {
        ui.out(&format!(
            "\nNew DKIM keys were made on this host; publish (and export them with \
             mailsetup public-keys for the next bundle):\n{text}"
        ))?;
    }
    Ok(exit)
}

/// The bundle's DNS records and this host's keys agree: a key the records
/// publish must be the one this host has (or the bundle carries); a host
/// without it would make a different key under a published name, and every
/// message would fail DKIM. Returns the keys the host will make, which no
/// record publishes yet.
fn keys_agree(
    job: &Job,
    keys: &[desired::Key],
    bundle: &archive::Bundle,
    shipped: &[(desired::Key, &[u8])],
) -> Result<Vec<desired::Key>> {
    let published = bundle.published_dkim();
    let mut fresh = Vec::new();
    for key in keys {
        let prefix = format!("{}._domainkey.", key.selector);
        let named: Vec<&(String, String)> = published
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .collect();
        let here = match shipped
            .iter()
            .find(|(k, _)| k.private_path == key.private_path)
        {
            Some((_, pem)) => Some(
                keys::DkimPublicKey::from_private_pem(&String::from_utf8_lossy(pem))
                    .with_context(|| format!("read the key {} in the bundle", key.private_path))?,
            ),
            None => keysets::public_key(&job.system, &key.private_path)?,
        };
        match (here, named.first()) {
            (None, None) => fresh.push(key.clone()),
            (None, Some((name, _))) => bail!(
                "its records publish {name} (key set {}), but this host has no private key {}: \
                 apply would make a different key under that name, and every message would fail \
                 DKIM. Put the key back (from a backup of this host), or run `mailsetup \
                 public-keys` here and build the bundle again from what it exports (a host \
                 without a key is given a new selector)",
                key.set,
                job.system.path(&key.private_path).display()
            ),
            (Some(public), _) => {
                if let Some((name, _)) = named.iter().find(|(_, p)| *p != public.p_value()) {
                    bail!(
                        "its records publish {name} with another key than this host's {}: the \
                         bundle was built from another host's keys; run `mailsetup public-keys` \
                         here and build it again",
                        job.system.path(&key.private_path).display()
                    );
                }
            }
        }
    }
    Ok(fresh)
}

/// A private key shipped in a bundle, put in place unless one is there: 0600
/// opendkim from its first byte, in its key set's directory. A key already
/// there is kept, and made opendkim's when that user exists (and we are root).
fn install_private_key(system: &System, key: &desired::Key, pem: &[u8]) -> Result<()> {
    let ids = system
        .can_chown()
        .then(|| {
            system
                .accounts()
                .ok()?
                .ids(desired::OPENDKIM.user, desired::OPENDKIM.group)
        })
        .flatten();
    if system.read_file(&key.private_path)?.is_some() {
        return match ids {
            Some(ids) => system.set_meta(&key.private_path, 0o600, Some(ids)),
            None => Ok(()),
        };
    }
    for dir in [desired::paths::KEYS_DIR.to_string(), key.dir()] {
        if system.read_dir_meta(&dir)?.is_none() {
            system.create_dir(&dir, desired::KEY_DIR_MODE, ids)?;
        }
    }
    system.create_private_file(&key.private_path, pem, ids, state::STATE_DIR)
}

/// The bundle's bytes, read once its signature is known to be checkable:
/// the allowed signers (the flag's file, else the host's) and BUNDLE.sig
/// first, then the bundle (256 MiB at most), which must carry the signature
/// of a listed key. Without allowed signers, an unsigned bundle is read with
/// a warning.
fn read_signed(
    file: &Path,
    root: &Path,
    allowed_signers: Option<&Path>,
    ui: &mut Ui,
) -> Result<Vec<u8>> {
    let host = ReadOnly::new(root)?;
    let signers_file = match allowed_signers {
        Some(f) => Some(f.to_path_buf()),
        None if host.exists(signature::HOST_ALLOWED_SIGNERS)? => {
            Some(host.path(signature::HOST_ALLOWED_SIGNERS))
        }
        None => None,
    };
    let read_bundle = || local::read(file, "the bundle", archive::MAX_FILE, local::Follow::Yes);
    let Some(signers_file) = signers_file else {
        ui.warn(format_args!(
            "{} is applied without a signature check: whoever could change it chose what \
             the managed files say. Sign bundles in CI (bundle --sign) and list the key in \
             {} on the host",
            file.display(),
            signature::HOST_ALLOWED_SIGNERS
        ));
        return read_bundle();
    };
    let signers = signature::AllowedSigners::read(&signers_file)?;
    let Some(sig) = signature::read_signature(file)? else {
        bail!(
            "it is not signed ({} is missing), and {} requires a signature",
            signature::signature_path(file).display(),
            signers_file.display()
        );
    };
    let bytes = read_bundle()?;
    let signer = signers.verify(&bytes, &sig, jiff::Timestamp::now())?;
    ui.note(format_args!("{}: signed by {signer}", file.display()));
    Ok(bytes)
}
