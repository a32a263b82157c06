#!/usr/bin/env bash
# Installs what the tests need and runs them all: unit tests, CLI tests, golden
# files and the end-to-end suite with the real Postfix and OpenDKIM.
#
# Run as root on Debian/Ubuntu (the end-to-end suite starts the daemons in
# private namespaces). Elsewhere, or as a normal user, the packages are not
# installed and the end-to-end tests say they are skipped — except with
# CI=true, where anything missing is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postfix opendkim opendkim-tools libsasl2-modules python3-dkim python3-aiosmtpd python3-yaml
          python3-authheaders python3-spf
          openssl iproute2 util-linux openssh-client apticron mmdebstrap systemd-container bc procps
          python3-venv bind9 bind9-dnsutils prometheus unbound
          postfix-mta-sts-resolver)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    # Postfix asks what kind of server this is; mailsetup writes the configuration.
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# Tools from PyPI, in a virtual environment of the tests' own: check-jsonschema
# checks the CI examples against GitHub's and GitLab's published schemas, and the
# examples against schemas/; octoDNS validates and syncs the `dns --format
# octodns` export; ansible-core runs examples/ansible/playbook.yml on a fleet;
# parsedmarc counts the DMARC report corpus (tests/reports/) independently.
tools=target/test-tools
if { [ ! -x "$tools/bin/check-jsonschema" ] || [ ! -x "$tools/bin/octodns-sync" ] ||
     [ ! -x "$tools/bin/ansible-playbook" ] || [ ! -x "$tools/bin/parsedmarc" ]; } &&
   [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -m venv "$tools"
  "$tools/bin/pip" install -q 'check-jsonschema==0.39.*' 'octodns==1.22.*' 'octodns-bind==1.1.*' \
    'ansible-core==2.18.*' 'parsedmarc==11.*'
fi
# cargo-deb builds the .deb the fleet test installs (pinned: it warns that its
# dev-profile packages, which spare the test a release build, will change). A
# debug build of the tool: 37 s to build instead of 86, and 2 s to package.
command -v cargo-deb >/dev/null || cargo install -q --debug --locked cargo-deb --version 3.8.0

cargo fmt --check
cargo clippy --locked --all-targets --quiet -- -D warnings
cargo test --locked "$@"
