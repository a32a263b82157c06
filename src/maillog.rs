//! What the mail log says Postfix and OpenDKIM did: deliveries by receiver
//! domain (sent, deferred, bounced, with the receivers' reasons grouped),
//! what OpenDKIM signed and what it could not. Pure: lines in, a summary out,
//! one pass, memory in the number of messages of the window, not the log.
//!
//! Lines are syslog's (`Dec  5 09:10:26 host postfix/smtp[242]: …`, as
//! Postfix's own `maillog_file` writes them) or ISO-dated
//! (`2026-12-05T09:10:26.123456+00:00 host …`, as rsyslog and `journalctl -o
//! short-iso-precise` write them).

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use serde::Serialize;

/// How one delivery attempt ended (Postfix's `status=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Sent,
    Deferred,
    Bounced,
    Expired,
}

impl Outcome {
    fn parse(word: &str) -> Option<Outcome> {
        match word {
            "sent" => Some(Outcome::Sent),
            "deferred" => Some(Outcome::Deferred),
            "bounced" => Some(Outcome::Bounced),
            "expired" => Some(Outcome::Expired),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Deferred => "deferred",
            Outcome::Bounced => "bounced",
            Outcome::Expired => "expired",
        }
    }
}

/// Deliveries to one receiver domain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Receiver {
    pub sent: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    /// Why it deferred or bounced, grouped: (outcome, reason) → attempts.
    #[serde(serialize_with = "reasons")]
    pub reasons: HashMap<(Outcome, String), u64>,
}

fn reasons<S: serde::Serializer>(
    map: &HashMap<(Outcome, String), u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Reason<'a> {
        outcome: Outcome,
        reason: &'a str,
        count: u64,
    }
    let mut list: Vec<Reason> = map
        .iter()
        .map(|((outcome, reason), count)| Reason {
            outcome: *outcome,
            reason,
            count: *count,
        })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(b.reason)));
    serde::Serialize::serialize(&list, s)
}

/// What the log says of a window.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// By receiver domain (lower-cased).
    pub receivers: BTreeMap<String, Receiver>,
    /// Messages OpenDKIM signed, by `d=` domain.
    pub signed: BTreeMap<String, u64>,
    /// OpenDKIM's complaints (a key it could not load, no SigningTable
    /// match), grouped: text → times.
    pub signing_errors: BTreeMap<String, u64>,
    /// Queue ids of messages that went to another host without OpenDKIM
    /// having signed them (only known when OpenDKIM's lines are in the log).
    pub unsigned: Vec<String>,
    /// Whether OpenDKIM's lines were in the log at all.
    pub saw_opendkim: bool,
    /// Lines read, and those in the window.
    pub lines: u64,
    pub in_window: u64,
}

/// Reads log lines one at a time.
pub struct Reader {
    since: Timestamp,
    now: Timestamp,
    summary: Summary,
    /// Queue ids OpenDKIM signed in the window, until Postfix removes them
    /// (so memory follows the messages in flight, not the log's length, when
    /// one log holds both daemons' lines in order).
    signed_ids: HashSet<String>,
    /// Queue ids sent to another host with no signature seen yet, in the
    /// order seen: unsigned, unless a later log (OpenDKIM's own) signs them.
    relayed: Vec<String>,
    /// A copy local(8) forwarded (an alias to an outside address) → the
    /// message it copies, whose signature it carries.
    forwarded: HashMap<String, String>,
}

impl Reader {
    /// Counts what happened from `since` to `now`.
    pub fn new(since: Timestamp, now: Timestamp) -> Reader {
        Reader {
            since,
            now,
            summary: Summary::default(),
            signed_ids: HashSet::new(),
            relayed: Vec::new(),
            forwarded: HashMap::new(),
        }
    }

    pub fn line(&mut self, line: &str) {
        self.summary.lines += 1;
        let Some((at, program, message)) = split(line, self.now) else {
            return;
        };
        if at < self.since || at > self.now {
            return;
        }
        self.summary.in_window += 1;
        if program == "opendkim" {
            self.summary.saw_opendkim = true;
            self.opendkim(message);
        } else if program.starts_with("postfix") && message.contains(" status=") {
            self.delivery(program, message);
        } else if program == "postfix/qmgr"
            && let Some((id, "removed")) = queue_id(message)
        {
            // Delivered or returned, every copy it forwarded noted: done.
            self.signed_ids.remove(id);
        }
    }

    fn opendkim(&mut self, message: &str) {
        let Some((id, text)) = queue_id(message) else {
            return;
        };
        if let Some(tags) = text.strip_prefix("DKIM-Signature field added (") {
            let d = tags
                .split([',', ')'])
                .find_map(|t| t.trim().strip_prefix("d="))
                .unwrap_or("?")
                .to_ascii_lowercase();
            *self.summary.signed.entry(d).or_default() += 1;
            self.signed_ids.insert(id.to_string());
        } else {
            *self
                .summary
                .signing_errors
                .entry(template(text))
                .or_default() += 1;
        }
    }

    fn delivery(&mut self, program: &str, message: &str) {
        let Some((id, rest)) = queue_id(message) else {
            return;
        };
        let Some(to) = field(rest, "to=<").and_then(|t| t.split('>').next()) else {
            return;
        };
        let Some(status) = field(rest, " status=") else {
            return;
        };
        let (word, reason) = match status.split_once(' ') {
            Some((w, r)) => {
                let r = r.trim();
                let r = r
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or(r);
                (w, r)
            }
            None => (status.trim_end_matches(','), ""),
        };
        let Some(outcome) = Outcome::parse(word) else {
            return;
        };
        let domain = to
            .rsplit_once('@')
            .map_or("(local)", |(_, d)| d)
            .to_ascii_lowercase();
        let receiver = self.summary.receivers.entry(domain).or_default();
        match outcome {
            Outcome::Sent => receiver.sent += 1,
            Outcome::Deferred => receiver.deferred += 1,
            Outcome::Bounced => receiver.bounced += 1,
            Outcome::Expired => receiver.expired += 1,
        }
        if outcome != Outcome::Sent {
            *receiver
                .reasons
                .entry((outcome, template(reason)))
                .or_default() += 1;
        }
        if let Some(copy) = reason.strip_prefix("forwarded as ") {
            // The copy carries the original's signature.
            let copy = copy.trim().to_string();
            if self.signed_ids.contains(id) {
                self.signed_ids.insert(copy);
            } else {
                self.forwarded.insert(copy, id.to_string());
            }
        }
        // What left for another host is what DKIM is for.
        let remote = program.ends_with("/smtp") || program.ends_with("/lmtp");
        if outcome == Outcome::Sent && remote && !self.signed_ids.contains(id) {
            self.relayed.push(id.to_string());
        }
    }

    /// The summary; a message sent on without a signature is named. A copy
    /// an alias forwarded carries its original's signature.
    pub fn finish(mut self) -> Summary {
        if self.summary.saw_opendkim {
            let signed = |id: &String| {
                let mut id = id;
                // Forwarded copies of forwarded copies: a chain, never a loop
                // longer than the ids seen.
                for _ in 0..=self.forwarded.len() {
                    if self.signed_ids.contains(id) {
                        return true;
                    }
                    match self.forwarded.get(id) {
                        Some(original) => id = original,
                        None => return false,
                    }
                }
                false
            };
            let mut seen = HashSet::new();
            self.summary.unsigned = self
                .relayed
                .iter()
                .filter(|id| !signed(id) && seen.insert((*id).clone()))
                .cloned()
                .collect();
        }
        self.summary
    }
}

/// A line's time, program (`postfix/smtp`, `opendkim`) and message.
fn split(line: &str, now: Timestamp) -> Option<(Timestamp, &str, &str)> {
    let (at, rest) = if line.as_bytes().first()?.is_ascii_digit() {
        let (stamp, rest) = line.split_once(' ')?;
        (iso(stamp)?, rest)
    } else {
        // `Dec  5 09:10:26` or `Dec 05 09:10:26`: the year is this one, or
        // the last when that would be in the future.
        let stamp = line.get(..15)?;
        (syslog(stamp, now)?, line.get(16..)?)
    };
    // `host tag[pid]: message`; some syslog writers leave the host out.
    let (first, after) = rest.split_once(' ')?;
    let rest = if first.ends_with(':') { rest } else { after };
    let (tag, message) = rest.split_once(": ")?;
    let program = tag.split('[').next()?;
    Some((at, program, message))
}

fn iso(stamp: &str) -> Option<Timestamp> {
    if let Ok(t) = stamp.parse::<Timestamp>() {
        return Some(t);
    }
    // journalctl's `+0000` offset has no colon.
    let (head, offset) = stamp.split_at(stamp.len().checked_sub(5)?);
    let with_colon = format!("{head}{}:{}", &offset[..3], &offset[3..]);
    with_colon.parse().ok()
}

fn syslog(stamp: &str, now: Timestamp) -> Option<Timestamp> {
    // Syslog stamps are the host's local time.
    let zone = jiff::tz::TimeZone::system();
    let year = now.to_zoned_datetime(zone.clone()).year();
    let parse = |y: i16| {
        jiff::civil::DateTime::strptime("%Y %b %e %H:%M:%S", format!("{y} {stamp}"))
            .ok()?
            .to_zoned_datetime(zone.clone())
            .ok()
            .map(|z| z.timestamp())
    };
    let at = parse(year)?;
    if at > now + jiff::SignedDuration::from_hours(24) {
        return parse(year - 1);
    }
    Some(at)
}

/// `ABC123: rest` → (`ABC123`, `rest`), for Postfix's queue ids.
fn queue_id(message: &str) -> Option<(&str, &str)> {
    let (id, rest) = message.split_once(": ")?;
    id.chars()
        .all(|c| c.is_ascii_alphanumeric())
        .then_some((id, rest))
}

/// What follows `name` in `text`.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.find(name).map(|i| &text[i + name.len()..])
}

/// A reason as it repeats across messages: addresses in brackets, queue ids
/// and long numbers left out, cut at 120 characters.
fn template(reason: &str) -> String {
    let reason = reason
        .strip_prefix("host ")
        .and_then(|r| r.split_once(" said: ").map(|(_, said)| said))
        .unwrap_or(reason);
    let mut out = String::with_capacity(reason.len().min(120));
    let mut in_brackets = false;
    for c in reason.chars() {
        match c {
            '[' => {
                in_brackets = true;
                out.push_str("[…");
            }
            ']' => {
                in_brackets = false;
                out.push(']');
            }
            _ if in_brackets => {}
            c => out.push(c),
        }
        if out.chars().count() >= 120 {
            out.push('…');
            break;
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-05T12:00:00Z".parse().unwrap()
    }

    fn read(lines: &[&str]) -> Summary {
        let since: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let mut r = Reader::new(since, now());
        for l in lines {
            r.line(l);
        }
        r.finish()
    }

    #[test]
    fn deliveries_are_counted_by_receiver_with_their_reasons() {
        let s = read(&[
            "Dec 05 09:10:26 mail postfix/smtp[242]: 70113585: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.26]:25, delay=0.16, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 OK 1733 - gsmtp)",
            "Dec  5 09:11:00 mail postfix/smtp[243]: 80113585: to=<b@outlook.com>, relay=x[52.1.1.1]:25, delay=1, delays=0/0/0/0, dsn=4.7.650, status=deferred (host x[52.1.1.1] said: 451 4.7.650 The mail server [198.51.100.7] has been temporarily rate limited due to IP reputation. (in reply to MAIL FROM command))",
            "2026-12-05T09:12:00.123456+00:00 mail postfix/smtp[244]: 90113585: to=<c@outlook.com>, relay=x[52.1.1.2]:25, delay=1, delays=0/0/0/0, dsn=4.7.650, status=deferred (host x[52.1.1.2] said: 451 4.7.650 The mail server [198.51.100.7] has been temporarily rate limited due to IP reputation. (in reply to MAIL FROM command))",
            "2026-12-05T09:13:00+0000 mail postfix/smtp[245]: A0113585: to=<d@example.net>, relay=y[192.0.2.9]:25, delay=1, delays=0/0/0/0, dsn=5.1.1, status=bounced (host y[192.0.2.9] said: 550 5.1.1 <d@example.net>: Recipient address rejected: User unknown (in reply to RCPT TO command))",
            "Dec 05 09:14:00 mail postfix/local[246]: B0113585: to=<ops@mail.example.com>, orig_to=<root>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to mailbox)",
            // Outside the window: yesterday morning.
            "Dec 04 09:00:00 mail postfix/smtp[1]: C0113585: to=<e@gmail.com>, relay=g[1.2.3.4]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)",
            "garbage",
        ]);
        assert_eq!(s.lines, 7);
        assert_eq!(s.in_window, 5);
        assert_eq!(s.receivers["gmail.com"].sent, 1);
        let outlook = &s.receivers["outlook.com"];
        assert_eq!(outlook.deferred, 2);
        assert_eq!(outlook.reasons.len(), 1, "{:?}", outlook.reasons);
        let (key, count) = outlook.reasons.iter().next().unwrap();
        assert_eq!(*count, 2);
        assert!(
            key.1
                .starts_with("451 4.7.650 The mail server [… has been temporarily rate limited")
                || key
                    .1
                    .starts_with("451 4.7.650 The mail server […] has been"),
            "{}",
            key.1
        );
        assert_eq!(s.receivers["example.net"].bounced, 1);
        assert_eq!(s.receivers["mail.example.com"].sent, 1);
        // No OpenDKIM lines: nothing is said unsigned.
        assert!(!s.saw_opendkim && s.unsigned.is_empty());
    }

    #[test]
    fn messages_relayed_without_a_signature_are_named() {
        let s = read(&[
            "Dec 05 09:10:26 mail opendkim[143]: 70113585: DKIM-Signature field added (s=20261205, d=example.com)",
            "Dec 05 09:10:26 mail postfix/smtp[242]: 70113585: to=<a@gmail.com>, relay=g[1.2.3.4]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)",
            // A syslog writer that leaves the host out.
            "Dec 05 09:10:27 opendkim[143]: 80113585: error loading key 'example.com'",
            "Dec 05 09:10:28 mail postfix/smtp[243]: 80113585: to=<b@gmail.com>, relay=g[1.2.3.4]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)",
            "Dec 05 09:10:29 mail postfix/local[244]: 90113585: to=<root@mail.example.com>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to mailbox)",
            // An alias forwards a signed message: the copy carries its signature.
            "Dec 05 09:11:00 mail opendkim[143]: A0113585: DKIM-Signature field added (s=20261205, d=mail.example.com)",
            "Dec 05 09:11:00 mail postfix/local[245]: A0113585: to=<root@mail.example.com>, orig_to=<root>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (forwarded as B0113585)",
            "Dec 05 09:11:00 mail postfix/smtp[246]: B0113585: to=<ops@example.net>, relay=x[1.2.3.4]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)",
        ]);
        assert_eq!(s.signed["example.com"], 1);
        assert_eq!(s.unsigned, ["80113585"]);
        assert_eq!(s.signing_errors["error loading key 'example.com'"], 1);
    }

    /// One log in order (the journal): what Postfix removed is forgotten, so
    /// a day's log costs the messages in flight, and a copy relayed after
    /// its original was removed still counts as signed.
    #[test]
    fn memory_follows_the_messages_in_flight() {
        let since: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let mut r = Reader::new(since, now());
        for l in [
            "Dec 05 09:11:00 mail opendkim[143]: A0113585: DKIM-Signature field added (s=20261205, d=mail.example.com)",
            "Dec 05 09:11:00 mail postfix/local[245]: A0113585: to=<root@mail.example.com>, orig_to=<root>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (forwarded as B0113585)",
            "Dec 05 09:11:00 mail postfix/qmgr[100]: A0113585: removed",
            "Dec 05 09:11:01 mail postfix/smtp[246]: B0113585: to=<ops@example.net>, relay=x[1.2.3.4]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)",
            "Dec 05 09:11:01 mail postfix/qmgr[100]: B0113585: removed",
        ] {
            r.line(l);
        }
        assert!(r.signed_ids.is_empty() && r.relayed.is_empty() && r.forwarded.is_empty());
        assert!(r.finish().unsigned.is_empty());
    }
}
