//! `dns`: the records to publish, as zone lines, JSON or octoDNS zone files, or
//! pushed to the zones' primaries.

use anyhow::{Context, Result, bail};

use crate::cli::{DnsArgs, DnsFormat};
use crate::exit::Exit;
use crate::host::{ReadOnly, local};
use crate::job::today;
use crate::ui::Ui;
use crate::{ci, dns, keysets, octodns, push};

pub fn run(args: &DnsArgs, ui: &mut Ui) -> Result<Exit> {
    let spec = crate::job::load_spec(&args.spec, ui)?;
    let system = ReadOnly::new(&args.root)?;
    // One host, or every host of a fleet (keys under --root, or exported by each host).
    let hosts: Vec<Option<&str>> = match args.host.as_deref() {
        Some(h) => vec![Some(h)],
        None if spec.hosts.is_empty() => vec![None],
        None => spec.hosts.keys().map(|h| Some(h.as_str())).collect(),
    };
    if args.out.is_some() && args.format != DnsFormat::Octodns {
        bail!("--out goes with --format octodns (the other formats print)");
    }
    let today = today()?;
    let host_specs = hosts
        .iter()
        .map(|host| spec.for_host(*host))
        .collect::<Result<Vec<_>>>()?;
    let (mut records, mut missing) = (Vec::new(), Vec::new());
    // Records every host shares (SPF, DMARC) are listed once.
    let mut seen = std::collections::HashSet::new();
    for spec in &host_specs {
        let (more, gaps) = match args.public_keys.as_deref() {
            Some(dir) => ci::records_from_export(spec, dir)?,
            None => dns::records_for(spec, &keysets::published(spec, &system, today)?),
        };
        for record in more {
            if seen.insert((record.kind, record.name.clone(), record.value.clone())) {
                records.push(record);
            }
        }
        missing.extend(gaps);
    }
    for m in &missing {
        ui.warn(m);
    }
    if !missing.is_empty() && args.public_keys.is_none() {
        let on_each = args.host.is_none() && !spec.hosts.is_empty();
        let host = args.host.as_deref().or(on_each.then_some("NAME"));
        let again = crate::hint::Again::new(Some(&args.spec), host, &args.root);
        ui.warn(format_args!(
            "{} makes the missing keys{}",
            again.cmd("apply"),
            if on_each {
                ", on each host NAME of the fleet"
            } else {
                ""
            }
        ));
    }
    if args.push {
        if !missing.is_empty() {
            bail!("not pushed: some keys are missing (see the warnings above)");
        }
        let targets = push::Targets {
            server: args.server,
            tsig_key: args.tsig_key.as_deref(),
        };
        // Withdrawn selectors are deleted; with --public-keys (CI) the hosts'
        // rotation state is not here, so nothing is withdrawn.
        let mut withdrawn = Vec::new();
        if args.public_keys.is_none() {
            for spec in &host_specs {
                withdrawn.extend(keysets::withdrawn_names(spec, &system, today)?);
            }
        }
        let pushed = push::run(
            &spec,
            &system,
            &targets,
            &records,
            &withdrawn,
            !args.dry_run,
        )?;
        ui.out(&pushed.text)?;
        pushed.result()?;
        return Ok(Exit::Ok);
    }
    match args.format {
        DnsFormat::Octodns => {
            let dir = args.out.as_deref().context(
                "--format octodns writes one file per zone: name the directory with --out DIR",
            )?;
            let (files, outside) =
                octodns::zone_files(&records, &push::zone_names(&spec), spec.dns.ttl.get());
            let out = local::OutDir::open(dir)?;
            let mut text = String::new();
            for (zone, yaml) in files {
                let path = out.write(&format!("{zone}.yaml"), yaml.as_bytes(), 0o644)?;
                text += &format!("wrote {}\n", path.display());
            }
            for name in outside {
                text += &format!(
                    "not exported: {name} is in none of the zones; its owner publishes it\n"
                );
            }
            ui.out(&text)?;
        }
        DnsFormat::Zone => ui.out(&dns::zone(&records, &missing))?,
        DnsFormat::Json => ui.out(&(serde_json::to_string_pretty(&records)? + "\n"))?,
    }
    Ok(Exit::Ok)
}
