#!/usr/bin/env bash
# A bare Debian host (12 or 13) taken all the way by `mailsetup apply`: a minbase root
# with none of the mail packages, booted with systemd as PID 1 in
# systemd-nspawn (its own network: only its loopback). apt installs the
# packages (from the Debian mirror, fetched when the image was built), systemd
# starts and reloads the services through Debian's units, mail from every
# domain is signed and delivered to a sink on the container's loopback and
# verified with dkimpy against what `mailsetup dns` prints, and a second apply
# changes and restarts nothing. The host's own dpkg state is untouched.
#
#   tests/fresh_host/fresh-host.sh MAILSETUP_BINARY [SUITE [DEB]]   (bookworm: 12,
#   the default; trixie: 13, whose postfix.service is the real forking unit).
#   With DEB (the package `cargo deb` built), it is installed once the mail
#   packages are, and its timers' units are verified and run under systemd.
#
# Needs root, mmdebstrap and systemd-container. The image is cached in
# ${XDG_CACHE_HOME:-~/.cache}/mailsetup-tests (built once, ~1 min).
set -euo pipefail
bin=$1
suite=${2:-bookworm}
deb=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/mailsetup-fresh-host.XXXXXX)
root=$work/root
name=mailsetup-fresh-$$
cgroup=mailsetup-$name
nspawn=
. "$here/../lib/containers.sh"

say() { printf '%s\n' "$*"; }
fail() { say "FAIL $*"; exit 1; }
elapsed() { printf '%.1f s' "$(echo "$(date +%s.%N) - $1" | bc)"; }

cleanup() {
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    kill -TERM "$nspawn" 2>/dev/null   # systemd-nspawn halts the container cleanly
    for _ in $(seq 300); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn" 2>/dev/null || true
  fi
  # Nothing of the container may outlive the test (the end-to-end suite checks
  # that no daemon runs on the machine).
  cgroup_clear "$cgroup"
  mountpoint -q "$root" && umount "$root"
  rm -rf "$work"
}
trap cleanup EXIT

dpkg_before=$(sha256sum /var/lib/dpkg/status)

# 1. The image (tests/lib/containers.sh): Debian minbase with systemd, no
#    mail package installed; the packages' .deb files and apt's lists were
#    fetched from the mirror when it was built, so apt inside the container
#    (which has no network) installs them for real.
t=$(date +%s.%N)
image=$(debian_image "$suite")
release=$(debian_release "$suite")
say "ok  the Debian $release image ($(elapsed "$t"))"

# 2. Unpack onto a tmpfs and boot it, in a cgroup of its own.
mkdir -p "$root"
mount -t tmpfs -o mode=755,size=4g mailsetup-fresh "$root"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$image"
echo fresh > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfresh\n::1\tlocalhost\n' > "$root/etc/hosts"
for p in postfix opendkim opendkim-tools apticron; do
  if chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    fail "the fresh root already has $p installed"
  fi
done
install -m 0755 "$bin" "$root/usr/local/bin/mailsetup"
install -m 0755 "$here/smtpsink" "$root/usr/local/bin/smtpsink"
cat > "$root/root/mailsetup.yaml" <<'EOF'
host:
  hostname: mail.example.com
  # The test's sink on the container's loopback stands in for the world.
  relay:
    host: 127.0.0.1
    port: 2525
    tls: none
domains:
  example.com:
    subdomains: [app]
  example.org:
dkim:
  selector: fresh
aliases:
  root: ops@example.net
EOF
mkdir -p "$root/root/sink"
cgroup_make "$cgroup"
t=$(date +%s.%N)
(
  cgroup_join "$cgroup"
  exec setsid systemd-nspawn --quiet --register=no --keep-unit --console=read-only \
    --private-network -M "$name" -D "$root" -b </dev/null >"$work/console.log" 2>&1
) &
nspawn=$!
init=
for _ in $(seq 200); do init=$(pgrep -P "$nspawn" || true); [ -n "$init" ] && break; sleep 0.05; done
[ -n "$init" ] || fail "systemd-nspawn started no init: $(tail -20 "$work/console.log")"

inside() {
  nsenter --target "$init" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 "$@"
}
state=
for _ in $(seq 300); do
  state=$(inside systemctl is-system-running --wait 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 0.1
done
[ "$(inside readlink /proc/1/exe)" = /usr/lib/systemd/systemd ] || fail "PID 1 is not systemd"
say "ok  booted Debian $release with systemd as PID 1 ($state, $(elapsed "$t"))"

# 3. plan lists the packages; apply installs them, configures, starts.
out=$(inside mailsetup plan /root/mailsetup.yaml)
grep -q '^! install postfix opendkim opendkim-tools apticron' <<<"$out" ||
  fail "plan does not list the packages first: $out"
! grep -q 'does not exist\|not installed here' <<<"$out" ||
  fail "plan notes what the install it lists will answer: $out"
say "ok  plan lists the missing packages first, and no note the install answers"

# apt failing (a package it must download, and no network): a clear error,
# no package half-installed, no configuration written.
inside sh -c 'mkdir -p /root/held && mv /var/cache/apt/archives/apticron_*.deb /root/held/'
if out=$(inside mailsetup apply /root/mailsetup.yaml 2>&1); then
  fail "apply succeeded without the mirror: $out"
fi
grep -q 'could not reach the package mirror' <<<"$out" || fail "apt's failure is not explained: $out"
[ ! -e "$root/etc/postfix/main.cf" ] || fail "apply wrote main.cf although the install failed"
if chroot "$root" dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'ok installed'; then
  fail "postfix was installed although apt failed"
fi
inside sh -c 'mv /root/held/*.deb /var/cache/apt/archives/'
say "ok  without the mirror, apply says so and installs and writes nothing: $(grep -m1 "^error" <<<"$out" | cut -c1-160)"
t=$(date +%s.%N)
out=$(inside mailsetup apply /root/mailsetup.yaml 2>&1) || fail "apply: $out"
for want in "Installed postfix opendkim opendkim-tools apticron" \
            "enabled and started postfix" "opendkim"; do
  grep -q "$want" <<<"$out" || fail "apply did not say \"$want\": $out"
done
! grep -q 'does not exist\|not installed here' <<<"$out" ||
  fail "apply printed notes the install answered: $out"
say "ok  apply installed the packages and started the services ($(elapsed "$t"))"
grep -q '^# Managed by mailsetup' "$root/etc/postfix/main.cf" || fail "main.cf is not mailsetup's"
for unit in postfix opendkim; do
  [ "$(inside systemctl is-active "$unit")" = active ] || fail "$unit is not active"
  [ "$(inside systemctl is-enabled "$unit")" = enabled ] || fail "$unit is not enabled"
done
say "ok  postfix and opendkim are enabled and active under systemd"

# 4. Mail from every domain, a listed subdomain and root, through the real daemons.
inside systemd-run --quiet --unit=smtpsink /usr/local/bin/smtpsink 2525 /root/sink
for _ in $(seq 100); do
  inside bash -c 'exec 3<>/dev/tcp/127.0.0.1/2525' 2>/dev/null && break
  sleep 0.05
done
senders=(noreply@example.com www@app.example.com noreply@example.org)
for from in "${senders[@]}"; do
  printf 'From: %s\nTo: someone@example.net\nSubject: fresh host %s\n\nHello from %s.\n' \
    "$from" "$from" "$from" | inside sendmail -f "$from" someone@example.net ||
    fail "sendmail from $from"
done
for _ in $(seq 300); do
  [ "$(find "$root/root/sink" -name 'msg-*' | wc -l)" -ge ${#senders[@]} ] && break
  sleep 0.1
done
inside mailsetup dns /root/mailsetup.yaml --format json >"$work/records.json"
/usr/bin/python3 - "$work/records.json" "$root/root/sink" "${senders[@]}" <<'EOF' ||
import json, os, sys
import dkim
records = {r["name"]: r["value"] for r in json.load(open(sys.argv[1]))}
def dnsfunc(name, timeout=5):
    name = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
    v = records.get(name)
    return v.encode() if v is not None else None
box = sys.argv[2]
got = {}
for f in sorted(os.listdir(box)):
    raw = open(os.path.join(box, f), "rb").read().replace(b"\r\n", b"\n")
    sender = next(l.split(b":", 1)[1].strip().decode() for l in raw.split(b"\n") if l.lower().startswith(b"from:"))
    got[sender] = raw
bad = []
for sender in sys.argv[3:]:
    raw = got.get(sender)
    domain = sender.split("@")[1]
    if raw is None:
        bad.append(f"no message from {sender} reached the sink")
        continue
    sig = [l for l in raw.split(b"\n") if l.lower().startswith(b"dkim-signature:")]
    d = dkim.DKIM(raw)
    if not sig or not d.verify(dnsfunc=dnsfunc):
        bad.append(f"{sender}: not signed, or the signature does not verify")
    elif f"d={domain}".encode() not in raw.split(b"\n\n")[0].replace(b"\n\t", b" ").replace(b"\n ", b" "):
        bad.append(f"{sender}: signed, but not d={domain}")
    else:
        print(f"ok  mail from {sender} arrives signed d={domain} and verifies against mailsetup dns")
sys.exit("FAIL " + "; ".join(bad) if bad else 0)
EOF
  fail "delivered mail (console: $(tail -5 "$work/console.log"))"

# 5. A second apply changes nothing and restarts nothing.
pids() { inside cat /run/opendkim/opendkim.pid /var/spool/postfix/pid/master.pid | tr -s ' \n' ' '; }
before=$(pids)
out=$(inside mailsetup apply /root/mailsetup.yaml 2>&1) || fail "second apply: $out"
grep -q 'No changes.' <<<"$out" || fail "the second apply changed something: $out"
[ "$(pids)" = "$before" ] || fail "the second apply restarted a daemon ($before -> $(pids))"
say "ok  a second apply changes nothing and restarts nothing"

# 5b. The package's timers: its units pass systemd-analyze verify; the status
#     service writes the metrics node_exporter reads, deliveries counted from
#     the journal; the rotation service runs; both timers can be enabled.
if [ -n "$deb" ]; then
  cp "$deb" "$root/root/mailsetup.deb"
  out=$(inside dpkg -i /root/mailsetup.deb 2>&1) || fail "dpkg -i the .deb: $out"
  units=(mailsetup-rotate.service mailsetup-rotate.timer mailsetup-status.service mailsetup-status.timer)
  for u in "${units[@]}"; do
    [ -f "$root/usr/lib/systemd/system/$u" ] || fail "the .deb does not install $u"
  done
  # --man=no: the image has neither man-db nor man pages (dpkg excludes them);
  # the pages Documentation= names are looked for in the package instead.
  out=$(inside systemd-analyze verify --man=no "${units[@]/#//usr/lib/systemd/system/}" 2>&1) ||
    fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify warns: $out"
  contents=$(dpkg-deb -c "$deb")
  for page in $(sed -n 's/^Documentation=man:\(.*\)(1)$/\1/p' "${units[@]/#/$root/usr/lib/systemd/system/}"); do
    grep -q "/usr/share/man/man1/$page\.1" <<<"$contents" || fail "the .deb has no $page(1), which a unit names"
  done
  say "ok  the .deb installs the timers' units, systemd-analyze verify passes them, their man pages are there"
  printf 'MAILSETUP_SPEC=/root/mailsetup.yaml\n' > "$root/etc/default/mailsetup"
  inside systemctl start mailsetup-status.service   # skipped: no node_exporter directory
  [ ! -e "$root/var/lib/prometheus/node-exporter/mailsetup.prom" ] || fail "status ran without the textfile directory"
  [ "$(inside systemctl show -p ConditionResult --value mailsetup-status.service)" = no ] ||
    fail "mailsetup-status.service ran without node_exporter's directory"
  inside mkdir -p /var/lib/prometheus/node-exporter
  inside systemctl start mailsetup-status.service ||
    fail "mailsetup-status.service: $(inside journalctl -u mailsetup-status --no-pager -n 20)"
  prom=$root/var/lib/prometheus/node-exporter/mailsetup.prom
  [ -f "$prom" ] || fail "mailsetup-status.service wrote no $prom"
  grep -q '^mailsetup_deliveries{outcome="sent",receiver="example.net"} 3$' "$prom" ||
    fail "the metrics do not count the 3 messages the sink received: $(grep deliveries "$prom")"
  grep -q '^mailsetup_queue_messages{queue="deferred"} 0$' "$prom" || fail "no queue metrics: $(cat "$prom")"
  say "ok  mailsetup-status.service wrote the metrics: 3 deliveries read from the journal, the queue"
  inside systemctl start mailsetup-rotate.service ||
    fail "mailsetup-rotate.service: $(inside journalctl -u mailsetup-rotate --no-pager -n 20)"
  [ "$(inside systemctl show -p Result --value mailsetup-rotate.service)" = success ] ||
    fail "mailsetup-rotate.service did not succeed"
  inside systemctl enable --quiet --now mailsetup-rotate.timer mailsetup-status.timer
  timers=$(inside systemctl list-timers --no-pager 'mailsetup-*')
  for t in mailsetup-rotate.timer mailsetup-status.timer; do
    grep -q "$t" <<<"$timers" || fail "$t is not scheduled: $timers"
  done
  say "ok  mailsetup-rotate.service runs, and both timers are scheduled once enabled"
fi

# 6. A restart is reported only when the daemon runs: with a unit that exits 0
#    and starts nothing (as Debian 13's postfix.service does without main.cf),
#    apply fails saying so instead of printing "restarted".
mkdir -p "$root/etc/systemd/system/opendkim.service.d"
printf '[Service]\nType=oneshot\nPIDFile=\nExecStart=\nExecStart=/bin/true\n' \
  > "$root/etc/systemd/system/opendkim.service.d/nothing.conf"
inside systemctl daemon-reload
sed -i 's/^  selector: fresh$/  selector: fresh\n  oversign_headers: [From, To, Subject]/' "$root/root/mailsetup.yaml"
if out=$(inside mailsetup apply /root/mailsetup.yaml 2>&1); then
  fail "apply succeeded although opendkim did not start: $out"
fi
grep -q 'opendkim was restarted, but it is not running now' <<<"$out" ||
  fail "a restart that started nothing was not reported: $out"
! grep -q '^  restarted opendkim' <<<"$out" || fail "apply printed \"restarted opendkim\": $out"
rm -r "$root/etc/systemd/system/opendkim.service.d"
inside systemctl daemon-reload
inside systemctl start opendkim
say "ok  a unit that exits 0 but starts no daemon is reported, not \"restarted\""

# 7. Rolling back the apply that first configured the daemons is refused
#    unless asked for; then they are stopped and said to be.
inside mailsetup rollback >/dev/null   # the oversign change
if out=$(inside mailsetup rollback 2>&1); then
  fail "the rollback past the first configuration was not refused: $out"
fi
grep -q 'first configured the mail services' <<<"$out" || fail "not explained: $out"
[ -e "$root/etc/postfix/main.cf" ] || fail "the refused rollback removed main.cf"
out=$(inside mailsetup rollback --unconfigure 2>&1) || fail "rollback --unconfigure: $out"
for want in "stopped postfix" "stopped opendkim"; do
  grep -q "$want" <<<"$out" || fail "rollback --unconfigure did not say \"$want\": $out"
done
[ ! -e "$root/etc/postfix/main.cf" ] || fail "main.cf is still there"
for unit in postfix opendkim; do
  [ "$(inside systemctl is-active "$unit")" != active ] || fail "$unit still runs"
done
say "ok  rolling back the first configuration needs --unconfigure, and stops the services"

[ "$(sha256sum /var/lib/dpkg/status)" = "$dpkg_before" ] || fail "the host's dpkg state changed"
say "ok  the host's own dpkg state is untouched"
