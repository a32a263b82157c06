//! `status`: what the mail did — the queue, deliveries by receiver from the
//! log, signing, the keys, the last apply — as text, JSON, or the Prometheus
//! textfile format written for node_exporter. Read only.

use anyhow::{Context, Result};

use crate::cli::{StatusArgs, StatusFormat};
use crate::exit::Exit;
use crate::host::{Host, ReadOnly, local};
use crate::job::{load_spec, today};
use crate::keysets::{Sets, key_sets};
use crate::maillog::Reader;
use crate::queue::Queue;
use crate::spec::HostSpec;
use crate::status::{KeyStatus, Report, parse_window};
use crate::ui::Ui;

/// The file `--format prometheus --out DIR` writes (node_exporter's textfile
/// collector reads every `*.prom` in its directory).
const PROM_FILE: &str = "mailsetup.prom";

pub fn run(args: &StatusArgs, ui: &mut Ui) -> Result<Exit> {
    let spec = load_spec(&args.spec, ui)?.for_host(args.host.as_deref())?;
    let system = ReadOnly::new(&args.root)?;
    let now = crate::job::now()?;
    let window = parse_window(&args.since).map_err(anyhow::Error::msg)?;
    let since = now - window;

    let mut reader = Reader::new(since, now);
    let mut sources = Vec::new();
    if !args.log.is_empty() {
        for path in &args.log {
            feed(
                &mut reader,
                local::open_lines(path)?,
                &path.display().to_string(),
            )?;
            sources.push(path.display().to_string());
        }
    } else {
        if let Some(file) = &spec.host.maillog_file
            && let Some(lines) = system.open_log(file.as_str())?
        {
            feed(&mut reader, lines, file.as_str())?;
            sources.push(file.to_string());
        }
        if system.is_live() && systemd() && system.find_program("journalctl").is_some() {
            // Postfix logs to its maillog_file instead of syslog when it has one.
            let mut units = vec!["-u", "opendkim.service"];
            if spec.host.maillog_file.is_none() {
                units.extend(["-u", "postfix*"]);
            }
            let since_arg = format!("--since=@{}", since.as_second());
            let mut args = vec!["-o", "short-iso-precise", "--no-pager", "-q", &since_arg];
            args.extend(units);
            system.report_lines("journalctl", &args, &mut |line| reader.line(line))?;
            sources.push("the journal".into());
        } else if system.is_live()
            && let Some(lines) = system.open_log("/var/log/mail.log")?
        {
            feed(&mut reader, lines, "/var/log/mail.log")?;
            sources.push("/var/log/mail.log".into());
        }
    }
    let log = reader.finish();

    let queue = Queue::read(&system)?;
    if let Some(bad) = queue.as_ref().map(|q| q.not_understood).filter(|n| *n > 0) {
        ui.warn(format_args!(
            "{bad} line(s) of postqueue -j were not understood"
        ));
    }

    let day = today()?;
    // The keys and the state directory are root's: a member of adm sees the
    // rest, and is told what it could not read (exit 4 unless 3).
    let mut unread = Vec::new();
    let keys = match keys(&spec, &system, day) {
        Ok(keys) => keys,
        Err(e) if crate::host::denied(&e) => {
            unread.push("the DKIM keys and their rotation state (root's)".to_string());
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let last_apply = match crate::state::last_apply(&system) {
        Ok(last) => last,
        Err(e) if crate::host::denied(&e) => {
            unread.push("the last apply (root's state directory)".to_string());
            None
        }
        Err(e) => return Err(e),
    };
    for what in &unread {
        ui.warn(format_args!(
            "not read as this user: {what}; run as root to see it"
        ));
    }

    let mut report = Report {
        format: crate::status::FORMAT,
        now,
        since,
        sources,
        queue,
        log,
        keys,
        last_apply,
        unread,
        attention: Vec::new(),
    };
    report.judge(day);
    match args.format {
        StatusFormat::Text => ui.out(&report.text())?,
        StatusFormat::Json => ui.out(&report.json())?,
        StatusFormat::Prometheus => match &args.out {
            Some(dir) => {
                // Silent when it worked, as cron and timers want it.
                let out = local::OutDir::open(dir)?;
                out.write(PROM_FILE, report.prometheus().as_bytes(), 0o644)?;
            }
            None => ui.out(&report.prometheus())?,
        },
    }
    Ok(if !report.attention.is_empty() {
        Exit::CheckFailed
    } else if !report.unread.is_empty() {
        Exit::Unverified
    } else {
        Exit::Ok
    })
}

/// Each key set's signing key, its age and next step.
fn keys(spec: &HostSpec, system: &ReadOnly, day: jiff::civil::Date) -> Result<Vec<KeyStatus>> {
    let sets = Sets::new(spec, system, day)?;
    let mut keys = Vec::new();
    for set in key_sets(spec) {
        let (rotation, _) = sets.current(&set)?;
        let Some(active) = rotation.active() else {
            continue;
        };
        let exists = system.exists(&set.private(&active.selector))?;
        let since = exists
            .then(|| active.activated.or(active.created))
            .flatten();
        let (next, due) = match exists {
            false => (Some(crate::rotation::Next::Apply), None),
            true => {
                // The set's next step: what its active, staged or retiring key waits for.
                rotation
                    .selectors
                    .iter()
                    .map(|e| rotation.next_step(e, &spec.dkim.rotation))
                    .find(|(n, _)| n.is_some())
                    .unwrap_or((None, None))
            }
        };
        keys.push(KeyStatus {
            set: set.name.clone(),
            selector: active.selector.clone(),
            since,
            age_days: since
                .and_then(|s| s.until(day).ok())
                .map(|s| i64::from(s.get_days())),
            next: next.map(|n| n.name().to_string()),
            due,
        });
    }
    Ok(keys)
}

fn feed(reader: &mut Reader, mut lines: Box<dyn std::io::BufRead>, what: &str) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = lines
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("read {what}"))?;
        if n == 0 {
            return Ok(());
        }
        reader.line(String::from_utf8_lossy(&buf).trim_end());
    }
}

/// Whether systemd runs the system (so its journal holds the logs).
fn systemd() -> bool {
    crate::host::local::exists(std::path::Path::new("/run/systemd/system"))
}
