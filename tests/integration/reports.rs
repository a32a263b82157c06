//! `mailsetup reports` on tests/reports/corpus/ (written by
//! tests/reports/make-corpus.py: reports as Google, Outlook.com, Yahoo, an
//! RFC 7489 reporter and a DMARCbis one send them, plus files that are not
//! reports), its totals checked against parsedmarc's on the same files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::support::{Test, path_str, test_tool};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reports")
}

fn spec() -> String {
    dir().join("mailsetup.yaml").display().to_string()
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The files that are not reports, and why mailsetup says so.
const UNREADABLE: [(&str, &str); 3] = [
    ("broken.xml.gz", "gzip: incomplete deflate stream"),
    ("missing-metadata.xml", "missing field `report_metadata`"),
    (
        "not-a-report.eml",
        "a mail message (Hello) with no DMARC report attached",
    ),
];

/// (messages, aligned DKIM passes, aligned SPF passes, DMARC passes).
type Totals = [u64; 4];

#[test]
fn reports_totals_are_parsedmarcs() {
    let Some(python) = test_tool("python3") else {
        return;
    };
    let script = dir().join("parsedmarc-totals.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(corpus())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parsedmarc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<String> = theirs["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| name(std::path::Path::new(f["path"].as_str().unwrap())))
        .collect();
    // Both refuse the files that are not reports; parsedmarc also the report
    // whose XML is quoted-printable (it base64-decodes every attachment).
    let mut expected: Vec<String> = UNREADABLE.iter().map(|(f, _)| f.to_string()).collect();
    expected.push("qp-example.eml".into());
    expected.sort();
    assert_eq!(failed, expected, "{}", theirs["failed"]);

    // mailsetup on the files parsedmarc read: the same totals, domain by
    // domain and source by source.
    let both: Vec<String> = corpus()
        .into_iter()
        .filter(|p| !failed.contains(&name(p)))
        .map(|p| p.display().to_string())
        .collect();
    let ours = Test::new()
        .args(&["reports", &spec(), "--format", "json"])
        .args(&both.iter().map(String::as_str).collect::<Vec<_>>())
        .any_status()
        .run();
    let ours: serde_json::Value = serde_json::from_str(&ours.stdout).unwrap();
    assert_eq!(ours["format"], "mailsetup-reports/1");
    let mut mine: BTreeMap<String, (Totals, BTreeMap<String, Totals>)> = BTreeMap::new();
    for d in ours["domains"].as_array().unwrap() {
        let entry = mine
            .entry(d["domain"].as_str().unwrap().into())
            .or_default();
        for s in d["sources"].as_array().unwrap() {
            let row: Totals = ["messages", "dkim", "spf", "dmarc"].map(|k| s[k].as_u64().unwrap());
            let src = entry.1.entry(s["ip"].as_str().unwrap().into()).or_default();
            for i in 0..4 {
                entry.0[i] += row[i];
                src[i] += row[i];
            }
        }
    }
    let mut parsed: BTreeMap<String, (Totals, BTreeMap<String, Totals>)> = BTreeMap::new();
    for (domain, d) in theirs["domains"].as_object().unwrap() {
        let totals = |v: &serde_json::Value| -> Totals {
            let a = v.as_array().unwrap();
            [0, 1, 2, 3].map(|i| a[i].as_u64().unwrap())
        };
        let sources = d["sources"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(ip, v)| (ip.clone(), totals(v)))
            .collect();
        parsed.insert(domain.clone(), (totals(&d["total"]), sources));
    }
    assert_eq!(mine, parsed);
    assert_eq!(
        mine["example.com"].0,
        [111, 94, 79, 94],
        "the corpus changed"
    );
}

#[test]
fn reports_verdicts_name_the_evidence_and_every_unreadable_file() {
    let files: Vec<String> = corpus().iter().map(|p| p.display().to_string()).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let mut all = Test::new()
        .args(&["reports", &spec()])
        .args(&files)
        .status(1)
        .stdout_has("(1 seen twice, counted once); 3 file(s) could not be read")
        .stdout_has(
            "Verdict: safe: all 85 of your messages passed DMARC: p=quarantine or p=reject \
             loses none of them, and stops 17 message(s) failing DMARC from 3 other source(s)",
        )
        .stdout_has("9 message(s) from sources the spec does not know passed DMARC")
        .stdout_has("198.51.100.77   your key          6")
        .stdout_has("d=example.com s=20251001")
        .stdout_has(
            "198.51.100.3  your host        10       0      10      10  spf ip 198.51.100.0/28",
        )
        .stdout_has(
            "Verdict: NOT SAFE: p=quarantine or p=reject would have lost 4 of your 47 messages",
        )
        .stdout_has(
            "192.0.2.25 (your host): 4 message(s), From: example.org; dkim d=example.org \
             s=20251001 fail; spf mail.example.com softfail; disposition none; Yahoo report \
             1762041600.740321, 2025-11-02 to 2025-11-02",
        );
    for (file, why) in UNREADABLE {
        all = all.stderr_has(format!("{file}: {why}"));
    }
    all.run();

    // A directory reads the same; without the unreadable files, the verdict
    // decides the exit status: 3 while some of your mail would be lost.
    let whole = Test::new()
        .args(&["reports", &spec(), path_str(&dir().join("corpus"))])
        .status(1)
        .run();
    assert!(whole.stdout.contains("4 of your 47 messages"));
    let good: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !UNREADABLE.iter().any(|(u, _)| f.ends_with(u)))
        .collect();
    Test::new()
        .args(&["reports", &spec()])
        .args(&good)
        .status(3)
        .run();
    let com: Vec<&str> = good
        .iter()
        .copied()
        .filter(|f| !f.contains("example.org") && !f.contains("qp-example"))
        .collect();
    let json = Test::new()
        .args(&["reports", &spec(), "--format", "json"])
        .args(&com)
        .run();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["domains"][0]["verdict"]["kind"], "safe");
    assert_eq!(json["domains"][0]["published"]["np"], "reject");
}

#[test]
fn reports_refuse_nothing_silently() {
    let empty = tempfile::tempdir().unwrap();
    // No file at all is an error naming the path; a spec error too.
    Test::new()
        .args(&["reports", &spec(), "/nonexistent/report.xml"])
        .status(1)
        .stderr_has("/nonexistent/report.xml")
        .run();
    Test::new()
        .args(&["reports", &spec(), path_str(empty.path())])
        .stdout_has("Read 0 report(s) from 0 file(s).")
        .run();
    Test::new()
        .args(&["reports", &spec()])
        .status(1)
        .stderr_has("FILE|DIR")
        .run();
}
