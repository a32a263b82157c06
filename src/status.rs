//! What the mail did, for `mailsetup status`: the queue, deliveries by
//! receiver over a window, what OpenDKIM signed or could not, the DKIM keys'
//! ages and next rotation steps, the last apply. Pure: a `Report` in, text,
//! JSON or the Prometheus textfile format out.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use crate::maillog::{Outcome, Summary};
use crate::queue::Queue;
use crate::state::LastApply;

/// Written into the JSON, so a monitor can tell the shape it reads.
pub const FORMAT: &str = "mailsetup-status/1";

/// A key set's signing key, as `status` shows it.
#[derive(Debug, Serialize)]
pub struct KeyStatus {
    pub set: String,
    pub selector: String,
    /// Since when it signs (or was made), if known.
    pub since: Option<jiff::civil::Date>,
    pub age_days: Option<i64>,
    /// The next rotation step and from when it is due.
    pub next: Option<String>,
    pub due: Option<jiff::civil::Date>,
}

/// Everything `status` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub now: Timestamp,
    pub since: Timestamp,
    /// Where the deliveries were read from.
    pub sources: Vec<String>,
    /// `None` when the queue could not be read here (not the live system).
    pub queue: Option<Queue>,
    pub log: Summary,
    pub keys: Vec<KeyStatus>,
    pub last_apply: Option<LastApply>,
    /// What this user could not read (the keys and state are root's): not
    /// "all good" (exit 4) when nothing else needs attention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
    /// Why `status` says "attention" (exit 3): each thing to look at.
    pub attention: Vec<String>,
}

impl Report {
    /// What needs a person: a message sent unsigned, OpenDKIM failing to
    /// sign, a message waiting more than a day, a missing key, a rotation
    /// step overdue by more than a week, a failed last apply.
    pub fn judge(&mut self, today: jiff::civil::Date) {
        let mut attention = Vec::new();
        if !self.log.unsigned.is_empty() {
            attention.push(format!(
                "{} message(s) left without a DKIM signature (queue ids {})",
                self.log.unsigned.len(),
                self.log
                    .unsigned
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let errors: u64 = self.log.signing_errors.values().sum();
        if errors > 0 {
            attention.push(format!("OpenDKIM could not sign {errors} time(s)"));
        }
        if let Some(age) = self.oldest_queued_seconds()
            && age > 86_400
        {
            attention.push(format!(
                "a message has waited in the queue for {}",
                duration(age)
            ));
        }
        for k in &self.keys {
            if k.next.as_deref() == Some(crate::rotation::Next::Apply.name()) {
                attention.push(format!(
                    "key set {}: its key {} does not exist (mailsetup apply makes it)",
                    k.set, k.selector
                ));
            }
            if let Some(due) = k.due
                && today > due.saturating_add(jiff::Span::new().days(7))
            {
                attention.push(format!(
                    "key set {}: {} was due on {due}",
                    k.set,
                    k.next.as_deref().unwrap_or("the next rotation step")
                ));
            }
        }
        if self.last_apply.as_ref().is_some_and(|l| !l.ok) {
            attention.push("the last apply failed".into());
        }
        self.attention = attention;
    }

    fn oldest_queued_seconds(&self) -> Option<i64> {
        let oldest = self.queue.as_ref()?.oldest_arrival?;
        Some((self.now.as_second() - oldest).max(0))
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        match &self.queue {
            None => out += "Queue: not read (not the running system)\n",
            Some(q) if q.messages == 0 => out += "Queue: empty\n",
            Some(q) => {
                let by: Vec<String> = q.by_queue.iter().map(|(n, c)| format!("{n} {c}")).collect();
                let _ = writeln!(
                    out,
                    "Queue: {} message(s) ({}); the oldest waits for {}",
                    q.messages,
                    by.join(", "),
                    duration(self.oldest_queued_seconds().unwrap_or(0))
                );
                let width = q.by_receiver.keys().map(|d| d.len()).max().unwrap_or(0);
                for (domain, w) in &q.by_receiver {
                    let _ = writeln!(
                        out,
                        "  {domain:<width$}  {:>5} waiting  {}",
                        w.recipients,
                        w.reason.as_deref().unwrap_or("")
                    );
                }
            }
        }
        let window = (self.now.as_second() - self.since.as_second()).max(0);
        let _ = writeln!(
            out,
            "\nDeliveries in the last {} (since {}), from {}:",
            duration(window),
            self.since.strftime("%Y-%m-%d %H:%M UTC"),
            if self.sources.is_empty() {
                "no log".to_string()
            } else {
                self.sources.join(", ")
            }
        );
        if self.log.receivers.is_empty() {
            out += "  none\n";
        } else {
            let width = self
                .log
                .receivers
                .keys()
                .map(|d| d.len())
                .max()
                .unwrap_or(0)
                .max(8);
            let _ = writeln!(
                out,
                "  {:<width$}  {:>7}  {:>8}  {:>7}",
                "RECEIVER", "SENT", "DEFERRED", "BOUNCED"
            );
            for (domain, r) in &self.log.receivers {
                let _ = writeln!(
                    out,
                    "  {domain:<width$}  {:>7}  {:>8}  {:>7}",
                    r.sent,
                    r.deferred,
                    r.bounced + r.expired
                );
                let mut reasons: Vec<_> = r.reasons.iter().collect();
                reasons.sort_by(|a, b| b.1.cmp(a.1));
                for ((outcome, reason), count) in reasons.into_iter().take(3) {
                    let _ = writeln!(out, "      {count}× {} {reason}", outcome.name());
                }
            }
        }
        out += "\nSigning (OpenDKIM):";
        if !self.log.saw_opendkim {
            out += " no OpenDKIM lines in the log read: whether mail left signed is not known\n";
        } else {
            let total: u64 = self.log.signed.values().sum();
            let by: Vec<String> = self
                .log
                .signed
                .iter()
                .map(|(d, c)| format!("{d} {c}"))
                .collect();
            let _ = writeln!(
                out,
                " {total} signed ({}); {} left unsigned",
                by.join(", "),
                self.log.unsigned.len()
            );
            for (error, count) in &self.log.signing_errors {
                let _ = writeln!(out, "  {count}× {error}");
            }
        }
        out += "\nDKIM keys:\n";
        if self.keys.is_empty() {
            out += "  none read\n";
        }
        for k in &self.keys {
            let _ = writeln!(
                out,
                "  {}  {}  {}{}",
                k.set,
                k.selector,
                match (k.since, k.age_days) {
                    (Some(since), Some(age)) => format!("signing since {since} ({age} days)"),
                    _ => "no key yet".to_string(),
                },
                match (&k.next, k.due) {
                    (Some(next), Some(due)) => format!("; next: {next} from {due}"),
                    (Some(next), None) => format!("; next: {next}"),
                    _ => String::new(),
                }
            );
        }
        match &self.last_apply {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "\nLast apply: {}, {}",
                    l.time.strftime("%Y-%m-%d %H:%M UTC"),
                    if l.ok { "ok" } else { "FAILED" }
                );
            }
            None => out += "\nLast apply: none recorded\n",
        }
        if !self.unread.is_empty() {
            out += "\nNot read as this user (run as root to see them):\n";
            for u in &self.unread {
                let _ = writeln!(out, "  - {u}");
            }
        }
        if self.attention.is_empty() {
            out += "\nNothing needs attention.\n";
        } else {
            out += "\nNeeds attention:\n";
            for a in &self.attention {
                let _ = writeln!(out, "  - {a}");
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    /// The node_exporter textfile format (text exposition format 0.0.4).
    /// Receivers beyond the 20 busiest are summed as `receiver="other"`, so
    /// the series stay few.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP mailsetup_{name} {help}");
            let _ = writeln!(out, "# TYPE mailsetup_{name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "mailsetup_{name}{labels} {value}");
            }
        };
        let window = (self.now.as_second() - self.since.as_second()).max(0);
        metric(
            "status_window_seconds",
            "The window the delivery counts cover.",
            vec![(String::new(), window as f64)],
        );
        if let Some(q) = &self.queue {
            let mut samples: Vec<(String, f64)> =
                ["active", "deferred", "hold", "incoming", "maildrop"]
                    .iter()
                    .map(|n| {
                        (
                            format!("{{queue=\"{n}\"}}"),
                            *q.by_queue.get(*n).unwrap_or(&0) as f64,
                        )
                    })
                    .collect();
            samples.sort_by(|a, b| a.0.cmp(&b.0));
            metric(
                "queue_messages",
                "Messages in Postfix's queue, by queue.",
                samples,
            );
            metric(
                "queue_oldest_seconds",
                "How long the oldest queued message has waited (0: empty).",
                vec![(
                    String::new(),
                    self.oldest_queued_seconds().unwrap_or(0) as f64,
                )],
            );
        }
        let mut busiest: Vec<(&String, u64)> = self
            .log
            .receivers
            .iter()
            .map(|(d, r)| (d, r.sent + r.deferred + r.bounced + r.expired))
            .collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let named: std::collections::HashSet<&String> =
            busiest.iter().take(20).map(|(d, _)| *d).collect();
        let mut counts: std::collections::BTreeMap<(String, Outcome), u64> = Default::default();
        for (domain, r) in &self.log.receivers {
            let key = if named.contains(domain) {
                domain.clone()
            } else {
                "other".to_string()
            };
            for (outcome, n) in [
                (Outcome::Sent, r.sent),
                (Outcome::Deferred, r.deferred),
                (Outcome::Bounced, r.bounced),
                (Outcome::Expired, r.expired),
            ] {
                *counts.entry((key.clone(), outcome)).or_default() += n;
            }
        }
        metric(
            "deliveries",
            "Delivery attempts in the window, by outcome and receiver domain.",
            counts
                .into_iter()
                .map(|((d, o), n)| {
                    (
                        format!("{{outcome=\"{}\",receiver=\"{}\"}}", o.name(), label(&d)),
                        n as f64,
                    )
                })
                .collect(),
        );
        if self.log.saw_opendkim {
            metric(
                "unsigned_messages",
                "Messages sent on to another host without a DKIM signature in the window.",
                vec![(String::new(), self.log.unsigned.len() as f64)],
            );
            metric(
                "signing_errors",
                "Times OpenDKIM could not sign in the window.",
                vec![(
                    String::new(),
                    self.log.signing_errors.values().sum::<u64>() as f64,
                )],
            );
        }
        // Prometheus wants base units: days as seconds.
        metric(
            "dkim_key_age_seconds",
            "How long the signing key of each key set has signed (whole days).",
            self.keys
                .iter()
                .filter_map(|k| {
                    Some((
                        format!(
                            "{{set=\"{}\",selector=\"{}\"}}",
                            label(&k.set),
                            label(&k.selector)
                        ),
                        (k.age_days? * 86_400) as f64,
                    ))
                })
                .collect(),
        );
        let today = self.now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        metric(
            "rotation_next_step_seconds",
            "Until the next rotation step of each key set is due, in whole days (negative: overdue).",
            self.keys
                .iter()
                .filter_map(|k| {
                    let due = k.due?;
                    let days = today.until(due).ok()?.get_days();
                    Some((
                        format!(
                            "{{set=\"{}\",step=\"{}\"}}",
                            label(&k.set),
                            label(k.next.as_deref().unwrap_or(""))
                        ),
                        f64::from(days) * 86_400.0,
                    ))
                })
                .collect(),
        );
        if let Some(l) = &self.last_apply {
            metric(
                "last_apply_timestamp_seconds",
                "When the last apply (or rotation step) ran.",
                vec![(String::new(), l.time.as_second() as f64)],
            );
            metric(
                "last_apply_success",
                "Whether the last apply succeeded (1) or failed (0).",
                vec![(String::new(), if l.ok { 1.0 } else { 0.0 })],
            );
        }
        metric(
            "status_unread",
            "Parts of the status this user could not read (the keys and state are root's).",
            vec![(String::new(), self.unread.len() as f64)],
        );
        metric(
            "attention",
            "Things that need a person (what `mailsetup status` lists).",
            vec![(String::new(), self.attention.len() as f64)],
        );
        out
    }
}

/// A label value as the exposition format escapes it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `5h 12m`, `3d 2h`, `40s`.
pub fn duration(seconds: i64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `24h`, `7d`, `30m`, `90s`: a window for `--since`.
pub fn parse_window(text: &str) -> Result<jiff::SignedDuration, String> {
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a window like 24h, 7d or 30m"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: the unit is s, m, h or d")),
    };
    Ok(jiff::SignedDuration::from_secs(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_durations_read_and_print() {
        assert_eq!(parse_window("24h").unwrap().as_secs(), 86_400);
        assert_eq!(parse_window("7d").unwrap().as_secs(), 604_800);
        assert!(parse_window("soon").is_err() && parse_window("5y").is_err());
        assert_eq!(duration(40), "40s");
        assert_eq!(duration(18_720), "5h 12m");
        assert_eq!(duration(86_400), "1d");
        assert_eq!(duration(3 * 86_400 + 7_200), "3d 2h");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
