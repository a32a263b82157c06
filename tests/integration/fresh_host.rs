//! A bare Debian host (no mail packages) booted with systemd as PID 1 in
//! systemd-nspawn, taken all the way by `mailsetup apply`: see
//! tests/fresh_host/fresh-host.sh. Debian 12 and Debian 13 (the stable
//! release, whose postfix.service is the real forking unit that skips itself
//! without main.cf). The only tests of the apt and systemctl paths, so in CI
//! (`CI=true`) they must run; elsewhere they need root, mmdebstrap and
//! systemd-nspawn and say they are skipped without them.

fn fresh_host(suite: &str) {
    if !crate::support::root_or_skip() {
        return;
    }
    if crate::support::missing_in_ci(&["mmdebstrap", "systemd-nspawn", "nsenter"]) {
        return;
    }
    let Some(deb) = crate::support::deb() else {
        return;
    };
    let _alone = crate::support::DAEMONS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Not support::Test: the script runs the binary inside the booted container.
    crate::support::run_script(
        "tests/fresh_host/fresh-host.sh",
        &[
            env!("CARGO_BIN_EXE_mailsetup"),
            suite,
            crate::support::path_str(deb),
        ],
        "a second apply changes nothing",
    );
}

#[test]
fn a_bare_debian_12_host_is_taken_all_the_way() {
    fresh_host("bookworm");
}

#[test]
fn a_bare_debian_13_host_is_taken_all_the_way() {
    fresh_host("trixie");
}
