//! The fleet flow with the engine fleets already run: ansible-core over SSH to
//! two bare Debian hosts (systemd-nspawn, network namespaces of the test's
//! own), installing the .deb `cargo deb` builds from this tree and applying
//! signed bundles: see tests/fleet/fleet.sh. In CI (`CI=true`) it must run;
//! elsewhere it needs root and the tools tests/run.sh installs.

use crate::support::{missing_in_ci, path_str, test_tool};

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
    let Some(deb) = crate::support::deb() else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_mailsetup");

    // Not support::Test: the script runs the binary on the fleet's hosts.
    crate::support::run_script(
        "tests/fleet/fleet.sh",
        &[bin, path_str(deb)],
        "mta01 converges",
    );
}
