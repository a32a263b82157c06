//! A bare Debian 12 host (no mail packages) booted with systemd as PID 1 in
//! systemd-nspawn, taken all the way by `mailsetup apply`: see
//! tests/fresh_host/fresh-host.sh. The only test of the apt and systemctl
//! paths, so in CI (`CI=true`) it must run; elsewhere it needs root,
//! mmdebstrap and systemd-nspawn and says it is skipped without them.

#[test]
fn a_bare_debian_host_is_taken_all_the_way() {
    if !crate::support::root_or_skip() {
        return;
    }
    if crate::support::missing_in_ci(&["mmdebstrap", "systemd-nspawn", "nsenter"]) {
        return;
    }
    let _alone = crate::support::DAEMONS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Not support::Test: the script runs the binary inside the booted container.
    crate::support::run_script(
        "tests/fresh_host/fresh-host.sh",
        &[env!("CARGO_BIN_EXE_mailsetup")],
        "a second apply changes nothing",
    );
}
