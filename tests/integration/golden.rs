//! The rendered files of every example, pinned in tests/golden/<example>/.
//! After an intended change: `UPDATE_GOLDEN=1 cargo test golden` and review the diff.

use std::path::{Path, PathBuf};

use crate::support::{Test, path_str, root, targets, tree};

/// Rendered configuration only: keys are random, .db files are binary.
fn rendered(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    tree(&root.join("etc"))
        .into_iter()
        .filter(|(p, _)| {
            !p.starts_with("opendkim/keys")
                && !p.starts_with("mailsetup")
                && p.extension().is_none_or(|e| e != "db")
        })
        .collect()
}

#[test]
fn rendered_files_match_the_golden_copies() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for t in targets() {
        let root = root();
        Test::new()
            .args(&t.args("apply", path_str(root.path()), &[]))
            .run();
        let got = rendered(root.path());
        let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(&t.label)
            .join("etc");
        if update {
            let _ = std::fs::remove_dir_all(&golden_dir);
            for (rel, content) in &got {
                let path = golden_dir.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            continue;
        }
        let want = tree(&golden_dir);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{}: the set of rendered files changed (UPDATE_GOLDEN=1 to accept)",
            t.label
        );
        for (rel, content) in &got {
            assert!(
                want[rel] == *content,
                "{}: etc/{} differs from the golden copy (UPDATE_GOLDEN=1 to accept):\n{}",
                t.label,
                rel.display(),
                String::from_utf8_lossy(content)
            );
        }
    }
}

#[test]
fn every_generated_file_says_it_is_managed() {
    let root = root();
    Test::new()
        .args(&[
            "apply",
            &crate::support::example("smarthost.yaml"),
            "--root",
            path_str(root.path()),
        ])
        .run();
    for (rel, content) in rendered(root.path()) {
        // /etc/mailname is a single line read by Postfix and other tools: no room for a comment.
        if rel == Path::new("mailname") {
            continue;
        }
        let text = String::from_utf8_lossy(&content);
        assert!(
            text.contains("Managed by mailsetup"),
            "etc/{} lacks the managed-by header",
            rel.display()
        );
    }
}
