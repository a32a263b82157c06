#!/usr/bin/env bash
# tests/e2e/outbound.py on another Debian release: the release's own Postfix,
# OpenDKIM, BIND 9, unbound and postfix-mta-sts-resolver (installed from the image's .debs into an
# unpacked Debian root), with the outbound driver run as PID 1 of fresh
# namespaces chrooted into that root. The machine's own /etc, /var and
# processes are untouched.
#
#   tests/outbound/debian.sh MAILSETUP_BINARY SUITE     (trixie: Debian 13)
#
# Needs root and mmdebstrap; the image is cached as the fresh-host test's is.
set -euo pipefail
bin=$1
suite=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/tests/lib/containers.sh"
packages="postfix opendkim opendkim-tools bind9 bind9-dnsutils bind9-utils unbound
          postfix-mta-sts-resolver ca-certificates python3-aiosmtpd python3-dkim python3-yaml
          openssl iproute2"
packages=$(echo $packages)
work=$(mktemp -d /tmp/mailsetup-outbound.XXXXXX)
trap 'rm -rf "$work"' EXIT
say() { printf '%s\n' "$*"; }

image=$(debian_image "$suite" "$packages")
root=$work/root
mkdir "$root"
tar -xf "$image" -C "$root"
# Install offline from the image's .debs; no daemon starts in a chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
unshare --mount --pid --fork --kill-child /bin/sh -ec '
  mount --make-rprivate /
  mount --rbind /dev "$1/dev"; mount -t proc proc "$1/proc"
  echo "postfix postfix/main_mailer_type select No configuration" | chroot "$1" debconf-set-selections
  DEBIAN_FRONTEND=noninteractive chroot "$1" apt-get install -y -q --no-download \
    --no-install-recommends $2 >"$1/apt.log" 2>&1 || { tail -30 "$1/apt.log"; exit 1; }
' sh "$root" "$packages" || { say "FAIL apt-get install in the Debian $(debian_release "$suite") root"; exit 1; }
rm "$root/usr/sbin/policy-rc.d"
say "ok  Debian $(debian_release "$suite"): $(chroot "$root" dpkg-query -W -f='${Package} ${Version}, ' postfix opendkim bind9 unbound | sed 's/, $//')"

mkdir -p "$root/src" "$root/tmp/work"
cp "$repo/tests/e2e/driver.py" "$repo/tests/e2e/outbound.py" "$repo/examples/outbound.yaml" "$root/src/"
cp "$bin" "$root/usr/local/bin/mailsetup"
# PID 1 of new mount, network and PID namespaces, inside the root (a mount
# point of its own, as the driver's / must be).
unshare --mount --net --pid --fork --kill-child /bin/sh -ec '
  mount --make-rprivate /
  mount --bind "$1" "$1"
  mount --rbind /dev "$1/dev"; mount -t proc proc "$1/proc"; mount -t sysfs sys "$1/sys"
  exec chroot "$1" /usr/bin/python3 /src/outbound.py --mailsetup /usr/local/bin/mailsetup \
    --spec /src/outbound.yaml --work /tmp/work
' sh "$root"
