//! The Debian packages a spec needs, and which of them a host lacks, read from
//! the dpkg database under the root. Pure: the host module reads the file and
//! runs apt.

use crate::spec::Spec;

/// Every package mailsetup may install: a plan (from any channel) names no other.
pub const KNOWN: &[&str] = &[
    "postfix",
    "opendkim",
    "opendkim-tools",
    "apticron",
    "libsasl2-modules",
    "unbound",
    "postfix-mta-sts-resolver",
];

/// Where dpkg records what is installed.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The packages the spec needs: the daemons and their tools, apticron (the spec
/// always configures it), the SASL mechanisms Postfix needs to log in to a
/// relay, for DANE a local validating resolver (Debian's unbound validates
/// with the root's trust anchor as installed), and for MTA-STS the resolver
/// of receivers' policies Postfix asks.
pub fn required(spec: &Spec) -> Vec<&'static str> {
    let mut out = vec!["postfix", "opendkim", "opendkim-tools", "apticron"];
    if spec.host.relay.as_ref().is_some_and(|r| r.auth.is_some()) {
        out.push("libsasl2-modules");
    }
    if spec.outbound.tls.dane() {
        out.push("unbound");
    }
    if spec.outbound.tls.mta_sts() {
        out.push("postfix-mta-sts-resolver");
    }
    out
}

/// The packages of `wanted` that the dpkg status file does not list as
/// installed (`Status: install ok installed`).
pub fn missing(wanted: &[&'static str], dpkg_status: &str) -> Vec<&'static str> {
    let mut installed = std::collections::HashSet::new();
    for stanza in dpkg_status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if let (Some(package), Some(status)) = (field("Package"), field("Status"))
            && status.ends_with(" installed")
            && status.starts_with("install ")
        {
            installed.insert(package.to_string());
        }
    }
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(*p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: postfix\nStatus: install ok installed\nVersion: 3.7\n\n\
        Package: opendkim\nStatus: deinstall ok config-files\n\n\
        Package: opendkim-tools\nArchitecture: amd64\nStatus: install ok installed\n\n\
        Package: apticron\nStatus: install ok half-configured\n";

    #[test]
    fn only_fully_installed_packages_count() {
        assert_eq!(
            missing(
                &["postfix", "opendkim", "opendkim-tools", "apticron"],
                STATUS
            ),
            ["opendkim", "apticron"]
        );
        assert_eq!(missing(&["postfix"], ""), ["postfix"]);
    }

    #[test]
    fn relay_auth_needs_the_sasl_mechanisms() {
        let (spec, _) = crate::spec::parse(
            "host:\n  hostname: m.example.com\n  relay:\n    host: r.example.net\n    auth:\n      username: u\n      password_file: /p\ndomains:\n  example.com:\naliases:\n  root: a@example.net\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        assert!(required(&spec).contains(&"libsasl2-modules"));
        assert!(required(&spec).iter().all(|p| KNOWN.contains(p)));
    }
}
