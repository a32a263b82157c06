//! `dns --format octodns`: the records as octoDNS YAML zone files, one per zone
//! (`ZONE.yaml`), for teams that keep DNS as code and sync it to a provider.
//!
//! octoDNS's YamlProvider is strict: names relative to the zone (`''` for the
//! apex), in its "natural" order, `;` in TXT values escaped as `\;`, one entry
//! per name with every value of that name.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::dns::Record;
use crate::push::{by_zone, wanted};

/// The zone files by zone name, and the names in none of `zones`.
pub fn zone_files(
    records: &[Record],
    zones: &[String],
    ttl: u32,
) -> (BTreeMap<String, String>, Vec<String>) {
    let (grouped, outside) = by_zone(wanted(records), zones);
    let files = grouped
        .into_iter()
        .map(|(zone, mut names)| {
            let relative = |n: &str| {
                n.strip_suffix(&zone)
                    .map(|r| r.trim_end_matches('.').to_string())
                    .unwrap_or_default()
            };
            names.sort_by(|a, b| natural(&relative(&a.name), &relative(&b.name)));
            let mut text = String::from(
                "---\n# DNS records for mailsetup (mailsetup dns --format octodns): only\n\
                 # mailsetup's records; add this directory as a source of the zone.\n",
            );
            for w in names {
                let _ = writeln!(text, "{}:", quote(&relative(&w.name)));
                let _ = writeln!(text, "  ttl: {ttl}");
                let _ = writeln!(text, "  type: TXT");
                let mut values: Vec<String> = w.values.iter().map(|v| quote(&escape(v))).collect();
                values.sort();
                if let [one] = values.as_slice() {
                    let _ = writeln!(text, "  value: {one}");
                } else {
                    let _ = writeln!(text, "  values:");
                    for v in values {
                        let _ = writeln!(text, "  - {v}");
                    }
                }
            }
            (zone, text)
        })
        .collect();
    (files, outside.into_iter().map(|w| w.name).collect())
}

/// octoDNS wants `;` in TXT values escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(';', "\\;")
}

/// A YAML single-quoted string (no escapes but `''`).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One run of a name: text, or digits compared as a number.
#[derive(PartialEq, Eq)]
enum Run<'a> {
    Text(&'a str),
    Number(&'a str),
}

/// natsort's order, as octoDNS checks it: text and digit runs alternate (a name
/// that starts with a digit starts with an empty text run), numbers compare by
/// value.
fn natural(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<Run<'_>> {
        let mut out = Vec::new();
        let mut rest = s;
        let mut digits = false;
        while !rest.is_empty() || out.is_empty() {
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            out.push(if digits {
                Run::Number(run)
            } else {
                Run::Text(run)
            });
            rest = tail;
            digits = !digits;
        }
        out
    }
    fn key<'a>(r: &Run<'a>) -> (usize, &'a str, &'a str) {
        match r {
            Run::Text(t) => (0, "", t),
            Run::Number(n) => {
                let n = n.trim_start_matches('0');
                (n.len(), n, "")
            }
        }
    }
    runs(a).iter().map(key).cmp(runs(b).iter().map(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Kind;

    #[test]
    fn names_in_octodns_natural_order() {
        let mut names = vec![
            "mail._dk",
            "app",
            "a.b",
            "mail10._dk",
            "_dmarc",
            "",
            "a-b",
            "20261130._domainkey",
            "a1",
            "mail2._dk",
        ];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(
            names,
            [
                "",
                "20261130._domainkey",
                "_dmarc",
                "a1",
                "a-b",
                "a.b",
                "app",
                "mail2._dk",
                "mail10._dk",
                "mail._dk"
            ]
        );
    }

    #[test]
    fn one_file_per_zone_with_escaped_values() {
        let rec = |name: &str, kind, value: &str| Record {
            kind,
            name: name.into(),
            rtype: "TXT",
            value: value.into(),
            note: None,
        };
        let records = [
            rec("_dmarc.example.com", Kind::Dmarc, "v=DMARC1; p=none"),
            rec("example.com", Kind::Spf, "v=spf1 a -all"),
            rec("x.example.net", Kind::DmarcReportAuth, "v=DMARC1"),
        ];
        let (files, outside) = zone_files(&records, &["example.com".into()], 3600);
        assert_eq!(outside, ["x.example.net"]);
        let file = &files["example.com"];
        assert!(
            file.contains("'':\n  ttl: 3600\n  type: TXT\n  value: 'v=spf1 a -all'\n'_dmarc':"),
            "{file}"
        );
        assert!(file.contains("value: 'v=DMARC1\\; p=none'"), "{file}");
    }
}
