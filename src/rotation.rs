//! The selector state machine of DKIM key rotation, pure: what `rotation.json`
//! holds, which moves are allowed (stage, activate, revoke), and when each is
//! due. `rotate` reads and writes the state and does the host's part.

use jiff::ToSpan;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::selector::State;
use crate::spec::Days;
use crate::spec::names::{check_selector, date_in};

/// One selector of a key set and the days it changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub selector: String,
    pub state: State,
    /// The day the key was made; unknown for a key from before rotation whose
    /// selector has no date.
    pub created: Option<Date>,
    /// The day signing switched to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated: Option<Date>,
    /// The day signing switched away from it: its grace period starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Date>,
    /// The day its private key was archived and its record revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Date>,
}

impl Entry {
    /// Revoked `keep` days ago or more: its record is no longer published.
    pub(crate) fn withdrawn(&self, keep: Days, today: Date) -> bool {
        self.state == State::Revoked && self.revoked.is_some_and(|d| after(d, keep) <= today)
    }
}

/// The content of `rotation.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    pub selectors: Vec<Entry>,
}

impl Rotation {
    pub(crate) fn find(&self, state: State) -> Option<&Entry> {
        self.selectors.iter().find(|e| e.state == state)
    }

    pub fn active(&self) -> Option<&Entry> {
        self.find(State::Active)
    }

    pub fn staged(&self) -> Option<&Entry> {
        self.find(State::Staged)
    }

    /// The selectors by state (active first), newest first within a state.
    pub(crate) fn listed(&self) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self.selectors.iter().collect();
        entries.sort_by(|a, b| (a.state, &b.selector).cmp(&(b.state, &a.selector)));
        entries
    }

    /// A state read from the host is trusted only when it makes sense: valid
    /// selectors (they name files), each once, one active, at most one staged,
    /// and the dates each state needs.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (i, e) in self.selectors.iter().enumerate() {
            check_selector(&e.selector)
                .map_err(|err| format!("selector `{}`: {err}", e.selector.escape_debug()))?;
            if self.selectors[..i].iter().any(|o| o.selector == e.selector) {
                return Err(format!("selector {} is listed twice", e.selector));
            }
            let dated = match e.state {
                State::Active | State::Staged => true,
                State::Retiring => e.retired.is_some(),
                State::Revoked => e.revoked.is_some(),
            };
            if !dated {
                return Err(format!(
                    "{} {} has no date for that state",
                    e.state, e.selector
                ));
            }
        }
        let count = |s| self.selectors.iter().filter(|e| e.state == s).count();
        if count(State::Active) != 1 || count(State::Staged) > 1 {
            return Err("there must be one active selector and at most one staged".into());
        }
        Ok(())
    }

    pub(crate) fn stage(&mut self, selector: String, today: Date) {
        self.selectors.push(Entry {
            selector,
            state: State::Staged,
            created: Some(today),
            activated: None,
            retired: None,
            revoked: None,
        });
    }

    /// The staged selector signs from today; the active one starts retiring.
    pub(crate) fn activate(&mut self, today: Date) {
        for e in &mut self.selectors {
            match e.state {
                State::Active => {
                    e.state = State::Retiring;
                    e.retired = Some(today);
                }
                State::Staged => {
                    e.state = State::Active;
                    e.activated = Some(today);
                }
                State::Retiring | State::Revoked => {}
            }
        }
    }

    pub(crate) fn revoke(&mut self, selector: &str, today: Date) {
        for e in self.selectors.iter_mut().filter(|e| e.selector == selector) {
            e.state = State::Revoked;
            e.revoked = Some(today);
        }
    }

    /// Retiring selectors whose grace period is over on `today`.
    pub(crate) fn finish_due(&self, grace: Days, today: Date) -> Vec<String> {
        self.selectors
            .iter()
            .filter(|e| e.state == State::Retiring)
            .filter(|e| e.retired.is_some_and(|d| after(d, grace) <= today))
            .map(|e| e.selector.clone())
            .collect()
    }

    /// The day the next rotation is due: `interval` after the active key started
    /// signing (or was made, for a key from before rotation).
    pub(crate) fn next_rotation(&self, interval: Days) -> Option<Date> {
        let active = self.active()?;
        Some(after(active.activated.or(active.created)?, interval))
    }
}

/// What comes next for a selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Next {
    /// `rotate start` stages a new key.
    Start,
    /// `rotate activate`, once DNS serves the key.
    Activate,
    /// `rotate finish` revokes it.
    Finish,
    /// The key does not exist yet: `apply` makes it.
    Apply,
}

impl Next {
    pub fn name(self) -> &'static str {
        match self {
            Next::Start => "rotate start",
            Next::Activate => "rotate activate",
            Next::Finish => "rotate finish",
            Next::Apply => "apply",
        }
    }
}

impl Rotation {
    /// The next step for `entry` of this rotation, and from when it is due
    /// (none for activate, which waits for DNS).
    pub fn next_step(
        &self,
        entry: &Entry,
        settings: &crate::spec::Rotation,
    ) -> (Option<Next>, Option<Date>) {
        match entry.state {
            State::Active if self.staged().is_none() => (
                Some(Next::Start),
                self.next_rotation(settings.interval_days),
            ),
            State::Staged => (Some(Next::Activate), None),
            State::Retiring => (
                Some(Next::Finish),
                entry.retired.map(|d| after(d, settings.grace_days)),
            ),
            State::Active | State::Revoked => (None, None),
        }
    }
}

pub(crate) fn after(day: Date, days: Days) -> Date {
    day.saturating_add(i32::from(days.get()).days())
}

/// Why a selector other than the active one is published.
pub(crate) fn note(entry: &Entry, grace: Days) -> Option<String> {
    let day = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_else(|| "?".into());
    Some(match entry.state {
        State::Active => return None,
        State::Staged => format!(
            "staged on {}: publish it now; rotate activate switches signing to it once DNS serves it",
            day(entry.created)
        ),
        State::Retiring => format!(
            "retiring since {}: keep it published until rotate finish revokes it (due {})",
            day(entry.retired),
            day(entry.retired.map(|d| after(d, grace)))
        ),
        State::Revoked => format!(
            "revoked on {}: the empty p= tells verifiers the key is withdrawn (RFC 6376 3.6.1)",
            day(entry.revoked)
        ),
    })
}

/// The date in a selector made from `pattern` (`mta1-{date}` and `mta1-20261124`).
pub(crate) fn selector_date(pattern: &str, selector: &str) -> Option<Date> {
    Date::strptime("%Y%m%d", date_in(pattern, selector)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn entry(selector: &str, state: State) -> Entry {
        Entry {
            selector: selector.into(),
            state,
            created: Some(date("2026-01-01")),
            activated: None,
            retired: None,
            revoked: None,
        }
    }

    #[test]
    fn a_rotation_moves_through_every_state() {
        let mut r = Rotation {
            selectors: vec![entry("20260101", State::Active)],
        };
        r.check().unwrap();
        r.stage("20260701".into(), date("2026-07-01"));
        r.check().unwrap();
        assert_eq!(r.staged().unwrap().selector, "20260701");
        r.activate(date("2026-07-03"));
        r.check().unwrap();
        assert_eq!(r.active().unwrap().selector, "20260701");
        assert_eq!(r.active().unwrap().activated, Some(date("2026-07-03")));
        assert_eq!(r.selectors[0].state, State::Retiring);
        assert_eq!(r.selectors[0].retired, Some(date("2026-07-03")));
        let grace = Days::try_from(7).unwrap();
        assert!(r.finish_due(grace, date("2026-07-09")).is_empty());
        assert_eq!(r.finish_due(grace, date("2026-07-10")), ["20260101"]);
        r.revoke("20260101", date("2026-07-10"));
        r.check().unwrap();
        assert_eq!(r.selectors[0].state, State::Revoked);
        assert_eq!(
            r.next_rotation(Days::try_from(180).unwrap()),
            Some(date("2026-12-30"))
        );
    }

    #[test]
    fn inconsistent_states_are_refused() {
        let two_active = Rotation {
            selectors: vec![entry("a", State::Active), entry("b", State::Active)],
        };
        assert!(two_active.check().unwrap_err().contains("one active"));
        let traversal = Rotation {
            selectors: vec![entry("../../x", State::Active)],
        };
        assert!(traversal.check().is_err());
        let undated = Rotation {
            selectors: vec![entry("a", State::Active), entry("b", State::Retiring)],
        };
        assert!(undated.check().unwrap_err().contains("no date"));
        let twice = Rotation {
            selectors: vec![entry("a", State::Active), entry("a", State::Staged)],
        };
        assert!(twice.check().unwrap_err().contains("twice"));
    }

    #[test]
    fn selector_dates_follow_the_pattern() {
        assert_eq!(
            selector_date("{date}", "20261124"),
            Some(date("2026-11-24"))
        );
        assert_eq!(
            selector_date("mta1-{date}", "mta1-20261124"),
            Some(date("2026-11-24"))
        );
        assert_eq!(selector_date("mail", "mail"), None);
        assert_eq!(selector_date("{date}", "20261124-2"), None);
    }
}
