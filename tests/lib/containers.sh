# Shared by the tests that boot Debian in systemd-nspawn (tests/fresh_host,
# tests/fleet): the Debian sources for mmdebstrap, and cgroups of the test's
# own so that nothing a container starts outlives the test.
#
#   . "$repo/tests/lib/containers.sh"

# The cgroup hierarchies a container gets a cgroup of its own in (else nspawn
# makes /payload and /supervisor at the top of the machine's): the v1
# "systemd" and v2 "unified" trees of a hybrid layout, or the one v2 tree.
hierarchies=()
for h in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do [ -d "$h" ] && hierarchies+=("$h"); done
[ ${#hierarchies[@]} -gt 0 ] || hierarchies=(/sys/fs/cgroup)

# The apt sources of Debian SUITE (bookworm: 12, trixie: 13) on this
# machine's mirror, as mmdebstrap takes them.
debian_sources() {
  local suite=$1 mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  printf '%s\n' "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb ${mirror%/debian}/debian-security $suite-security main"
}

# debian_release SUITE: its version number, for messages.
debian_release() {
  case $1 in bookworm) echo 12 ;; trixie) echo 13 ;; *) echo "$1" ;; esac
}

# debian_image [SUITE [EXTRA]]: prints the path of the tests' image of Debian
# SUITE (default bookworm) (a tar), with the .debs of the packages EXTRA names
# (a space-separated list) fetched too; built once per suite and list, cached in
# ${XDG_CACHE_HOME:-~/.cache}/mailsetup-tests: minbase with
# systemd, sshd and python3 (for Ansible's modules), no mail package, and the
# mail packages' .debs fetched now — with Recommends, as apt on a real host
# (and so Ansible's apt) installs them — so apt inside a container without
# network installs them for real. The merged-usr hook keeps usrmerge and perl
# out. The name says what is in it; tests building it at once wait for one.
debian_image() {
  local suite=${1:-bookworm}
  local pkgs="postfix opendkim opendkim-tools apticron libsasl2-modules${2:+ $2}"
  local include=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/mailsetup-tests
  local image
  image=$cache/$suite-$(printf '%s|%s' "$pkgs" "$include" | sha256sum | cut -c1-12).tar
  mkdir -p "$cache"
  (
    flock 9
    [ -s "$image" ] && exit 0
    mapfile -t sources < <(debian_sources "$suite")
    build=$(mktemp -d "$cache/build.XXXXXX")
    mmdebstrap --quiet --variant=minbase \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --include="$include" \
      --aptopt='Acquire::Languages "none"' \
      --aptopt='Acquire::GzipIndexes "true"' \
      --aptopt='Acquire::CompressionTypes::Order:: "gz"' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='echo "Dir::Cache::srcpkgcache \"\";" > "$1/etc/apt/apt.conf.d/90no-srcpkgcache"' \
      --customize-hook='for u in apt-daily.timer apt-daily-upgrade.timer; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done' \
      --customize-hook='chroot "$1" apt-get clean' \
      --customize-hook="chroot \"\$1\" apt-get install -y -q --download-only -o APT::Install-Recommends=true $pkgs" \
      --customize-hook='rm -f "$1"/var/cache/apt/*.bin' \
      --skip=cleanup/apt \
      "$suite" "$build/image.tar" "${sources[@]}" >&2
    mv "$build/image.tar" "$image"
    rmdir "$build"
  ) 9>"$cache/image-$suite.lock"
  echo "$image"
}

# cgroup_make NAME: the cgroup NAME in every hierarchy.
cgroup_make() {
  local h
  for h in "${hierarchies[@]}"; do mkdir -p "$h/$1"; done
}

# cgroup_join NAME: moves the calling (sub)shell into NAME.
cgroup_join() {
  local h
  for h in "${hierarchies[@]}"; do echo "$BASHPID" > "$h/$1/cgroup.procs"; done
}

# cgroup_procs NAME: every process in NAME and below.
cgroup_procs() {
  local h
  for h in "${hierarchies[@]}"; do
    [ -d "$h/$1" ] && find "$h/$1" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  return 0   # under `set -e -o pipefail` a missing cgroup is no error
}

# cgroup_clear NAME: waits for NAME to empty (a halted container), kills what
# is left, and removes the cgroups.
cgroup_clear() {
  local left h
  for _ in $(seq 100); do [ -z "$(cgroup_procs "$1")" ] && break; sleep 0.1; done
  left=$(cgroup_procs "$1" | sort -u)
  if [ -n "$left" ]; then
    kill -KILL $left 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(cgroup_procs "$1")" ] && break; sleep 0.1; done
  fi
  for h in "${hierarchies[@]}"; do
    [ -d "$h/$1" ] && find "$h/$1" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}
