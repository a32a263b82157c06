#!/usr/bin/env bash
# The fleet flow of the README, for real: two Debian 12 hosts (systemd as PID 1
# in systemd-nspawn, sshd, python3; no mail package), each in a network
# namespace of its own bridged to a controller namespace, from which
# ansible-core runs examples/ansible/playbook.yml over SSH. Nothing of it is in
# the machine's own network namespace.
#
#   tests/fleet/fleet.sh MAILSETUP_BINARY MAILSETUP_DEB
#
# 1. CI, on this machine: validate, one signed bundle per host.
# 2. Ansible: the mail packages from the Debian archive (prefetched into the
#    image: the hosts have no other network), the .deb `cargo deb` built from
#    this tree, each host's bundle applied with its signature checked, public
#    keys fetched back.
# 3. `dns --public-keys` shows every host's selector and one SPF naming both;
#    each host's mail is signed under its own selector and verifies (dkimpy).
# 4. CI again with the exported keys; a repeated run changes nothing (changed=0).
# 5. A tampered bundle: that host fails and keeps its configuration, the other
#    converges.
#
# Needs root, mmdebstrap, systemd-container, iproute2, openssh-client, dkimpy,
# and ansible-core in target/test-tools (tests/run.sh). The image is cached in
# ${XDG_CACHE_HOME:-~/.cache}/mailsetup-tests (built once, ~1.5 min).
set -euo pipefail
bin=$1
deb=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools=$repo/target/test-tools/bin
ids=(1 2)                     # host N: mta0N at 10.77.0.1N in namespace $ns-hN
ns=msfleet$$
ctl=$ns-ctl
work=$(mktemp -d /tmp/mailsetup-fleet.XXXXXX)
. "$repo/tests/lib/containers.sh"
declare -A nspawn=()

say() { printf '%s\n' "$*"; }
fail() { say "FAIL $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { printf '%.1f s' "$(echo "$(now) - $1" | bc)"; }
cg() { echo "mailsetup-$ns-h$1"; }
root() { echo "$work/h$1/root"; }
in_ctl() { ip netns exec "$ctl" "$@"; }
inside() {
  local i=$1; shift
  nsenter --target "$(pgrep -P "${nspawn[$i]}")" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

cleanup() {
  set +e
  for i in "${ids[@]}"; do
    p=${nspawn[$i]:-}; [ -n "$p" ] && kill -TERM "$p" 2>/dev/null   # nspawn halts the container
  done
  for i in "${ids[@]}"; do
    p=${nspawn[$i]:-}; [ -n "$p" ] || continue
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  # Nothing of the containers may outlive the test.
  for i in "${ids[@]}"; do cgroup_clear "$(cg "$i")"; done
  # What still runs in our namespaces is ours (ssh's ControlPersist masters).
  for n in "$ctl" "${ids[@]/#/$ns-h}"; do
    if [ -e "/run/netns/$n" ]; then
      left=$(ip netns pids "$n" 2>/dev/null)
      [ -n "$left" ] && { kill -TERM $left; sleep 0.5; kill -KILL $(ip netns pids "$n") 2>/dev/null; }
      ip netns delete "$n"
    fi
  done
  for i in "${ids[@]}"; do
    for m in "$(root "$i")" "$work/h$i/rw"; do mountpoint -q "$m" && umount "$m"; done
  done
  mountpoint -q "$work/lower" && umount "$work/lower"
  rm -rf "$work"
}
trap cleanup EXIT

# 0. The image (tests/lib/containers.sh): Debian 12 minbase with systemd, sshd
#    and python3, no mail package, their .debs fetched for apt inside.
t=$(now)
image=$(debian_image)
say "ok  the Debian 12 image ($(elapsed "$t"))"

# The network: a bridge in the controller's namespace, a veth to each host's;
# every link is made inside the namespaces.
ip netns add "$ctl"
ip -n "$ctl" link set lo up
ip -n "$ctl" link add br0 type bridge
ip -n "$ctl" addr add 10.77.0.1/24 dev br0
ip -n "$ctl" link set br0 up
for i in "${ids[@]}"; do
  ip netns add "$ns-h$i"
  ip -n "$ns-h$i" link set lo up
  ip -n "$ctl" link add "veth-h$i" type veth peer name eth0 netns "$ns-h$i"
  ip -n "$ctl" link set "veth-h$i" master br0 up
  ip -n "$ns-h$i" addr add "10.77.0.1$i/24" dev eth0
  ip -n "$ns-h$i" link set eth0 up
done

# The roots: the image once on a tmpfs, an overlay with a tmpfs of its own per host.
ssh-keygen -q -t ed25519 -N '' -C ansible@test -f "$work/ansible-key"
mkdir -p "$work/lower"
mount -t tmpfs -o mode=755,size=2g "$ns-lower" "$work/lower"
tar -C "$work/lower" --numeric-owner --xattrs --xattrs-include='*' -xpf "$image"
for p in postfix opendkim; do
  chroot "$work/lower" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' &&
    fail "the image already has $p installed"
done
for i in "${ids[@]}"; do
  r=$(root "$i"); rw=$work/h$i/rw
  mkdir -p "$r" "$rw"
  mount -t tmpfs -o mode=755,size=2g "$ns-h$i" "$rw"
  mkdir -p "$rw/upper" "$rw/work"
  mount -t overlay -o "lowerdir=$work/lower,upperdir=$rw/upper,workdir=$rw/work" "$ns-h$i" "$r"
  echo "mta0$i" > "$r/etc/hostname"
  {
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tmta0%s.example.com mta0%s\n::1\tlocalhost\n' "$i" "$i"
  } > "$r/etc/hosts"
  install -d -m 0700 "$r/root/.ssh"
  install -m 0600 "$work/ansible-key.pub" "$r/root/.ssh/authorized_keys"
  install -m 0755 "$repo/tests/fresh_host/smtpsink" "$r/usr/local/bin/smtpsink"
  mkdir -p "$r/root/sink"
done

# Boot both, each in cgroups of its own, on its host's network namespace.
t=$(now)
for i in "${ids[@]}"; do
  c=$(cg "$i")
  cgroup_make "$c"
  (
    cgroup_join "$c"
    exec setsid systemd-nspawn --quiet --register=no --keep-unit --console=read-only \
      --network-namespace-path="/run/netns/$ns-h$i" -M "mta0$i" -D "$(root "$i")" -b \
      </dev/null >"$work/h$i/console.log" 2>&1
  ) &
  nspawn[$i]=$!
done
for i in "${ids[@]}"; do
  ok=
  for _ in $(seq 600); do
    kill -0 "${nspawn[$i]}" 2>/dev/null || fail "mta0$i did not boot: $(tail -20 "$work/h$i/console.log")"
    banner=$(in_ctl timeout 1 bash -c "exec 3<>/dev/tcp/10.77.0.1$i/22 && head -c 8 <&3" 2>/dev/null || true)
    [ "$banner" = SSH-2.0- ] && { ok=1; break; }
    sleep 0.1
  done
  [ -n "$ok" ] || fail "no sshd on mta0$i: $(tail -20 "$work/h$i/console.log")"
  inside "$i" systemd-run --quiet --unit=smtpsink /usr/local/bin/smtpsink 2525 /root/sink
done
say "ok  two bare Debian 12 hosts booted, sshd on 10.77.0.11 and 10.77.0.12 ($(elapsed "$t"))"

# 1. CI: validate, one signed bundle per host (the keys exported last time).
spec=$work/repo/mailsetup.yaml
mkdir -p "$work/repo/public-keys" "$work/repo/bundles"
cat > "$spec" <<'EOF'
hosts:
  mta01:
    hostname: mta01.example.com
  mta02:
    hostname: mta02.example.com
host:
  # Each host's sink on its own loopback stands in for the world.
  relay:
    host: 127.0.0.1
    port: 2525
    tls: none
domains:
  example.com:
  example.org:
spf:
  a: false
dmarc:
  p: quarantine
  rua: [dmarc@example.com]
aliases:
  root: ops@example.net
EOF
ssh-keygen -q -t ed25519 -N '' -C ci@example -f "$work/ci-key"
printf 'ci@example namespaces="mailsetup-bundle" %s\n' "$(cut -d' ' -f1,2 "$work/ci-key.pub")" \
  > "$work/repo/allowed_signers"
# As the CI examples do: the commit's time dates the first keys.
export SOURCE_DATE_EPOCH=$(date +%s)
ci() {
  "$bin" validate "$spec" >/dev/null
  for i in "${ids[@]}"; do
    "$bin" bundle "$spec" --host "mta0$i" --public-keys "$work/repo/public-keys" \
      --sign "$work/ci-key" --out "$work/repo/bundles/mta0$i.tar.gz" >/dev/null 2>>"$work/ci.log"
  done
}
ci
say "ok  CI: validated, bundled and signed for mta01 and mta02"

# 2. Ansible, from the controller's namespace, with the playbook of examples/.
export ANSIBLE_CONFIG=$work/ansible.cfg ANSIBLE_HOME=$work/ansible-home \
  ANSIBLE_LOCAL_TEMP=$work/ansible-home/tmp ANSIBLE_NOCOLOR=1
cat > "$ANSIBLE_CONFIG" <<EOF
[defaults]
host_key_checking = False
private_key_file = $work/ansible-key
remote_user = root
interpreter_python = /usr/bin/python3
[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR
control_path_dir = $work/cp
pipelining = True
EOF
printf '[mail]\nmta01 ansible_host=10.77.0.11\nmta02 ansible_host=10.77.0.12\n' > "$work/inventory"
cat > "$work/vars.yml" <<EOF
bundles: $work/repo/bundles
mailsetup_deb: $deb
mailsetup_spec: $spec
mailsetup_public_keys: $work/repo/public-keys
mailsetup_allowed_signers: '$(cat "$work/repo/allowed_signers")'
EOF
run=0
playbook() {
  run=$((run + 1))
  in_ctl "$tools/ansible-playbook" -i "$work/inventory" -e "@$work/vars.yml" \
    "$repo/examples/ansible/playbook.yml" >"$work/play$run.log" 2>&1
}
recap() { sed -n '/PLAY RECAP/,$p' "$work/play$run.log" | grep -E "^$1 " | tr -s ' '; }
t=$(now)
playbook || fail "the first run: $(grep -E '^(fatal|failed)|FAILED' "$work/play$run.log" | cut -c1-400)"
for i in "${ids[@]}"; do
  recap "mta0$i" | grep -q 'failed=0' || fail "mta0$i: $(recap "mta0$i")"
  inside "$i" dpkg-query -W -f='${Version}' mailsetup | grep -q '^0\.' || fail "mta0$i has no mailsetup package"
  for page in mailsetup mailsetup-apply mailsetup-rotate-start; do
    inside "$i" dpkg -L mailsetup | grep -q "/usr/share/man/man1/$page.1" ||
      fail "the .deb does not install $page(1)"
  done
  [ "$(inside "$i" systemctl is-active opendkim)" = active ] || fail "opendkim on mta0$i"
done
say "ok  ansible-playbook installed the packages and the .deb, applied both signed bundles ($(elapsed "$t"))"

# 3. DNS for the fleet from what the hosts exported; mail from each host.
"$bin" dns "$spec" --public-keys "$work/repo/public-keys" --format json > "$work/records.json"
/usr/bin/python3 - "$work/records.json" <<'EOF' || fail "dns for the fleet"
import json, sys
records = {r["name"]: r["value"] for r in json.load(open(sys.argv[1]))}
for domain in ["example.com", "example.org"]:
    spf = records.get(domain)
    assert spf == "v=spf1 a:mta01.example.com a:mta02.example.com -all", f"{domain}: {spf}"
    for host in ["mta01", "mta02"]:
        keys = [n for n in records if n.startswith(host + "-") and n.endswith("._domainkey." + domain)]
        assert len(keys) == 1 and "p=MII" in records[keys[0]], f"{host} {domain}: {keys}"
EOF
say "ok  dns --public-keys: each host's selector, and one SPF naming both hosts"
for i in "${ids[@]}"; do
  for from in noreply@example.com noreply@example.org; do
    printf 'From: %s\nTo: someone@example.net\nSubject: fleet mta0%s\n\nHello.\n' "$from" "$i" |
      inside "$i" sendmail -f "$from" someone@example.net || fail "sendmail on mta0$i"
  done
done
for i in "${ids[@]}"; do
  for _ in $(seq 300); do
    [ "$(find "$(root "$i")/root/sink" -name 'msg-*' | wc -l)" -ge 2 ] && break
    sleep 0.1
  done
done
/usr/bin/python3 - "$work/records.json" "$(root 1)/root/sink" "$(root 2)/root/sink" <<'EOF' || fail "fleet mail"
import json, os, sys, dkim
records = {r["name"]: r["value"] for r in json.load(open(sys.argv[1]))}
def dnsfunc(name, timeout=5):
    v = records.get((name.decode() if isinstance(name, bytes) else name).rstrip("."))
    return v.encode() if v is not None else None
for host, box in (("mta01", sys.argv[2]), ("mta02", sys.argv[3])):
    msgs = [open(os.path.join(box, f), "rb").read().replace(b"\r\n", b"\n") for f in sorted(os.listdir(box))]
    assert len(msgs) == 2, f"{host}: {len(msgs)} messages in the sink"
    for raw in msgs:
        head = raw.split(b"\n\n")[0].replace(b"\n\t", b" ").replace(b"\n ", b" ").decode()
        assert f"s={host}-" in head, f"{host}: not signed with its own selector: {head}"
        assert dkim.DKIM(raw).verify(dnsfunc=dnsfunc), f"{host}: the signature does not verify"
    print(f"ok  mail from mta0{host[-1]} (example.com, example.org) is signed s={host}-… and verifies")
EOF

# 4. CI again with the keys the hosts exported, applied; then a repeated run
#    changes nothing anywhere.
ci
playbook || fail "the run with exported keys: $(grep -E '^fatal' "$work/play$run.log" | cut -c1-400)"
t=$(now)
playbook || fail "the repeated run: $(grep -E '^fatal' "$work/play$run.log" | cut -c1-400)"
for i in "${ids[@]}"; do
  recap "mta0$i" | grep -q ' changed=0 ' || fail "a repeated run changed mta0$i: $(recap "mta0$i")"
done
say "ok  a repeated run reports changed=0 on every host ($(elapsed "$t"))"

# 5. A change for the fleet, and mta02's bundle tampered with after signing.
sha() { sha256sum "$(root "$1")/etc/aliases" "$(root "$1")/etc/postfix/main.cf" | cut -d' ' -f1 | tr '\n' ' '; }
before2=$(sha 2)
sed -i 's/^  root: ops@example.net$/  root: ops@example.net\n  webmaster: ops@example.net/' "$spec"
ci
cp "$work/repo/bundles/mta02.tar.gz.sig" "$work/mta02.sig"
sed 's/  webmaster: ops@example.net/  webmaster: attacker@example.net/' "$spec" > "$work/evil.yaml"
"$bin" bundle "$work/evil.yaml" --host mta02 --public-keys "$work/repo/public-keys" \
  --out "$work/repo/bundles/mta02.tar.gz" >/dev/null
cp "$work/mta02.sig" "$work/repo/bundles/mta02.tar.gz.sig"
if playbook; then fail "ansible-playbook succeeded with a tampered bundle"; fi
recap mta02 | grep -q 'failed=1' || fail "mta02 is not reported failed: $(recap mta02)"
grep -A3 '^fatal: \[mta02\]' "$work/play$run.log" | grep -qi 'signature' ||
  fail "Ansible does not report why: $(grep -A3 '^fatal' "$work/play$run.log" | cut -c1-400)"
[ "$(sha 2)" = "$before2" ] || fail "mta02's configuration changed"
recap mta01 | grep -q 'failed=0' || fail "mta01: $(recap mta01)"
grep -q '^webmaster:' "$(root 1)/etc/aliases" || fail "mta01 did not converge"
say "ok  a tampered bundle: mta02 fails, reported by Ansible, and keeps its configuration; mta01 converges"
