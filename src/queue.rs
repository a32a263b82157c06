//! Postfix's queue as `postqueue -j` reports it (one JSON object a line):
//! how many messages wait, where, for which receivers, since when. Pure but
//! for `read`, which asks the host through its `Host` trait.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::host::Host;

/// One queued message, as `postqueue -j` prints it (fields not read are ignored).
#[derive(Debug, Deserialize)]
struct Queued {
    queue_name: String,
    arrival_time: i64,
    #[serde(default)]
    recipients: Vec<Recipient>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    address: String,
    #[serde(default)]
    delay_reason: Option<String>,
}

/// The queue, summed up.
#[derive(Debug, Default, Serialize)]
pub struct Queue {
    /// Messages by queue (`active`, `deferred`, `hold`, `incoming`, `maildrop`).
    pub by_queue: BTreeMap<String, u64>,
    /// Recipients waiting, by receiver domain, with the last reason of each domain.
    pub by_receiver: BTreeMap<String, Waiting>,
    /// The oldest message's arrival (Unix seconds), if any.
    pub oldest_arrival: Option<i64>,
    pub messages: u64,
    /// Lines of `postqueue -j` that were not understood (a newer Postfix's
    /// format): the summary may miss those messages.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_understood: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Default, Serialize)]
pub struct Waiting {
    pub recipients: u64,
    pub reason: Option<String>,
}

impl Queue {
    /// The live host's queue; `None` under `--root` or without Postfix.
    pub fn read(host: &dyn Host) -> Result<Option<Queue>> {
        if !host.is_live() || host.find_program("postqueue").is_none() {
            return Ok(None);
        }
        let mut queue = Queue::default();
        host.report_lines("postqueue", &["-j"], &mut |line| {
            if queue.line(line).is_err() {
                queue.not_understood += 1;
            }
        })?;
        Ok(Some(queue))
    }

    /// Adds one line of `postqueue -j`; a line that is not one is skipped
    /// (and counted as such by the caller's `Err`).
    pub fn line(&mut self, line: &str) -> Result<(), String> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let q: Queued = serde_json::from_str(line).map_err(|e| e.to_string())?;
        self.messages += 1;
        *self.by_queue.entry(q.queue_name).or_default() += 1;
        self.oldest_arrival = Some(match self.oldest_arrival {
            Some(t) => t.min(q.arrival_time),
            None => q.arrival_time,
        });
        for r in q.recipients {
            let domain = r
                .address
                .rsplit_once('@')
                .map_or("(local)", |(_, d)| d)
                .to_ascii_lowercase();
            let waiting = self.by_receiver.entry(domain).or_default();
            waiting.recipients += 1;
            if r.delay_reason.is_some() {
                waiting.reason = r.delay_reason;
            }
        }
        Ok(())
    }

    /// Whether some message may have arrived before `t` (Unix seconds), and
    /// so carry a signature made then: one did, or a line was not understood.
    pub fn older_than(&self, t: i64) -> bool {
        self.not_understood > 0 || self.oldest_arrival.is_some_and(|a| a < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postqueue_json_is_summed_up() {
        let mut q = Queue::default();
        for line in [
            r#"{"queue_name": "deferred", "queue_id": "6F1A2", "arrival_time": 1733390000, "message_size": 600, "forced_expire": false, "sender": "a@example.com", "recipients": [{"address": "x@outlook.com", "delay_reason": "host said: 451 4.7.650 throttled"}, {"address": "y@outlook.com"}]}"#,
            r#"{"queue_name": "active", "queue_id": "7F1A2", "arrival_time": 1733400000, "message_size": 600, "sender": "a@example.com", "recipients": [{"address": "z@gmail.com"}]}"#,
            "",
        ] {
            q.line(line).unwrap();
        }
        assert!(q.line("{not json").is_err());
        assert_eq!(q.messages, 2);
        assert_eq!(q.by_queue["deferred"], 1);
        assert_eq!(q.by_receiver["outlook.com"].recipients, 2);
        assert!(
            q.by_receiver["outlook.com"]
                .reason
                .as_deref()
                .unwrap()
                .contains("4.7.650")
        );
        assert_eq!(q.oldest_arrival, Some(1733390000));
        assert!(q.older_than(1733395000) && !q.older_than(1733380000));
    }
}
