//! The fleet flow with the engine fleets already run: ansible-core over SSH to
//! two bare Debian hosts (systemd-nspawn, network namespaces of the test's
//! own), installing the .deb `cargo deb` builds from this tree and applying
//! signed bundles: see tests/fleet/fleet.sh. In CI (`CI=true`) it must run;
//! elsewhere it needs root and the tools tests/run.sh installs.

use std::process::Command;

use crate::support::{Test, missing_in_ci, path_str, test_tool};

#[test]
fn ansible_takes_a_fleet_from_bare_hosts_to_signed_mail() {
    if !crate::support::root_or_skip()
        || missing_in_ci(&[
            "mmdebstrap",
            "systemd-nspawn",
            "nsenter",
            "ip",
            "ssh-keygen",
        ])
    {
        return;
    }
    let Some(_ansible) = test_tool("ansible-playbook") else {
        return;
    };
    let cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::support::available(cargo_deb, "cargo-deb") {
        return;
    }

    // The package as the README's Packaging section makes it, from the binary
    // under test (dev profile: no second, release build in the test run).
    let manifest = env!("CARGO_MANIFEST_DIR");
    let bin = env!("CARGO_BIN_EXE_mailsetup");
    let assets = std::path::Path::new(manifest).join("target/assets");
    std::fs::create_dir_all(&assets).unwrap();
    Test::new()
        .args(&["man", "--out", assets.join("man").to_str().unwrap()])
        .run();
    for (args, file) in [
        (&["completions", "bash"][..], "mailsetup.bash"),
        (&["completions", "zsh"][..], "_mailsetup"),
        (&["completions", "fish"][..], "mailsetup.fish"),
    ] {
        std::fs::write(assets.join(file), Test::new().args(args).run().stdout).unwrap();
    }
    let debs = tempfile::tempdir().unwrap();
    crate::support::succeed(
        Command::new("cargo")
            .args([
                "deb",
                "--no-build",
                "--profile",
                "dev",
                "--fast",
                "--output",
            ])
            .arg(debs.path())
            .current_dir(manifest),
    );
    let deb = std::fs::read_dir(debs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");

    // Not support::Test: the script runs the binary on the fleet's hosts.
    crate::support::run_script(
        "tests/fleet/fleet.sh",
        &[bin, path_str(&deb)],
        "mta01 converges",
    );
}
