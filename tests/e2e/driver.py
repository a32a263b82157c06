#!/usr/bin/python3
"""End-to-end proof that what `mailsetup apply` writes works with Debian's real
Postfix and OpenDKIM, and that receivers would accept the DKIM signatures
against the records `mailsetup dns --format json` prints.

Run it only inside fresh namespaces (it refuses otherwise):

    unshare --mount --net --pid --fork --mount-proc --kill-child \
        /usr/bin/python3 tests/e2e/driver.py \
        --mailsetup target/debug/mailsetup --spec examples/guide.yaml --work /tmp/DIR

It makes the mounts private, puts private copies over /etc, /var (overlay),
/run and /dev, applies a test copy of the spec to the real paths inside the
namespace with the real binary, starts opendkim and postfix the way apply
restarts them, and checks the result from the outside world's point of view: an
SMTP sink on 127.0.0.1 that stands for every receiver.

What it checks, in this order (every expectation comes from the example spec
or from `mailsetup dns --format json`):
  1. apply succeeds; `postfix check`, `postconf -n` (no warnings) and
     `opendkim -n` accept the result; /etc/mailname is host.mailname and is
     myorigin; postfix's milter and opendkim's Socket name the same socket in
     the chroot; postfix is in the opendkim group; private keys are 0600.
  2. Smart host: sasl_passwd is 0600 root, sasl_passwd.db exists, is not
     world-readable and `postmap -q RELAYHOST` gives username:password; the
     password is in no other postfix file.
  3. `/etc/init.d/opendkim start` and `postfix start` (as apply restarts them)
     work; opendkim's socket appears, smtpd answers on 127.0.0.1:25.
  4. `dns` prints one DKIM record per domain with the spec's selector
     ({date} = UTC date of key creation); shared key: the same p= everywhere,
     per-domain: all different.
  5. smtpd listens on loopback only; nothing answers on a second, non-loopback
     address in the namespace; a client bound to that address (outside
     mynetworks) cannot relay, one on 127.0.0.1 can.
  6. For every domain: mail through `sendmail -t -i` run as www-data (PHP's
     mail()) and over SMTP to 127.0.0.1:25 (an application) arrives at the
     sink with exactly one DKIM-Signature, d= the domain, s= the selector,
     a=rsa-sha256, h= covering From and oversigning every
     dkim.oversign_headers entry, body and headers unchanged, and dkimpy
     verifies it against the printed record. With dkim.subdomains (default
     true) the same for an unlisted subdomain (app.DOMAIN), signed d=DOMAIN;
     every subdomain listed under domains.DOMAIN.subdomains is signed as itself
     (d=LABEL.DOMAIN, DOMAIN's key and selector), with or without
     dkim.subdomains. Mail from a domain that is not configured, and from
     look-alikes (xDOMAIN, DOMAIN.other), is not signed.
  6b. What receivers decide (RFC 7489 DMARC), judged by an independent
     evaluator: authheaders.authenticate_message (dkimpy, pyspf and its own
     DMARC policy lookup) gets every delivered signed message, the envelope
     sender the sink saw, this host's address and HELO, and a DNS served by a
     real BIND 9 on the namespace's 127.0.0.1:53, authoritative for the root
     zone and holding only the records `mailsetup dns` printed plus the A
     records and included SPF policies listed under TEST-ONLY CHANGES (no other
     DNS is reachable). Each message must get
     dkim=pass for the expected d=, spf=pass (every sender: unlisted
     subdomains leave with the envelope on their domain, PHP's mail() as
     www-data@MAILNAME and system mail have the mailname's record, a bounce
     the HELO name's) and dmarc=pass. The
     line says the verdict; a failure says what failed (alignment, a missing
     record, and the policy receivers then apply). Every printed rua/ruf
     destination outside the policy's organizational domain authorizes the
     reports (DOMAIN._report._dmarc.DEST, RFC 7489 section 7.1), and listed
     subdomains get an SPF record and a DKIM record with their parent's key.
  7. Mail to root, postmaster and every other alias reaches the addresses the
     aliases name (followed recursively), with envelope sender and From
     @/etc/mailname, DKIM-signed as the mailname when it is under a signing
     domain; a bounce (mail to an unknown local user) comes back with an empty
     envelope sender from MAILER-DAEMON@mailname, signed the same way, and
     the receiver judges both.
  8. Smart host: every message reached the relay on the spec's port over
     STARTTLS with AUTH as the spec's username; no failed AUTH.
  9. `plan --detailed-exitcode` exits 0 after apply; a second apply neither
     restarts nor reloads opendkim or postfix (pids, and reloads in the logs,
     after one more message, since opendkim applies a reload lazily).
 10. No private key material or relay password in apply/plan/dns output.
 11. Key rotation: dkim.selector becomes "e2enew"; apply restarts or reloads
     opendkim, postfix stays up, the config checks pass again, `dns` prints the
     new records and the next message from every domain carries s=e2enew and
     verifies; plan is empty again. 12. Signing table: a domain is added; the
     same again, and mail from the new domain is signed for it.

TEST-ONLY CHANGES to the spec (the copy is written to WORK/spec.yaml):
  * host.relay points at the sink on 127.0.0.1. Without auth in the example:
    {host: 127.0.0.1, port: 2525, tls: none}. With auth (the smart-host case)
    the username, port and tls of the example are kept, the host becomes
    127.0.0.1, the password file is written by this test, and the sink demands
    STARTTLS (self-signed certificate made with openssl) and AUTH.
  * outbound.tls and outbound.limits are removed (they are for direct
    delivery, which tests/e2e/outbound.py proves against real receivers);
    addresses host.interfaces lists are put on lo.
  * host.maillog_file = /var/log/postfix.log (there is no syslog here; a
    socket of the test's own at /dev/log collects opendkim's syslog lines into
    /var/log/syslog).
  * Steps 11 and 12 change dkim.selector and add a domain, as described.
  * Receiver DNS for step 6b (no change to the spec; only these are added to
    what `mailsetup dns` prints): an A record 192.0.2.25 (RFC 5737), the
    address SPF is evaluated from, for the host's hostname, every sending
    domain and every listed subdomain (when the printed SPF names ip4:
    networks and none contains 192.0.2.25, an address in the first one
    instead). An include:/redirect= target that `dns` does not print gets
    "v=spf1 ip4:192.0.2.0/24 -all" when mail leaves through a smart host
    (host.relay: the provider's outbound network, the /24 that contains the
    evaluated address; HELO is then the relay's name), else
    "v=spf1 ip4:198.51.100.0/24 -all" (someone else's senders).

Prints one line per check, `ok  <what>` or `FAIL <what>: <why>`, and exits 1
when any check failed (2 when it could not run at all). Copies of the
generated configs and logs (never keys) are left in WORK/artifacts.
"""

import argparse
import contextlib
import datetime
import functools
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import traceback
from email.utils import formatdate

# aiosmtpd 1.4 logs a warning about its own use of Session.login_data on every AUTH.
logging.getLogger("mail.log").setLevel(logging.ERROR)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SINK_PLAIN_PORT = 2525
# Addresses for "a client outside mynetworks"; the first one not in the spec's
# networks is put on lo inside the namespace (documentation ranges, RFC 5737).
OUTSIDE_CANDIDATES = ["192.0.2.10", "198.51.100.10", "203.0.113.10"]
RECEIVER = "rcpt@receiver.e2e.test"  # an outside mailbox: goes to the relay
UNCONFIGURED = "unconfigured-e2e.test"
ROTATED_SELECTOR = "e2enew"
ADDED_DOMAIN = "e2e-added.example"
MAILLOG = "/var/log/postfix.log"
SYSLOG = "/var/log/syslog"
DELIVERY_TIMEOUT = 30.0
OPENDKIM_CONF = "/etc/opendkim.conf"
# The receiver's side (step 6b): who judges, from which address the host sends
# (documentation ranges, RFC 5737), and whose networks included SPF policies name.
AUTHSERV_ID = "receiver.e2e.test"
HOST_ADDRESS = "192.0.2.25"
THIRD_PARTY_NETWORK = "198.51.100.0/24"  # anyone else's senders (a smart host's: the /24 of HOST_ADDRESS)
# Receivers for `mailsetup status` to count: the sink accepts, defers or refuses them.
STATUS_ANSWERS = {
    "accept.e2e.test": "250 2.1.5 OK",
    "defer.e2e.test": "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation.",
    "reject.e2e.test": "550 5.1.1 Recipient address rejected: User unknown",
}
# Subdomains to send from that the spec does not list (the first one free is used).
UNLISTED_LABELS = ("app", "web", "shop", "e2e-sub")

T0 = time.monotonic()


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Reporting


class Report:
    def __init__(self):
        self.failures = []
        self.passes = 0

    def ok(self, what):
        self.passes += 1
        out(f"ok  {what}")

    def fail(self, what, why):
        self.failures.append(what)
        why = str(why).rstrip()
        if "\n" in why:
            why = why.replace("\n", "\n     | ")
        out(f"FAIL {what}: {why}")

    def check(self, what, cond, why=""):
        if cond:
            self.ok(what)
        else:
            self.fail(what, why or "false")
        return bool(cond)

    def note(self, text):
        out(f"    {text}")


R = Report()


class Abort(Exception):
    """A failure after which the remaining checks make no sense."""


def must(what, cond, why=""):
    if not R.check(what, cond, why):
        raise Abort(what)


# --------------------------------------------------------------------------
# Commands


def sh(argv, check=False, timeout=120, input=None, env=None, **kw):
    e = dict(os.environ)
    e["PATH"] = PATH
    e["NO_COLOR"] = "1"
    e.setdefault("LC_ALL", "C.UTF-8")
    if env:
        e.update(env)
    p = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        input=input,
        env=e,
        **kw,
    )
    p.out = p.stdout.decode(errors="replace")
    p.err = p.stderr.decode(errors="replace")
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.err.strip() or p.out.strip()}")
    return p


def cmd_why(p):
    text = (p.out + p.err).strip()
    return f"exit {p.returncode}" + (f"\n{text[-3000:]}" if text else "")


# --------------------------------------------------------------------------
# Namespace: private mounts, loopback, a /dev/log sink


def assert_in_fresh_namespaces():
    if os.getpid() != 1:
        sys.exit(
            "driver.py changes /etc and /var: run it only as PID 1 of new namespaces:\n"
            "  unshare --mount --net --pid --fork --mount-proc --kill-child /usr/bin/python3 driver.py ..."
        )
    names = [n for _, n in socket.if_nameindex()]
    if names != ["lo"]:
        sys.exit(f"driver.py: expected a fresh network namespace (only lo), found {names}")


def setup_mounts(work):
    scratch = os.path.join(work, "ns")
    os.makedirs(scratch, exist_ok=True)
    sh(["mount", "--make-rprivate", "/"], check=True)
    # Everything the namespace writes lives on this tmpfs and dies with it.
    sh(["mount", "-t", "tmpfs", "-o", "mode=0755", "e2e-scratch", scratch], check=True)

    # /etc: a full copy (reads through bind-mounted files such as a container's
    # /etc/hosts), bind-mounted over the real one.
    sh(["cp", "-a", "/etc", os.path.join(scratch, "etc")], check=True)
    sh(["mount", "--bind", os.path.join(scratch, "etc"), "/etc"], check=True)

    # /var: an overlay whose upper layer is on the tmpfs: /var/spool/postfix,
    # /var/lib/postfix, /var/lib/mailsetup, /var/mail, /var/tmp are private.
    for d in ("var-upper", "var-work"):
        os.makedirs(os.path.join(scratch, d))
    p = sh(["mount", "-t", "overlay", "e2e-var", "-o",
            f"lowerdir=/var,upperdir={scratch}/var-upper,workdir={scratch}/var-work", "/var"])
    if p.returncode != 0:
        raise RuntimeError(f"cannot mount an overlay on /var (overlayfs needed): {p.err.strip()}")
    # A clean log directory, /run and /var/tmp.
    sh(["mount", "-t", "tmpfs", "-o", "mode=0755", "e2e-log", "/var/log"], check=True)
    sh(["mount", "-t", "tmpfs", "-o", "mode=1777", "e2e-vartmp", "/var/tmp"], check=True)
    sh(["mount", "-t", "tmpfs", "-o", "mode=0755", "e2e-run", "/run"], check=True)
    os.makedirs("/run/lock", mode=0o1777, exist_ok=True)

    # /dev: a private tmpfs with the host's device nodes bound in, so that
    # /dev/log can be a socket of ours (opendkim logs only to syslog).
    hostdev = os.path.join(scratch, "hostdev")
    os.makedirs(hostdev)
    sh(["mount", "--rbind", "/dev", hostdev], check=True)
    sh(["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "e2e-dev", "/dev"], check=True)
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        if os.path.exists(os.path.join(hostdev, node)):
            open(f"/dev/{node}", "w").close()
            sh(["mount", "--bind", os.path.join(hostdev, node), f"/dev/{node}"], check=True)
    for d in ("pts", "shm"):
        os.makedirs(f"/dev/{d}")
    sh(["mount", "--bind", os.path.join(hostdev, "pts"), "/dev/pts"])
    sh(["mount", "-t", "tmpfs", "-o", "mode=1777", "e2e-shm", "/dev/shm"], check=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx")):
        os.symlink(target, f"/dev/{name}")
    sh(["umount", "-l", hostdev])


def start_syslog_sink():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    os.chmod("/dev/log", 0o666)

    def loop():
        with open(SYSLOG, "ab", buffering=0) as f:
            while True:
                data = sock.recv(65536)
                data = re.sub(rb"^<\d+>", b"", data).rstrip(b"\n\x00")
                f.write(data + b"\n")

    threading.Thread(target=loop, daemon=True).start()


def setup_network(spec_networks):
    sh(["ip", "link", "set", "lo", "up"], check=True)
    nets = []
    for n in spec_networks:
        try:
            nets.append(ipaddress.ip_network(str(n).strip("[]").replace("]/", "/").replace("[", ""), strict=False))
        except ValueError:
            pass
    for cand in OUTSIDE_CANDIDATES:
        a = ipaddress.ip_address(cand)
        if not any(a.version == n.version and a in n for n in nets):
            sh(["ip", "addr", "add", f"{cand}/32", "dev", "lo"], check=True)
            return cand
    raise RuntimeError("every outside-address candidate is inside the spec's networks")


# --------------------------------------------------------------------------
# SMTP sink: the outside world, and the smart host


class Sink:
    def __init__(self, port, tls_files=None, auth=None, host="127.0.0.1", require_starttls=True):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages = []
        self.auth_attempts = []
        # What the sink answered each RCPT TO of the status round's domains.
        self.rcpt_answers = []
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                # Receivers that defer (a rate limit) or refuse (no such user),
                # for `mailsetup status` to count and explain.
                domain = address.rpartition("@")[2].lower()
                answer = STATUS_ANSWERS.get(domain, "250 2.1.5 OK")
                if domain in STATUS_ANSWERS:
                    with sink.lock:
                        sink.rcpt_answers.append((domain, answer[:3]))
                if answer.startswith("250"):
                    envelope.rcpt_tos.append(address)
                return answer

            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    sink.messages.append({
                        # The null sender of a bounce as the empty string.
                        "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
                        "rcpt_tos": [r.lower() for r in envelope.rcpt_tos],
                        "data": envelope.original_content or envelope.content,
                        "tls": session.ssl is not None,
                        "authenticated": bool(getattr(session, "authenticated", False)),
                        "auth_login": getattr(session, "auth_data", None),
                        "time": time.monotonic(),
                    })
                return "250 2.0.0 OK e2e sink"

        kwargs = {}
        if tls_files:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*tls_files)
            kwargs.update(tls_context=ctx, require_starttls=require_starttls)
        if auth:
            username, password = auth

            def authenticator(server, session, envelope, mechanism, auth_data):
                login = getattr(auth_data, "login", b"")
                pw = getattr(auth_data, "password", b"")
                login = login.decode() if isinstance(login, bytes) else str(login)
                pw = pw.decode() if isinstance(pw, bytes) else str(pw)
                good = login == username and pw == password
                with sink.lock:
                    sink.auth_attempts.append((mechanism, login, good))
                return AuthResult(success=good, auth_data=login if good else None)

            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        self.controller = Controller(Handler(), hostname=host, port=port,
                                     server_hostname="sink.e2e.test", **kwargs)
        self.controller.start()

    def snapshot(self):
        with self.lock:
            return list(self.messages)


def make_cert(directory):
    key = os.path.join(directory, "sink.key")
    crt = os.path.join(directory, "sink.crt")
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1"],
       check=True)
    return crt, key


# --------------------------------------------------------------------------
# Spec handling


def load_yaml(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f) or {}


def dump_yaml(data, path):
    import yaml
    with open(path, "w") as f:
        f.write("# Test copy written by tests/e2e/driver.py: relay points at the e2e sink.\n")
        yaml.safe_dump(data, f, sort_keys=False)


def private_path(path):
    return any(path == p or path.startswith(p + "/") for p in ("/etc", "/var", "/run"))


class SpecView:
    """What the checks expect, read from the (test copy of the) spec."""

    def __init__(self, spec, fleet_host=None, provider=None):
        host = spec.get("host") or {}
        dkim = spec.get("dkim") or {}
        self.selector = str(dkim.get("selector", "{date}"))
        if fleet_host is None:
            self.hostname = host["hostname"]
        else:
            # A fleet: this host's hostname, and its selector (default NAME-{date}).
            member = spec["hosts"][fleet_host]
            self.hostname = member["hostname"]
            self.selector = str(member.get("selector") or f"{fleet_host}-{{date}}")
        self.mailname = host.get("mailname") or self.hostname
        self.domains = list((spec.get("domains") or {}).keys())
        # Listed sending subdomains (domains.DOMAIN.subdomains: [label, ...]):
        # full name -> parent domain. Each is signed as itself.
        self.listed = {}
        for name, settings in (spec.get("domains") or {}).items():
            name = str(name).lower().rstrip(".")
            for label in (settings or {}).get("subdomains") or []:
                label = str(label).lower().rstrip(".")
                full = label if label.endswith("." + name) else f"{label}.{name}"
                self.listed[full] = name
        # The smart host's name in the example (the test copy points at the sink):
        # with one, mail reaches receivers from the provider.
        self.provider = provider
        self.key_mode = dkim.get("key", "shared")
        self.subdomains = dkim.get("subdomains", True)
        self.oversign = [h.lower() for h in (dkim.get("oversign_headers") or ["From"])]
        aliases = {}
        for name, val in (spec.get("aliases") or {}).items():
            if isinstance(val, str):
                val = [v.strip() for v in val.split(",") if v.strip()]
            aliases[str(name).lower()] = [str(v) for v in val]
        aliases.setdefault("postmaster", ["root"])
        self.aliases = aliases
        self.relay = host.get("relay")
        self.interfaces = host.get("interfaces", "loopback-only")
        self.networks = host.get("networks") or ["127.0.0.0/8", "::1/128"]

    def selector_regex(self):
        parts = [re.escape(p) for p in self.selector.split("{date}")]
        return re.compile("^" + r"(\d{8})".join(parts) + "$")

    def resolve_alias(self, name, seen=()):
        """Final recipients of mail to NAME: addresses, or local mailboxes (no @)."""
        name = name.lower()
        if "@" in name:
            local, dom = name.split("@", 1)
            if dom in (self.hostname.lower(), self.mailname.lower(), "localhost"):
                name = local
            else:
                return {name}
        if name in seen:
            return set()
        if name not in self.aliases:
            return {name}
        result = set()
        for t in self.aliases[name]:
            result |= self.resolve_alias(t, seen + (name,))
        return result

    def signing_domain(self, domain):
        """The d= expected for mail from DOMAIN, or None when it must not be signed:
        a listed subdomain, and the mailname under a configured domain (system
        mail), are signed as themselves; any other subdomain (with
        dkim.subdomains) as its longest configured parent."""
        domain = domain.lower()
        if domain in self.listed:
            return domain
        if domain == self.mailname.lower() and any(
                domain.endswith("." + d.lower()) for d in self.domains):
            return domain
        best = None
        for d in self.domains:
            d = d.lower()
            if domain == d or (self.subdomains and domain.endswith("." + d)):
                if best is None or len(d) > len(best):
                    best = d
        return best

    def listed_under(self, domain):
        domain = domain.lower()
        return sorted(s for s, parent in self.listed.items() if parent == domain)

    def unlisted_subdomain(self, domain):
        """A subdomain of DOMAIN that the spec does not list (signed d=DOMAIN
        with dkim.subdomains, else not at all)."""
        domain = domain.lower()
        return next(f"{label}.{domain}" for label in UNLISTED_LABELS
                    if f"{label}.{domain}" not in self.listed)


def make_test_spec(orig, work):
    """The test copy of the example and the relay sink it needs."""
    spec = json.loads(json.dumps(orig))  # deep copy
    host = spec.setdefault("host", {})
    host["maillog_file"] = MAILLOG
    # Mail leaves through the sink as a relay here; outbound.py proves these.
    for direct_only in ("tls", "limits"):
        (spec.get("outbound") or {}).pop(direct_only, None)
    relay = host.get("relay")
    sink = {"port": SINK_PLAIN_PORT, "tls": False, "auth": None,
            "provider": str(relay["host"]).strip("[]").lower() if relay and relay.get("host") else None}
    if relay and relay.get("auth"):
        port = int(relay.get("port") or 587)
        if port == 25:
            port = 2587
        relay = dict(relay, host="127.0.0.1", port=port)
        auth = dict(relay["auth"])
        pwfile = auth.get("password_file") or "/etc/mailsetup/relay-password"
        if not private_path(pwfile):
            pwfile = "/etc/mailsetup/relay-password"
        auth["password_file"] = pwfile
        relay["auth"] = auth
        host["relay"] = relay
        sink = {"port": port, "tls": relay.get("tls", "encrypt") in ("encrypt", "may"),
                "auth": (auth["username"], "e2e-" + secrets.token_urlsafe(12)), "password_file": pwfile,
                "provider": sink["provider"]}
    else:
        host["relay"] = {"host": "127.0.0.1", "port": SINK_PLAIN_PORT, "tls": "none"}
    return spec, sink


# --------------------------------------------------------------------------
# Daemons


def procs(comm):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        state = st[st.rindex(")") + 2]
        if name == comm and state != "Z":
            pids.append(int(p))
    return sorted(pids)


def opendkim_pids():
    return procs("opendkim")


def opendkim_reloads():
    """How often opendkim reloaded its configuration (SIGUSR1, init script `reload`)."""
    return log_text(SYSLOG).count("configuration reloaded")


def postfix_master_pids():
    pids = []
    for pid in procs("master"):
        try:
            if os.readlink(f"/proc/{pid}/exe").endswith("/postfix/sbin/master"):
                pids.append(pid)
        except OSError:
            pass
    return pids


def conf_value(path, key):
    try:
        with open(path) as f:
            for line in f:
                parts = line.split(None, 1)
                if len(parts) == 2 and parts[0] == key:
                    return parts[1].strip()
    except OSError:
        pass
    return None


def opendkim_socket():
    sock = conf_value(OPENDKIM_CONF, "Socket") or ""
    return sock[len("local:"):] if sock.startswith("local:") else sock


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def port_open(host, port, source=None):
    try:
        s = socket.create_connection((host, port), timeout=2,
                                     source_address=(source, 0) if source else None)
        s.close()
        return True
    except OSError:
        return False


def log_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def tail(path, n=30, grep=None):
    lines = log_text(path).splitlines()
    if grep:
        lines = [l for l in lines if re.search(grep, l)]
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# Messages


def body_for(token):
    return ("Hello from the mailsetup end-to-end test.\r\n"
            ".a line that starts with a dot\r\n"
            "token " + token + "\r\n")


def build_message(token, from_addr, to_addrs):
    headers = []
    if from_addr:
        headers.append(f"From: E2E Sender <{from_addr}>")
    headers += [
        f"To: {', '.join(to_addrs)}",
        f"Subject: e2e {token}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: <{token}@e2e.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    return "\r\n".join(headers) + "\r\n\r\n" + body_for(token)


def send_sendmail(token, from_addr, to_addrs, user="www-data"):
    """As PHP's mail() does: `sendmail -t -i`, as the web server's user."""
    msg = build_message(token, from_addr, to_addrs).replace("\r\n", "\n")
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pw = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    p = sh(["/usr/sbin/sendmail", "-t", "-i"], input=msg.encode(), preexec_fn=drop,
           cwd="/", env={"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name})
    if p.returncode != 0:
        raise RuntimeError(cmd_why(p))


def send_system_mail(token, to):
    """System mail as cron or apticron send it: root, no From header."""
    msg = "\n".join([f"To: {to}", f"Subject: e2e {token}", "", body_for(token).replace("\r\n", "\n")])
    p = sh(["/usr/sbin/sendmail", "-i", to], input=msg.encode(), cwd="/")
    if p.returncode != 0:
        raise RuntimeError(cmd_why(p))


def send_smtp(token, from_addr, to_addrs):
    """As an application's SMTP client does: plain SMTP to 127.0.0.1:25."""
    msg = build_message(token, from_addr, to_addrs)
    with smtplib.SMTP("127.0.0.1", 25, local_hostname="app.e2e.test", timeout=20) as s:
        s.ehlo()
        refused = s.sendmail(from_addr, to_addrs, msg.encode())
        if refused:
            raise RuntimeError(f"refused recipients: {refused}")


def split_message(raw):
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    headers = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + b"\n" + line)
        else:
            name, _, value = line.partition(b":")
            headers.append((name.decode(errors="replace"), value))
    return headers, body


def header_values(headers, name):
    return [v.decode(errors="replace").strip() for n, v in headers if n.lower() == name.lower()]


def dkim_tags(value):
    value = re.sub(r"\s+", "", value)
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            k, _, v = part.partition("=")
            tags[k] = v
    return tags


def record_tags(value):
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            k, _, v = part.strip().partition("=")
            tags[k.strip()] = re.sub(r"\s+", "", v)
    return tags


class Records:
    def __init__(self, records):
        self.all = records
        self.dkim = {}
        self.txt = {}  # every TXT record printed: name -> [value, ...]
        self.receiver = None  # set by dns_records: the receiver's view of these records
        for r in records:
            kind = r.get("kind")
            if kind == "dkim" or (kind is None and "._domainkey." in r.get("name", "")):
                self.dkim[r["name"].rstrip(".").lower()] = r["value"]
            if str(r.get("type", "TXT")).upper() == "TXT":
                self.txt.setdefault(r["name"].rstrip(".").lower(), []).append(r["value"])

    def dnsfunc(self, name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        v = self.dkim.get(name.rstrip(".").lower())
        return v.encode() if v is not None else None

    def selectors_for(self, domain):
        suffix = "._domainkey." + domain.lower()
        return [n[:-len(suffix)] for n in self.dkim if n.endswith(suffix)]


def verify_signature(raw, records, want_d, want_s, oversign):
    """Return None when the message carries one valid signature as wanted, else why not."""
    import dkim
    headers, _ = split_message(raw)
    sigs = header_values(headers, "DKIM-Signature")
    if not sigs:
        return "no DKIM-Signature header"
    if len(sigs) != 1:
        return f"{len(sigs)} DKIM-Signature headers, expected 1: {sigs}"
    tags = dkim_tags(sigs[0])
    problems = []
    if tags.get("d", "").lower() != want_d:
        problems.append(f"d={tags.get('d')} (want d={want_d})")
    if want_s is not None and tags.get("s") != want_s:
        problems.append(f"s={tags.get('s')} (want s={want_s})")
    if tags.get("a") != "rsa-sha256":
        problems.append(f"a={tags.get('a')} (want rsa-sha256)")
    if "l" in tags:
        problems.append(f"l={tags['l']}: a body length limit lets anyone append to the body")
    signed = [h.lower() for h in tags.get("h", "").split(":") if h]
    for h in oversign:
        present = len(header_values(headers, h))
        if signed.count(h) <= present:
            problems.append(f"h= lists {h!r} {signed.count(h)} time(s) with {present} in the message: "
                            "not oversigned")
    if "from" not in signed:
        problems.append("h= does not cover From")
    name = f"{tags.get('s')}._domainkey.{tags.get('d')}"
    if records.dnsfunc(name) is None:
        problems.append(f"`mailsetup dns` printed no DKIM record {name}")
    else:
        d = dkim.DKIM(raw, minkey=1024)
        try:
            good = d.verify(dnsfunc=records.dnsfunc)
        except dkim.DKIMException as e:
            good = False
            problems.append(f"dkimpy: {e}")
        if not good:
            problems.append(f"dkimpy rejects the signature against the published {name}"
                            f" (c={tags.get('c')}, h={tags.get('h')})")
    return "; ".join(problems) or None


# --------------------------------------------------------------------------
# The receiver: DMARC (RFC 7489) as authheaders judges it


@functools.lru_cache(maxsize=None)
def public_suffix_list():
    from authheaders.dmarc_lookup import PublicSuffixList, get_suffix_list_file_name
    with open(get_suffix_list_file_name()) as f:
        return PublicSuffixList(f)


@functools.lru_cache(maxsize=None)
def org_domain(domain):
    """authheaders' get_org_domain (same list, same call), reading the list once
    instead of at every call (0.1 s each)."""
    return public_suffix_list().get_public_suffix(domain)


def report_org_domain(domain):
    """The organizational domain for report authorization: as org_domain, but a
    name under a TLD missing from the list (.example, .test) is its last two
    labels, not the TLD."""
    org = org_domain(domain)
    return org if "." in org else ".".join(domain.split(".")[-2:])


def domain_part(address):
    """authheaders.get_domain_part without its bug: its pattern @([a-z0-9.]+)
    stops at a hyphen (noreply@e2e-added.example gives "e2e"; upstream
    ValiMail/authentication-headers pull request 36)."""
    if isinstance(address, bytes):
        address = address.decode("utf-8", "replace")
    m = re.search(r"@([a-z0-9.-]+)", address, re.I)
    return m.group(1).lower().rstrip(".") if m else ""


def dmarc_tags(value):
    return {k.lower(): v for k, v in record_tags(value).items()}


_NAMED = []  # the BIND serving the receiver's DNS, replaced with each Receiver


def serve_with_bind(directory, txt, a):
    """Starts (or restarts) named on 127.0.0.1:53 of this namespace,
    authoritative for the root zone with these TXT and A records and nothing
    else, and returns a dnspython resolver that asks it alone."""
    import dns.resolver
    for old in _NAMED:
        old.terminate()
        old.wait(timeout=10)
    _NAMED.clear()
    os.makedirs(directory, exist_ok=True)
    zone = ["$TTL 300", ". SOA ns. hostmaster. 1 3600 600 86400 300", ". NS ns.", "ns. A 127.0.0.1"]
    for name, values in sorted(txt.items()):
        for v in values:
            data = v.encode()
            strings = " ".join('"' + data[i:i + 250].decode(errors="replace").replace("\\", "\\\\")
                               .replace('"', '\\"') + '"' for i in range(0, len(data), 250))
            zone.append(f"{name}. TXT {strings}")
    for name, addrs in sorted(a.items()):
        for addr in addrs:
            zone.append(f"{name}. A {addr}")
    with open(os.path.join(directory, "root.zone"), "w") as f:
        f.write("\n".join(zone) + "\n")
    d = directory
    with open(os.path.join(d, "named.conf"), "w") as f:
        f.write(f"""options {{ directory "{d}"; listen-on port 53 {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }}; pid-file "{d}/named.pid"; recursion no;
  dnssec-validation no; notify no; session-keyfile "{d}/session.key"; }};
controls {{ }};
zone "." {{ type primary; file "root.zone"; }};
""")
    log = open(os.path.join(d, "named.log"), "ab")
    proc = subprocess.Popen(["named", "-g", "-4", "-n", "1", "-u", "root", "-c",
                             os.path.join(d, "named.conf")], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    _NAMED.append(proc)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.lifetime = 5
    deadline = time.monotonic() + 20
    while True:
        try:
            resolver.resolve("ns.", "A")
            return resolver
        except Exception as e:  # not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"named did not serve the receiver's DNS: {e}\n"
                                   + tail(os.path.join(d, "named.log")))
            time.sleep(0.05)


class Receiver:
    """A receiving MTA: authheaders.authenticate_message (dkimpy, pyspf, its
    DMARC policy lookup) over a DNS served by BIND: the records `mailsetup dns`
    printed plus the A records and included SPF policies this test serves
    (self.served)."""

    def __init__(self, records, view, bind_dir):
        self.txt = {n: list(v) for n, v in records.txt.items()}
        self.printed = sum(len(v) for v in self.txt.values())
        self.provider = view.provider
        self.helo = view.provider or view.hostname.lower()
        self.address, why = self.host_address()
        self.a = {n: [self.address] for n in
                  dict.fromkeys(x.lower() for x in [view.hostname, *view.domains, *sorted(view.listed)])}
        self.served = [f"A {self.address} for {', '.join(self.a)}{why}"]
        provider_net = ipaddress.ip_network(f"{self.address}/24", strict=False)
        other_net = next(n for n in map(ipaddress.ip_network, (THIRD_PARTY_NETWORK, "203.0.113.0/24"))
                         if ipaddress.ip_address(self.address) not in n)
        self.provider_spf = []  # include targets served as the smart-host provider's
        for vals in list(self.txt.values()):
            for v in vals:
                if not v.lower().startswith("v=spf1"):
                    continue
                for m in re.finditer(r"(?:^|\s)[+?~-]?(?:include:|redirect=)([^\s%]+)", v, re.I):
                    target = m.group(1).rstrip(".").lower()
                    if target in self.txt:
                        continue
                    if self.provider:
                        net = provider_net
                        why = (f"the smart-host provider's outbound network, containing {self.address}: "
                               f"mail leaves through {self.provider}")
                        self.provider_spf.append(target)
                    else:
                        net, why = other_net, "someone else's senders, not this host"
                    self.txt[target] = [f"v=spf1 ip4:{net} -all"]
                    self.served.append(f'TXT {target} "v=spf1 ip4:{net} -all" ({why})')
        self.provider_net = provider_net
        if self.provider and self.helo not in self.txt:
            # Bounces go out with an empty envelope sender: SPF is the HELO
            # name's, the provider's own record.
            self.txt[self.helo] = [f"v=spf1 ip4:{provider_net} -all"]
            self.served.append(f'TXT {self.helo} "v=spf1 ip4:{provider_net} -all" '
                               f"(the smart-host provider's HELO name)")
        # Everything above is served by a real BIND 9 on this namespace's
        # loopback, authoritative for the root zone: every lookup the
        # evaluator makes is answered by it (and only by it).
        self.resolver = serve_with_bind(bind_dir, self.txt, self.a)

    def host_address(self):
        """The address receivers see mail come from: HOST_ADDRESS, unless the
        printed SPF records name ip4: networks and none contains it: then the
        host is taken to be in the first of them (the spec names no address)."""
        nets = []
        for vals in self.txt.values():
            for v in vals:
                if v.lower().startswith("v=spf1"):
                    for m in re.finditer(r"(?:^|\s)\+?ip4:(\S+)", v, re.I):
                        try:
                            nets.append(ipaddress.ip_network(m.group(1), strict=False))
                        except ValueError:
                            pass
        if not nets or any(ipaddress.ip_address(HOST_ADDRESS) in n for n in nets):
            return HOST_ADDRESS, ""
        n = nets[0]
        addr = n.network_address + (min(25, n.num_addresses - 2) if n.num_addresses > 2 else 0)
        return str(addr), f" (in {n}, the first ip4: network the SPF records name)"

    def describe(self):
        return (f"receiver DNS, served by BIND 9 on 127.0.0.1:53 (authoritative for the root, "
                f"so nothing else answers): the {self.printed} records `mailsetup dns` printed, plus "
                + "; ".join(self.served) + f"; SPF is evaluated for {self.address}, HELO {self.helo}")

    # DNS for dkimpy and authheaders' DMARC lookup, asked of the BIND: one
    # function for both, which dkimpy calls with bytes (and wants bytes),
    # authheaders with str.
    def dnsfunc(self, name, timeout=5):
        import dns.resolver
        as_bytes = isinstance(name, bytes)
        key = (name.decode() if as_bytes else name).rstrip(".").lower()
        try:
            answer = self.resolver.resolve(key, "TXT")
            vals = [b"".join(r.strings).decode() for r in answer]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            vals = []
        if key.startswith("_dmarc."):
            vals = [v for v in vals if v.startswith("v=DMARC1")]
        if len(vals) != 1:  # none, or several DMARC records: no policy (RFC 7489 6.6.3)
            return None
        return vals[0].encode() if as_bytes else vals[0]

    @contextlib.contextmanager
    def offline(self):
        """While authheaders runs: dnspython's default resolver (which pyspf
        and authheaders use) is the BIND's, authheaders' address parsing is
        fixed for hyphens and its public suffix list is read once."""
        import authheaders
        import authheaders.dmarc_lookup as lookup
        import dns.resolver

        patches = [(authheaders, "get_domain_part", domain_part),
                   (authheaders, "get_org_domain", org_domain),
                   (lookup, "get_org_domain", org_domain),
                   (dns.resolver, "default_resolver", self.resolver)]
        saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
        try:
            for obj, name, value in patches:
                setattr(obj, name, value)
            yield
        finally:
            for obj, name, value in saved:
                setattr(obj, name, value)

    def authenticate(self, raw, mail_from):
        """The Authentication-Results header and {method: (result, properties)}."""
        import authheaders
        from authres import AuthenticationResultsHeader
        # A null sender (a bounce) is judged as postmaster@HELO (RFC 7208 2.4),
        # which authheaders does not do by itself.
        mail_from = mail_from or f"postmaster@{self.helo}"
        with self.offline():
            ar = authheaders.authenticate_message(
                raw, AUTHSERV_ID, ip=self.address, mail_from=mail_from, helo=self.helo,
                dnsfunc=self.dnsfunc, spf=True, dkim=True, dmarc=True)
        results = {}
        for r in AuthenticationResultsHeader.parse(ar).results:
            props = {f"{p.type}.{p.name}": p.value for p in r.properties}
            results.setdefault(r.method, (r.result, props))
        return ar, results

    def spf_record(self, domain):
        return [v for v in self.txt.get(domain.lower(), []) if v.lower().startswith("v=spf1")]

    def dmarc_policy(self, from_domain):
        """(domain whose _dmarc record applies, its tags), or None: From domain
        first, then its organizational domain (RFC 7489 6.6.3; several
        DMARC records at one name count as none)."""
        for where in dict.fromkeys([from_domain, org_domain(from_domain)]):
            vals = [v for v in self.txt.get(f"_dmarc.{where}", []) if v.startswith("v=DMARC1")]
            if len(vals) == 1:
                return where, dmarc_tags(vals[0])
        return None

    def applied_policy(self, from_domain):
        """(policy, how to say it) that receivers apply to mail from FROM_DOMAIN."""
        found = self.dmarc_policy(from_domain)
        if found is None:
            return None, "no record"
        where, tags = found
        if where == from_domain:
            return tags.get("p", "?"), f"p={tags.get('p', '?')}"
        if "sp" in tags:
            return tags["sp"], f"sp={tags['sp']} of {where}"
        return tags.get("p", "?"), f"p={tags.get('p', '?')} of {where}"

    def explain_dmarc(self, from_domain, results, env_domain):
        """Why DMARC did not pass, in a receiver's terms."""
        org = org_domain(from_domain)
        found = self.dmarc_policy(from_domain)
        if found is None:
            names = [f"_dmarc.{n}" for n in dict.fromkeys([from_domain, org])]
            several = [n for n in names if len([v for v in self.txt.get(n, []) if v.startswith("v=DMARC1")]) > 1]
            if several:
                return (f"no usable DMARC record: `mailsetup dns` printed several at {', '.join(several)}, "
                        "which receivers treat as none (RFC 7489 6.6.3)")
            return f"no DMARC record: `mailsetup dns` printed none at {' nor at '.join(names)}"
        where, tags = found
        adkim, aspf = tags.get("adkim", "r"), tags.get("aspf", "r")
        policy, which = self.applied_policy(from_domain)
        if where != from_domain and "sp" not in tags:
            which += " (no sp= for subdomains)"
        why = []
        dkim_result, dkim_props = results.get("dkim", ("none", {}))
        d = (dkim_props.get("header.d") or "").lower()
        if dkim_result != "pass":
            why.append(f"DKIM {dkim_result}")
        elif adkim == "s" and d != from_domain:
            why.append(f"DKIM alignment: d={d} is not From's {from_domain}, and adkim=s (strict) "
                       f"needs exactly d={from_domain}")
        elif adkim != "s" and org_domain(d) != org:
            why.append(f"DKIM alignment: d={d} is outside From's organizational domain {org} (adkim=r)")
        spf_result = results.get("spf", ("none", {}))[0]
        if spf_result == "none":
            why.append(f"SPF none: no SPF record for the envelope sender's domain {env_domain}")
        elif spf_result != "pass":
            why.append(f"SPF {spf_result} for {env_domain} from {self.address}")
        elif aspf == "s" and env_domain != from_domain:
            why.append(f"SPF alignment: envelope domain {env_domain} is not From's {from_domain} (aspf=s)")
        elif aspf != "s" and org_domain(env_domain) != org:
            why.append(f"SPF alignment: envelope domain {env_domain} is outside {org} (aspf=r)")
        effect = {"none": "delivered, but reported as failing DMARC",
                  "quarantine": "put in spam", "reject": "rejected"}.get(policy, "?")
        why.append(f"policy: receivers apply {which} ({effect})")
        return "; ".join(why)

    def verdict(self, subject, raw, mail_from, want_d):
        """(what, why): the line for one delivered message, why None when
        receivers would accept it as DMARC-aligned."""
        try:
            ar, res = self.authenticate(raw, mail_from or "")
        except Exception as e:  # noqa: BLE001 - the evaluator itself failed
            return (f"{subject}: receiver verdict",
                    f"authheaders failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        headers, _ = split_message(raw)
        from_domain = domain_part(" ".join(header_values(headers, "From")))
        env_domain = domain_part(mail_from or "") or self.helo
        dkim_r, dkim_p = res.get("dkim", ("none", {}))
        if not header_values(headers, "DKIM-Signature"):
            dkim_r = "none"  # authheaders says fail for a message without a signature
        spf_r = res.get("spf", ("none", {}))[0]
        dmarc_r = res.get("dmarc", ("none", {}))[0]
        d = (dkim_p.get("header.d") or "").lower()
        pol = self.applied_policy(from_domain)[1]
        via = ""
        record = " ".join(self.spf_record(env_domain)).lower()
        provider = [t for t in self.provider_spf if f"include:{t}" in record or f"redirect={t}" in record]
        if spf_r == "pass" and provider:
            via = (f" from {self.address} via the provider: {', '.join(provider)} "
                   f"served as ip4:{self.provider_net}")
        what = (f"{subject}: dkim={dkim_r} (d={d or '-'}) spf={spf_r} ({mail_from or '<>'}{via}) "
                f"dmarc={dmarc_r} ({pol})")
        problems = []
        if dkim_r != "pass" or d != want_d:
            problems.append(f"DKIM: {dkim_r} for d={d or '-'}, want pass for d={want_d}")
        # Every sender the spec allows passes SPF too (Gmail's and Microsoft's
        # rules for bulk senders want SPF and DKIM): unlisted subdomains leave
        # with the envelope on their domain, system mail and bounces have the
        # host's own names' records.
        if spf_r != "pass":
            have = (f"the printed SPF record {self.spf_record(env_domain)[0]!r}"
                    if self.spf_record(env_domain) else "no printed SPF record")
            problems.append(f"SPF: {spf_r} for {env_domain} from {self.address}, want pass ({have})")
        if dmarc_r != "pass":
            problems.append(f"DMARC {dmarc_r}: " + self.explain_dmarc(from_domain, res, env_domain))
        if not problems:
            return what, None
        return what, "; ".join(problems) + "\n" + ar


def receiver_checks(subject, arrived, want_d, records):
    """The receiver's line for every arrived message (one line when they agree)."""
    if records.receiver is None:
        return []
    lines = []
    for m in arrived:
        line = records.receiver.verdict(subject, m["data"], m["mail_from"], want_d)
        if line not in lines:
            lines.append(line)
    return lines


def intact(raw, token, from_addr, to_addrs):
    headers, body = split_message(raw)
    want_body = body_for(token).replace("\r\n", "\n").encode()
    problems = []
    if body != want_body:
        problems.append(f"body changed: {body[:300]!r} != {want_body!r}")
    subj = header_values(headers, "Subject")
    if subj != [f"e2e {token}"]:
        problems.append(f"Subject is {subj}")
    if from_addr:
        frm = header_values(headers, "From")
        if frm != [f"E2E Sender <{from_addr}>"]:
            problems.append(f"From is {frm}")
        to = header_values(headers, "To")
        if to != [", ".join(to_addrs)]:
            problems.append(f"To is {to}")
    return "; ".join(problems) or None


# --------------------------------------------------------------------------
# The scenario


class Case:
    """One message sent, and what must be true of it on arrival."""

    def __init__(self, what, token, send, evaluate, expect_rcpts, judge=None):
        self.what, self.token, self.send, self.evaluate = what, token, send, evaluate
        self.expect_rcpts = expect_rcpts  # addresses the sink must see for this token
        self.send_error = None
        # The receiver's verdict: arrived messages -> [(what, why or None)], one
        # check each, reported after the case's own check with self.prefix.
        self.judge = judge
        self.prefix = ""

    def label(self, label):
        self.what = f"{label}: {self.what}"
        self.prefix = f"{label}: {self.prefix}"

    def arrived(self, msgs):
        return [m for m in msgs if f"e2e {self.token}".encode() in m["data"]]

    def complete(self, msgs):
        got = set()
        for m in self.arrived(msgs):
            got |= set(m["rcpt_tos"])
        return self.expect_rcpts <= got


def new_token(label):
    return f"{label}-{secrets.token_hex(4)}"


def run_cases(cases, sink):
    for c in cases:
        try:
            c.send()
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            c.send_error = e
    pending = [c for c in cases if c.send_error is None]
    wait_for(lambda: all(c.complete(sink.snapshot()) for c in pending), DELIVERY_TIMEOUT, 0.1)
    msgs = sink.snapshot()
    diag_done = False
    for c in cases:
        if c.send_error is not None:
            R.fail(c.what, f"sending failed: {c.send_error}")
            continue
        arrived = c.arrived(msgs)
        if not c.complete(msgs):
            got = sorted({r for m in arrived for r in m["rcpt_tos"]})
            why = (f"not delivered to {sorted(c.expect_rcpts)} within {DELIVERY_TIMEOUT:.0f}s "
                   f"(sink got {got})")
            if not diag_done:
                why += "\nmailq:\n" + sh(["mailq"]).out.strip() + "\npostfix log:\n" + tail(MAILLOG, 15)
                diag_done = True
            R.fail(c.what, why)
            continue
        try:
            why = c.evaluate(arrived)
        except Exception as e:  # noqa: BLE001
            why = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        R.check(c.what, why is None, why)
        if c.judge is not None:
            try:
                lines = c.judge(arrived)
            except Exception as e:  # noqa: BLE001
                lines = [("receiver verdict", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")]
            for what, why in lines:
                R.check(c.prefix + what, why is None, why)


def signed_case(label, how, from_addr, view, records, selector, to=RECEIVER):
    token = new_token(label)
    domain = from_addr.split("@", 1)[1]
    want_d = view.signing_domain(domain)
    sender = send_sendmail if how == "sendmail" else send_smtp

    def evaluate(arrived):
        m = arrived[0]
        if len(arrived) != 1:
            return f"{len(arrived)} copies arrived"
        why = intact(m["data"], token, from_addr, [to])
        if why:
            return why
        return verify_signature(m["data"], records, want_d, selector, view.oversign)

    def judge(arrived):
        return receiver_checks(f"{how}: mail from {from_addr}", arrived, want_d, records)

    what = f"{how}: mail from {from_addr} arrives signed d={want_d} s={selector} and verifies"
    return Case(what, token, lambda: sender(token, from_addr, [to]), evaluate, {to}, judge)


def unsigned_case(label, from_addr, records):
    token = new_token(label)

    def evaluate(arrived):
        headers, _ = split_message(arrived[0]["data"])
        sigs = header_values(headers, "DKIM-Signature")
        bad = []
        for s in sigs:
            t = dkim_tags(s)
            if records.dnsfunc(f"{t.get('s')}._domainkey.{t.get('d')}") is not None or \
                    t.get("d", "").lower() == from_addr.split("@")[1]:
                bad.append(f"d={t.get('d')} s={t.get('s')}")
        if bad:
            return "signed with this server's keys: " + ", ".join(bad)
        if sigs:
            return f"carries unexpected DKIM signatures: {sigs}"
        return None

    return Case(f"smtp: mail from {from_addr} (not configured) is not signed", token,
                lambda: send_smtp(token, from_addr, [RECEIVER]), evaluate, {RECEIVER})


def bounce_case(view, records, selector):
    """A bounce: Postfix's own mail, with an empty envelope sender (receivers
    judge its SPF by the HELO name) and From MAILER-DAEMON@mailname (its DKIM
    and DMARC by the mailname). Mail from an outside sender to a local user
    that does not exist comes back to that sender."""
    token = new_token("bounce")
    mailname = open("/etc/mailname").read().split("\n")[0].strip().lower()
    want_d = view.signing_domain(mailname)
    unknown = f"nobody-{token[-8:]}@{mailname}"

    def send():
        msg = build_message(token, RECEIVER, [unknown]).replace("\r\n", "\n")
        p = sh(["/usr/sbin/sendmail", "-i", "-f", RECEIVER, unknown], input=msg.encode(), cwd="/")
        if p.returncode != 0:
            raise RuntimeError(cmd_why(p))

    def evaluate(arrived):
        problems = []
        for m in arrived:
            if m["mail_from"]:
                problems.append(f"envelope sender {m['mail_from']!r}, not <>")
            headers, _ = split_message(m["data"])
            frm = " ".join(header_values(headers, "From")).lower()
            if f"@{mailname}" not in frm:
                problems.append(f"From {frm!r} is not @{mailname}")
            if want_d:
                why = verify_signature(m["data"], records, want_d, selector, view.oversign)
                if why:
                    problems.append(f"the bounce: {why}")
        return "; ".join(problems) or None

    subject = f"a bounce from MAILER-DAEMON@{mailname}"
    signed = f", signed d={want_d}" if want_d else ""
    return Case(f"mail to an unknown local user bounces to its sender{signed}", token, send,
                evaluate, {RECEIVER}, lambda arrived: receiver_checks(subject, arrived, want_d, records))


def alias_case(name, view, records, selector):
    token = new_token("alias-" + name)
    finals = view.resolve_alias(name)
    remote = {a for a in finals if "@" in a}
    local = {a for a in finals if "@" not in a}
    mailname = open("/etc/mailname").read().split("\n")[0].strip().lower()
    want_d = view.signing_domain(mailname)

    def evaluate(arrived):
        problems = []
        got = {r for m in arrived for r in m["rcpt_tos"]}
        if got != remote:
            problems.append(f"delivered to {sorted(got)}, aliases name {sorted(remote)}")
        for m in arrived:
            sender = (m["mail_from"] or "").lower()
            if sender.rpartition("@")[2] != mailname:
                problems.append(f"envelope sender {sender!r} is not @{mailname} (/etc/mailname)")
            headers, _ = split_message(m["data"])
            frm = " ".join(header_values(headers, "From")).lower()
            if not re.search(r"@" + re.escape(mailname) + r"\b", frm):
                problems.append(f"From {frm!r} is not @{mailname}")
            if want_d:
                why = verify_signature(m["data"], records, want_d, selector, view.oversign)
                if why:
                    problems.append(f"system mail from @{mailname}: {why}")
        for user in local:
            if token not in log_text(f"/var/mail/{user}"):
                problems.append(f"not in local mailbox /var/mail/{user}")
        return "; ".join(problems) or None

    subject = f"system mail to {name} from root@{mailname}"

    def judge(arrived):
        if want_d:
            return receiver_checks(subject, arrived, want_d, records)
        # Unsigned (the mailname is no signing domain): not a check, but say
        # what receivers decide when a DMARC policy covers the mailname.
        receiver = records.receiver
        if receiver is not None and arrived and receiver.dmarc_policy(mailname):
            what, _ = receiver.verdict(subject, arrived[0]["data"], arrived[0]["mail_from"], None)
            R.note(f"{case.prefix}{what}: unsigned, so not judged")
        return []

    signed = f", signed d={want_d}" if want_d else ""
    what = (f"mail to {name} reaches {', '.join(sorted(finals))} from root@{mailname}{signed}")
    case = Case(what, token, lambda: send_system_mail(token, name), evaluate, remote, judge)
    return case


# --------------------------------------------------------------------------


class Ctx:
    pass


def mailsetup(ctx, command, *args, timeout=120):
    """Run `mailsetup COMMAND ARGS` (with --host NAME for a fleet member)."""
    host = ["--host", ctx.host] if ctx.host else []
    return sh([ctx.bin, command, *args, *host], timeout=timeout)


def apply(ctx, label):
    t = time.monotonic()
    p = mailsetup(ctx, "apply", ctx.spec_path)
    ctx.outputs.append(p.out + p.err)
    must(f"{label}: `mailsetup apply` succeeds ({time.monotonic() - t:.1f}s)", p.returncode == 0, cmd_why(p))
    return p


def dns_records(ctx, label):
    p = mailsetup(ctx, "dns", ctx.spec_path, "--format", "json")
    ctx.outputs.append(p.out + p.err)
    must(f"{label}: `mailsetup dns --format json` succeeds", p.returncode == 0, cmd_why(p))
    try:
        recs = json.loads(p.out)
    except ValueError as e:
        R.fail(f"{label}: dns output is JSON", f"{e}: {p.out[:500]}")
        raise Abort(f"{label}: dns output is JSON") from e
    records = Records(recs)
    records.receiver = Receiver(records, ctx.view, os.path.join(ctx.work, "bind"))
    R.note(f"{label}: {records.receiver.describe()}")
    return records


def check_records(ctx, records, label, selector_re=None, selector=None):
    """One DKIM record per domain with the spec's selector; shared or per-domain keys."""
    view = ctx.view
    problems = []
    chosen = {}
    for d in view.domains:
        sels = records.selectors_for(d)
        if selector is not None:
            ok = [s for s in sels if s == selector]
        else:
            ok = [s for s in sels if selector_re.match(s)]
        if len(ok) != 1:
            problems.append(f"{d}: DKIM selectors {sels}, want one matching {selector or selector_re.pattern}")
            continue
        chosen[d] = ok[0]
        tags = record_tags(records.dkim[f"{ok[0]}._domainkey.{d.lower()}"])
        if tags.get("v") != "DKIM1" or tags.get("k", "rsa") != "rsa" or not tags.get("p"):
            problems.append(f"{d}: record {tags} lacks v=DKIM1, k=rsa or p=")
    R.check(f"{label}: `dns` prints a DKIM record per domain with the spec's selector "
            f"({', '.join(sorted(set(chosen.values())))})", not problems, "; ".join(problems))
    if len(chosen) == len(view.domains) and len(view.domains) > 1:
        keys = [record_tags(records.dkim[f"{s}._domainkey.{d.lower()}"])["p"] for d, s in chosen.items()]
        if view.key_mode == "shared":
            R.check(f"{label}: dkim.key shared: every domain publishes the same key",
                    len(set(keys)) == 1, f"{len(set(keys))} different keys")
        else:
            R.check(f"{label}: dkim.key per-domain: every domain has its own key",
                    len(set(keys)) == len(keys), "some domains share a key")
    check_listed_subdomains(ctx, records, label, chosen)
    check_report_authorization(records, label)
    sels = set(chosen.values())
    return sels.pop() if len(sels) == 1 else None


def check_listed_subdomains(ctx, records, label, chosen):
    """A listed subdomain publishes SPF and a DKIM record with its parent's key
    and selector; its DMARC policy is the parent's (no record of its own needed)."""
    listed = ctx.view.listed
    if not listed:
        return
    problems = []
    for sub, parent in sorted(listed.items()):
        if not [v for v in records.txt.get(sub, []) if v.lower().startswith("v=spf1")]:
            problems.append(f"{sub}: no SPF record")
        sel = chosen.get(parent) or next((c for d, c in chosen.items() if d.lower() == parent), None)
        if sel is None:
            problems.append(f"{sub}: {parent} has no DKIM record to compare with")
            continue
        mine = records.dkim.get(f"{sel}._domainkey.{sub}")
        theirs = records.dkim.get(f"{sel}._domainkey.{parent}")
        if mine is None:
            problems.append(f"{sub}: no DKIM record {sel}._domainkey.{sub} (selectors "
                            f"{records.selectors_for(sub)})")
        elif theirs is not None and record_tags(mine).get("p") != record_tags(theirs).get("p"):
            problems.append(f"{sub}: {sel}._domainkey.{sub} has another key than {parent}")
    R.check(f"{label}: `dns` prints SPF and DKIM (the parent's key) for the listed subdomains "
            f"{', '.join(sorted(listed))}", not problems, "; ".join(problems))


def check_report_authorization(records, label):
    """Receivers send aggregate/failure reports to a destination outside the
    policy's organizational domain only if it publishes
    POLICYDOMAIN._report._dmarc.DEST "v=DMARC1" (RFC 7489 section 7.1)."""
    needed, problems = [], []
    for name, vals in sorted(records.txt.items()):
        if not name.startswith("_dmarc."):
            continue
        domain = name[len("_dmarc."):]
        for v in vals:
            if not v.startswith("v=DMARC1"):
                continue
            tags = dmarc_tags(v)
            for uri in ",".join(tags.get(t, "") for t in ("rua", "ruf")).split(","):
                uri = uri.strip()
                if not uri:
                    continue
                if not uri.lower().startswith("mailto:") or "@" not in uri:
                    problems.append(f"_dmarc.{domain}: {uri!r} is not a mailto: address")
                    continue
                dest = uri.split("@", 1)[1].split("!", 1)[0].rstrip(".").lower()
                if report_org_domain(dest) == report_org_domain(domain):
                    continue
                auth = f"{domain}._report._dmarc.{dest}"
                needed.append(auth)
                if not [a for a in records.txt.get(auth, []) if a.startswith("v=DMARC1")]:
                    problems.append(f"{auth} (reports for {domain} to {dest}) is not printed")
    if not needed and not problems:
        return
    R.check(f"{label}: receivers may send DMARC reports: every external rua/ruf destination "
            f"authorizes them ({', '.join(sorted(set(needed)))})", not problems, "; ".join(problems))


def check_config(ctx, label):
    p = sh(["postfix", "check"])
    R.check(f"{label}: `postfix check` passes", p.returncode == 0 and "warning" not in p.err,
            cmd_why(p) + "\n" + tail(MAILLOG, 10, r"postfix(-script)?\b.*(warning|fatal|error)"))
    p = sh(["postconf", "-n"])
    R.check(f"{label}: `postconf -n` has no warnings", p.returncode == 0 and not p.err.strip(), cmd_why(p))
    p = sh(["opendkim", "-n", "-x", OPENDKIM_CONF])
    R.check(f"{label}: `opendkim -n` accepts {OPENDKIM_CONF}", p.returncode == 0, cmd_why(p))


def check_files(ctx):
    view = ctx.view
    mailname = log_text("/etc/mailname")
    R.check(f"/etc/mailname is {view.mailname}", mailname.strip() == view.mailname and
            mailname.count("\n") <= 1, f"it is {mailname!r}")
    p = sh(["postconf", "-h", "myorigin"])
    R.check("myorigin is /etc/mailname", p.out.strip() in ("/etc/mailname", view.mailname),
            f"myorigin = {p.out.strip()}")

    # Milter socket: postfix (chrooted in queue_directory) and opendkim agree.
    queue = sh(["postconf", "-h", "queue_directory"]).out.strip()
    milters = {sh(["postconf", "-h", k]).out.strip() for k in ("smtpd_milters", "non_smtpd_milters")}
    sock = opendkim_socket()
    want = {f"unix:{os.path.relpath(sock, queue)}"} if sock.startswith(queue + "/") else set()
    R.check("postfix's smtpd_milters/non_smtpd_milters name opendkim's Socket inside the chroot",
            want and milters == want, f"postfix milters {milters}, opendkim Socket {sock!r}, queue {queue}")

    import grp
    try:
        members = grp.getgrnam("opendkim").gr_mem
    except KeyError:
        members = []
    R.check("postfix is in the opendkim group", "postfix" in members, f"opendkim members: {members}")

    # Private keys: readable by opendkim only.
    keydir = "/etc/opendkim/keys"
    bad, found = [], 0
    for root, _, files in os.walk(keydir):
        for f in files:
            if f.endswith(".private"):
                found += 1
                st = os.stat(os.path.join(root, f))
                import pwd
                owner = pwd.getpwuid(st.st_uid).pw_name
                if st.st_mode & 0o077 or owner not in ("opendkim", "root"):
                    bad.append(f"{f}: mode {stat.S_IMODE(st.st_mode):o} owner {owner}")
    R.check(f"DKIM private keys in {keydir} are 0600 (found {found})", found and not bad,
            "; ".join(bad) or "no keys found")


def check_sasl(ctx):
    sink = ctx.sink_cfg
    if not sink.get("auth"):
        return
    username, password = sink["auth"]
    path = "/etc/postfix/sasl_passwd"
    try:
        st = os.stat(path)
        R.check(f"{path} is 0600 root", stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0,
                f"mode {stat.S_IMODE(st.st_mode):o} uid {st.st_uid}")
    except OSError as e:
        R.fail(f"{path} exists", e)
        return
    try:
        st = os.stat(path + ".db")
        R.check(f"{path}.db exists and is not readable by others",
                not st.st_mode & 0o077, f"mode {stat.S_IMODE(st.st_mode):o}")
    except OSError as e:
        R.fail(f"{path}.db exists (postmap ran)", e)
    relayhost = sh(["postconf", "-h", "relayhost"]).out.strip()
    p = sh(["postmap", "-q", relayhost, f"hash:{path}"])
    R.check(f"postmap lookup of {relayhost} in hash:{path} gives the credentials",
            p.out.strip() == f"{username}:{password}", cmd_why(p))
    leaks = [f for f in ("/etc/postfix/main.cf", "/etc/postfix/master.cf") if password in log_text(f)]
    R.check("the relay password appears nowhere but sasl_passwd", not leaks, f"found in {leaks}")


def start_daemons(ctx):
    if opendkim_pids():
        R.note(f"opendkim already running after apply (pids {opendkim_pids()})")
    else:
        p = sh(["/etc/init.d/opendkim", "start"])
        R.check("`/etc/init.d/opendkim start` succeeds", p.returncode == 0, cmd_why(p))
    sock = opendkim_socket()
    must(f"opendkim runs and listens on {sock}",
         wait_for(lambda: opendkim_pids() and os.path.exists(sock) and stat.S_ISSOCK(os.stat(sock).st_mode), 10),
         f"pids {opendkim_pids()}; syslog:\n{tail(SYSLOG, 15)}")
    if postfix_master_pids():
        R.note("postfix already running after apply")
    else:
        p = sh(["postfix", "start"])
        R.check("`postfix start` succeeds", p.returncode == 0, cmd_why(p) + "\n" + tail(MAILLOG, 10))
    must("postfix listens on 127.0.0.1:25", wait_for(lambda: port_open("127.0.0.1", 25), 15),
         tail(MAILLOG, 15))


def listeners(port):
    found = []
    for path, fam in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in log_text(path).splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":
                continue
            addr, p = f[1].split(":")
            if int(p, 16) != port:
                continue
            raw = bytes.fromhex(addr)
            if fam == 4:
                ip = ipaddress.ip_address(raw[::-1])
            else:
                ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append(ip)
    return found


def check_network(ctx):
    view, outside = ctx.view, ctx.outside
    ls = listeners(25)
    if view.interfaces in ("loopback-only", ["loopback-only"]):
        R.check(f"smtpd listens on loopback only ({', '.join(map(str, ls))})",
                ls and all(a.is_loopback for a in ls), f"port 25 listeners: {ls}")
        R.check(f"nothing answers on {outside}:25 (a non-loopback address)",
                not port_open(outside, 25), "connection accepted")
    else:
        R.note(f"host.interfaces is {view.interfaces!r}: loopback-only check not applicable")

    domain = view.domains[0]

    def rcpt_code(source):
        with smtplib.SMTP(timeout=20, source_address=(source, 0) if source else None,
                          local_hostname="client.e2e.test") as s:
            s.connect("127.0.0.1", 25)
            s.ehlo()
            code, resp = s.mail(f"noreply@{domain}")
            if code != 250:
                return code, "MAIL FROM refused: " + resp.decode(errors="replace")
            code, resp = s.rcpt("victim@elsewhere.e2e.test")
            s.rset()
            return code, resp.decode(errors="replace")

    try:
        code, resp = rcpt_code(None)
        R.check("a client on 127.0.0.1 (in mynetworks) may relay", code == 250, f"{code} {resp}")
        code, resp = rcpt_code(outside)
        R.check(f"a client at {outside} (outside mynetworks) cannot relay ({code} {resp})",
                code >= 400, f"RCPT TO an outside address got {code} {resp}")
    except (OSError, smtplib.SMTPException) as e:
        R.fail("relay restriction check", f"{type(e).__name__}: {e}")


def mail_round(ctx, records, selector, label, full=True):
    view = ctx.view
    cases = []
    for d in view.domains:
        if full:
            cases.append(signed_case(f"sm-{d}", "sendmail", f"noreply@{d}", view, records, selector))
        cases.append(signed_case(f"smtp-{d}", "smtp", f"noreply@{d}", view, records, selector))
        if full and view.subdomains:
            sub = view.unlisted_subdomain(d)
            cases.append(signed_case(f"sub-{d}", "smtp", f"noreply@{sub}", view, records, selector))
            cases.append(signed_case(f"subsm-{d}", "sendmail", f"www@{sub}", view, records, selector))
        for sub in view.listed_under(d):
            if full:
                cases.append(signed_case(f"lsm-{sub}", "sendmail", f"www@{sub}", view, records, selector))
            cases.append(signed_case(f"lsub-{sub}", "smtp", f"noreply@{sub}", view, records, selector))
    if full:
        cases.append(unsigned_case("unconf", f"noreply@{UNCONFIGURED}", records))
        d0 = view.domains[0]
        cases.append(unsigned_case("lookalike1", f"noreply@x{d0}", records))
        cases.append(unsigned_case("lookalike2", f"noreply@{d0}.{UNCONFIGURED}", records))
        if not view.subdomains:
            cases.append(unsigned_case("nosub", f"noreply@{view.unlisted_subdomain(d0)}", records))
        for name in sorted(set(view.aliases) | {"root", "postmaster"}):
            cases.append(alias_case(name, view, records, selector))
        cases.append(bounce_case(view, records, selector))
    for c in cases:
        c.label(label)
    run_cases(cases, ctx.sink)


def check_relay_auth(ctx):
    cfg = ctx.sink_cfg
    msgs = ctx.sink.snapshot()
    port = cfg["port"]
    relayhost = sh(["postconf", "-h", "relayhost"]).out.strip()
    R.check(f"relayhost is the sink on the spec's port ({relayhost})",
            relayhost in (f"[127.0.0.1]:{port}",) or (port == 25 and relayhost == "[127.0.0.1]"),
            f"relayhost = {relayhost!r}")
    if not cfg.get("auth"):
        return
    username = cfg["auth"][0]
    R.check(f"every message reached the smart host over STARTTLS with AUTH as {username}",
            msgs and all(m["tls"] and m["authenticated"] for m in msgs),
            f"{sum(1 for m in msgs if not m['tls'])} without TLS, "
            f"{sum(1 for m in msgs if not m['authenticated'])} without AUTH; attempts {ctx.sink.auth_attempts}")
    bad = [a for a in ctx.sink.auth_attempts if not a[2]]
    R.check("no failed AUTH attempts at the smart host", not bad, f"{bad}")


def maillog_count(pattern):
    return len(re.findall(pattern, log_text(MAILLOG), re.M))


def daemon_state():
    """opendkim pids, postfix master pids, postfix reloads logged, opendkim
    starts/stops/reloads logged."""
    return (opendkim_pids(), postfix_master_pids(), maillog_count(r"\breload\b"),
            log_text(SYSLOG).count("OpenDKIM Filter v") + opendkim_reloads())


def status_round(ctx):
    """`mailsetup status` against what the sink saw: messages to a receiver
    that accepts, one that defers and one that refuses; the counts and the
    reasons `status` reads from the log are the sink's. Then the key made
    unreadable: OpenDKIM cannot sign, `status` says so and exits 3."""
    d0 = ctx.view.domains[0]
    plan = {"accept.e2e.test": 3, "defer.e2e.test": 2, "reject.e2e.test": 2}
    rcpts = [f"status{i}@{dom}" for dom, n in plan.items() for i in range(n)]
    for rcpt in rcpts:
        send_smtp(new_token("status"), f"noreply@{d0}", [rcpt])

    def logged():
        text = log_text(MAILLOG)
        return all(re.search(rf"to=<{re.escape(r)}>.* status=(sent|deferred|bounced)", text) for r in rcpts)
    wait_for(logged, DELIVERY_TIMEOUT)
    with ctx.sink.lock:
        answers = list(ctx.sink.rcpt_answers)
    saw = {dom: {"250": 0, "451": 0, "550": 0} for dom in plan}
    for dom, code in answers:
        saw[dom][code] += 1
    p = mailsetup(ctx, "status", ctx.spec_path, "--log", MAILLOG, "--log", SYSLOG,
                  "--since", "1h", "--format", "json")
    try:
        report = json.loads(p.out)
    except ValueError:
        R.fail("status: `mailsetup status --format json`", cmd_why(p))
        return
    got = report["log"]["receivers"]

    def counts(dom):
        r = got.get(dom, {})
        return {"250": r.get("sent", 0), "451": r.get("deferred", 0), "550": r.get("bounced", 0)}
    R.check("status: deliveries per receiver are what the receivers saw "
            f"({', '.join(f'{d}: {saw[d]}' for d in plan)})",
            all(counts(d) == saw[d] for d in plan),
            f"status says {({d: counts(d) for d in plan})}\n{p.out[:2000]}")
    waiting = (report.get("queue") or {}).get("by_receiver", {}).get("defer.e2e.test", {})
    R.check("status: the queue holds the deferred messages, with the receiver's reason",
            waiting.get("recipients") == saw["defer.e2e.test"]["451"]
            and "4.7.650" in (waiting.get("reason") or ""), json.dumps(report.get("queue")))
    reasons = json.dumps(got.get("defer.e2e.test", {}).get("reasons")) + \
        json.dumps(got.get("reject.e2e.test", {}).get("reasons"))
    R.check("status: the receivers' reasons are grouped with their codes",
            "4.7.650" in reasons and "rate limited" in reasons and "5.1.1" in reasons, reasons)
    # What left unsigned is what this test sent from domains it does not
    # configure (on purpose), nothing else: found by message-id in the log.
    text = log_text(MAILLOG)
    on_purpose = ("unconf-", "lookalike1-", "lookalike2-", "nosub-")
    wrong = []
    for qid in report["log"]["unsigned"]:
        m = re.search(rf"{qid}: message-id=<([^>]*)>", text)
        if not (m and m.group(1).startswith(on_purpose)):
            wrong.append(f"{qid} ({m.group(1) if m else 'no message-id'})")
    R.check("status: every message that left unsigned is one sent from an unconfigured domain "
            f"({len(report['log']['unsigned'])}), and is named as needing attention",
            report["log"]["saw_opendkim"] and report["log"]["unsigned"] and not wrong
            and p.returncode == 3, f"exit {p.returncode}; not on purpose: {wrong}")

    # The key unreadable: OpenDKIM cannot sign; status names it and exits 3.
    table = log_text("/etc/opendkim/KeyTable")
    key = next(l.split(":")[-1] for l in table.splitlines() if l.startswith(d0.lower() + " "))
    def complaints():
        return len([l for l in log_text(SYSLOG).splitlines() if "opendkim[" in l and
                    re.search(r"error|can't|cannot|unable|fail|denied", l, re.I)])
    before = complaints()
    os.chmod(key, 0)
    for pid in opendkim_pids():
        os.kill(pid, signal.SIGUSR1)
    token = new_token("unsignable")
    send_sendmail(token, f"noreply@{d0}", ["status9@accept.e2e.test"])
    wait_for(lambda: complaints() > before, 15)
    p = mailsetup(ctx, "status", ctx.spec_path, "--log", MAILLOG, "--log", SYSLOG,
                  "--since", "1h", "--format", "json")
    try:
        report = json.loads(p.out)
    except ValueError:
        report = {"log": {}, "attention": []}
    R.check("status: a message OpenDKIM could not sign (key unreadable) is reported, exit 3",
            p.returncode == 3 and report["log"].get("signing_errors") and report["attention"],
            f"exit {p.returncode}: {json.dumps(report.get('log', {}).get('signing_errors'))} "
            f"{report.get('attention')}\n{tail(SYSLOG, 10, grep='opendkim')}")
    os.chmod(key, 0o600)
    for pid in opendkim_pids():
        os.kill(pid, signal.SIGUSR1)
    sh(["postqueue", "-f"])
    wait_for(lambda: any(token.encode() in m["data"] for m in ctx.sink.messages), DELIVERY_TIMEOUT)


def idempotence(ctx, records, selector):
    p = mailsetup(ctx, "plan", ctx.spec_path, "--detailed-exitcode")
    ctx.outputs.append(p.out + p.err)
    R.check("after apply, `plan --detailed-exitcode` exits 0 (nothing to do)", p.returncode == 0, cmd_why(p))
    before = daemon_state()
    apply(ctx, "second apply")
    # opendkim applies a reload at the next message: send one before counting.
    d = ctx.view.domains[0]
    probe = signed_case(f"again-{d}", "smtp", f"noreply@{d}", ctx.view, records, selector)
    probe.label("second apply")
    run_cases([probe], ctx.sink)
    after = daemon_state()
    R.check(f"second apply neither restarts nor reloads opendkim (pid {before[0]})",
            before[0] == after[0] and before[3] == after[3],
            f"pids {before[0]} -> {after[0]}, starts/stops/reloads logged {before[3]} -> {after[3]}")
    R.check(f"second apply neither restarts nor reloads postfix (master {before[1]})",
            before[1] == after[1] and before[2] == after[2],
            f"master {before[1]} -> {after[1]}, reloads logged {before[2]} -> {after[2]}")


def secrets_not_printed(ctx):
    blobs = []
    for root, _, files in os.walk("/etc/opendkim/keys"):
        for f in files:
            if f.endswith(".private"):
                lines = [l for l in log_text(os.path.join(root, f)).splitlines() if l and "-----" not in l]
                blobs += [l for l in lines[1:3] if len(l) >= 40]
    if ctx.sink_cfg.get("auth"):
        blobs.append(ctx.sink_cfg["auth"][1])
    p = mailsetup(ctx, "plan", ctx.spec_path)
    text = "".join(ctx.outputs) + p.out + p.err
    leaked = [b[:12] + "..." for b in blobs if b in text]
    R.check("no private key material or relay password in apply/plan/dns output",
            not leaked, f"found {leaked}")


def change_signing(ctx, label, mutate, selector):
    """Change the spec in a way that changes the KeyTable or SigningTable, apply,
    and check that opendkim was restarted or reloaded and signs the next message
    as the new spec says."""
    mutate(ctx.test_spec)
    dump_yaml(ctx.test_spec, ctx.spec_path)
    ctx.view = SpecView(ctx.test_spec, ctx.host, ctx.sink_cfg.get("provider"))
    before = opendkim_pids()
    reloads = opendkim_reloads()
    master = postfix_master_pids()
    apply(ctx, label)
    sock = opendkim_socket()
    running = wait_for(lambda: opendkim_pids() and os.path.exists(sock), 10)
    after = opendkim_pids()
    R.check(f"{label}: postfix master still running", postfix_master_pids() == master,
            f"{master} -> {postfix_master_pids()}")
    check_config(ctx, label)
    records = dns_records(ctx, label)
    check_records(ctx, records, label, selector=selector)
    mail_round(ctx, records, selector, label, full=False)
    # Either is fine: a restart (new pid) or a reload (SIGUSR1, the init script's
    # `reload`; opendkim applies it lazily, at the next message, and logs
    # "configuration reloaded"). The messages above prove that it took effect.
    how = "restarted" if after != before else ("reloaded" if opendkim_reloads() > reloads else None)
    R.check(f"{label}: apply {how or 'restarted or reloaded'} opendkim (pid {before} -> {after})",
            running and how, f"pids {before} -> {after}, no reload logged; syslog:\n{tail(SYSLOG, 10)}")
    p = mailsetup(ctx, "plan", ctx.spec_path, "--detailed-exitcode")
    ctx.outputs.append(p.out + p.err)
    R.check(f"{label}: afterwards `plan --detailed-exitcode` exits 0", p.returncode == 0, cmd_why(p))


def rotation(ctx, old_selector):
    # A domain's key: a new selector means a new key and a new KeyTable.
    new = ROTATED_SELECTOR if old_selector != ROTATED_SELECTOR else ROTATED_SELECTOR + "2"

    def new_selector(spec):
        if ctx.host:
            spec["hosts"][ctx.host]["selector"] = new
        else:
            spec.setdefault("dkim", {})["selector"] = new

    change_signing(ctx, f"key rotation (dkim.selector: {new})", new_selector, new)

    # The signing table: one more domain to sign for.
    def add_domain(spec):
        spec.setdefault("domains", {})[ADDED_DOMAIN] = None

    change_signing(ctx, f"signing table (domain {ADDED_DOMAIN} added)", add_domain, new)


def rotation_waits_for_the_queue(ctx):
    """`rotate finish` and `rotate auto` leave a retiring key published while
    Postfix's queue holds mail that arrived before signing switched (it carries
    that key's signature); once the queue lets go, finish revokes it. Days move
    with SOURCE_DATE_EPOCH; the mail waits because its receiver defers it."""
    def dated(spec):
        if ctx.host:
            spec["hosts"][ctx.host]["selector"] = "q{date}"
        else:
            spec.setdefault("dkim", {})["selector"] = "q{date}"
    dated(ctx.test_spec)
    dump_yaml(ctx.test_spec, ctx.spec_path)
    apply(ctx, "queue-aware rotation: a dated selector")
    old = "q" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    d0 = ctx.view.domains[0]
    sh(["postsuper", "-d", "ALL"])
    send_smtp(new_token("queued"), f"noreply@{d0}", ["waits@defer.e2e.test"])
    wait_for(lambda: "waits@defer.e2e.test" in sh(["postqueue", "-j"]).out
             and re.search(r"to=<waits@defer\.e2e\.test>.* status=deferred", log_text(MAILLOG)),
             DELIVERY_TIMEOUT)
    now = int(time.time())

    def rotate(step, days, *extra):
        p = sh([ctx.bin, "rotate", step, ctx.spec_path, *extra, *(["--host", ctx.host] if ctx.host else [])],
               env={"SOURCE_DATE_EPOCH": str(now + days * 86400)})
        ctx.outputs.append(p.out + p.err)
        return p

    def old_key_exists():
        return any(old in f for _, _, files in os.walk("/etc/opendkim/keys") for f in files)

    for step, extra in (("start", ()), ("activate", ("--force", "--resolver", "127.0.0.1:1"))):
        p = rotate(step, 1, *extra)
        must(f"queue-aware rotation: `rotate {step}` a day later", p.returncode == 0, cmd_why(p))
    p = rotate("finish", 10)
    R.check(f"rotate finish after the grace period refuses while the queue holds mail {old} signed "
            "(exit 1, says why, the key stays)",
            p.returncode == 1 and "mail waiting in the queue" in p.err and old in p.err and old_key_exists(),
            cmd_why(p))
    p = rotate("auto", 10)
    R.check("rotate auto leaves it too, and says it waits for the queue",
            p.returncode == 0 and "waiting to revoke" in p.out and old_key_exists(), cmd_why(p))
    sh(["postsuper", "-d", "ALL"])
    p = rotate("finish", 10)
    R.check(f"once the queue is empty, rotate finish revokes {old} (its private key archived)",
            p.returncode == 0 and not old_key_exists(), cmd_why(p))


def save_artifacts(ctx):
    dest = os.path.join(ctx.work, "artifacts")
    os.makedirs(dest, exist_ok=True)
    for src in ["/etc/postfix/main.cf", "/etc/postfix/master.cf", OPENDKIM_CONF, "/etc/opendkim/KeyTable",
                "/etc/opendkim/SigningTable", "/etc/opendkim/TrustedHosts", "/etc/default/opendkim",
                "/etc/aliases", "/etc/mailname", MAILLOG, SYSLOG]:
        if os.path.exists(src):
            shutil.copy(src, os.path.join(dest, src.strip("/").replace("/", "_")))
    with open(os.path.join(dest, "mailq.txt"), "w") as f:
        f.write(sh(["mailq"]).out)


def scenario(args):
    ctx = Ctx()
    ctx.bin = os.path.abspath(args.mailsetup)
    ctx.work = os.path.abspath(args.work)
    ctx.host = args.host
    ctx.outputs = []
    example = os.path.abspath(args.spec)
    fleet = f" --host {ctx.host}" if ctx.host else ""
    out(f"# e2e {os.path.basename(example)}{fleet} with {ctx.bin}")

    orig = load_yaml(example)
    ctx.test_spec, ctx.sink_cfg = make_test_spec(orig, ctx.work)
    ctx.view = SpecView(ctx.test_spec, ctx.host, ctx.sink_cfg.get("provider"))

    setup_mounts(ctx.work)
    start_syslog_sink()
    ctx.outside = setup_network(ctx.view.networks)
    if isinstance(ctx.view.interfaces, list):
        for a in ctx.view.interfaces:
            if not ipaddress.ip_address(a).is_loopback:
                sh(["ip", "addr", "add", f"{a}/{32 if ipaddress.ip_address(a).version == 4 else 128}",
                    "dev", "lo"], check=True)
    R.ok(f"private namespaces: /etc, /var, /run, /dev private; lo up; outside client address {ctx.outside}")

    ctx.spec_path = os.path.join(ctx.work, "spec.yaml")
    dump_yaml(ctx.test_spec, ctx.spec_path)
    if ctx.sink_cfg.get("auth"):
        pwfile = ctx.sink_cfg["password_file"]
        os.makedirs(os.path.dirname(pwfile), mode=0o700, exist_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (ctx.sink_cfg["auth"][1] + "\n").encode())
        os.close(fd)
        tls = make_cert(os.path.join(ctx.work, "ns")) if ctx.sink_cfg["tls"] else None
        ctx.sink = Sink(ctx.sink_cfg["port"], tls_files=tls, auth=ctx.sink_cfg["auth"])
        R.note(f"smart-host sink on 127.0.0.1:{ctx.sink_cfg['port']} (STARTTLS {'required' if tls else 'off'}, "
               f"AUTH required as {ctx.sink_cfg['auth'][0]})")
    else:
        ctx.sink = Sink(ctx.sink_cfg["port"])
        R.note(f"relay sink on 127.0.0.1:{ctx.sink_cfg['port']} (test-only relayhost override)")

    date_before = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    apply(ctx, "first apply")
    date_after = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    check_config(ctx, "first apply")
    check_files(ctx)
    check_sasl(ctx)
    start_daemons(ctx)

    records = dns_records(ctx, "first apply")
    selector = check_records(ctx, records, "first apply", selector_re=ctx.view.selector_regex())
    if selector and "{date}" in ctx.view.selector:
        m = ctx.view.selector_regex().match(selector)
        R.check(f"{{date}} in the selector is the UTC date of key creation ({m.group(1)})",
                m.group(1) in (date_before, date_after), f"today is {date_before}")
    if ctx.host:
        # What the fleet publishes (`dns` without --host) includes this host's records.
        p = sh([ctx.bin, "dns", ctx.spec_path, "--format", "json"])
        try:
            fleet = Records(json.loads(p.out))
            missing = [n for n, v in records.dkim.items() if fleet.dkim.get(n) != v]
        except ValueError as e:
            missing = [f"not JSON: {e}"]
        R.check(f"fleet: `dns` without --host publishes {ctx.host}'s DKIM records too",
                p.returncode == 0 and not missing, f"{cmd_why(p)}\nmissing or different: {missing}")

    check_network(ctx)
    mail_round(ctx, records, selector, "first apply")
    check_relay_auth(ctx)
    status_round(ctx)
    idempotence(ctx, records, selector)
    secrets_not_printed(ctx)
    rotation(ctx, selector)
    rotation_waits_for_the_queue(ctx)


def worker(args):
    try:
        scenario(args)
    except Abort as e:
        out(f"    aborted after: {e}")
    except Exception as e:  # noqa: BLE001
        R.fail("driver", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    try:
        save_artifacts_ctx = Ctx()
        save_artifacts_ctx.work = os.path.abspath(args.work)
        save_artifacts(save_artifacts_ctx)
    except Exception as e:  # noqa: BLE001
        out(f"    could not save artifacts: {e}")
    if R.failures:
        out("--- postfix log (tail) ---\n" + tail(MAILLOG, 40))
        out("--- syslog: opendkim (tail) ---\n" + tail(SYSLOG, 30))
        out(f"--- artifacts in {os.path.join(os.path.abspath(args.work), 'artifacts')} (if kept)")
    elapsed = time.monotonic() - T0
    out(f"# {R.passes} ok, {len(R.failures)} failed, {elapsed:.1f}s")
    return 1 if R.failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mailsetup", required=True, help="the mailsetup binary")
    ap.add_argument("--spec", required=True, help="an example spec")
    ap.add_argument("--work", help="a scratch directory")
    ap.add_argument("--host", help="with a fleet spec: the host (a name under `hosts`) to be")
    ap.add_argument("--list-hosts", action="store_true",
                    help="print the spec's fleet host names, one a line, and exit (no namespaces needed)")
    args = ap.parse_args()
    if args.list_hosts:
        for name in (load_yaml(args.spec).get("hosts") or {}):
            print(name)
        return 0
    if not args.work:
        ap.error("--work is required")

    missing = []
    for mod in ("dkim", "aiosmtpd", "yaml", "authheaders", "authres", "spf", "publicsuffix2"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(f"python module {mod}")
    for exe in ("postfix", "opendkim", "postconf", "postmap", "ip", "mount", "openssl"):
        if not shutil.which(exe, path=PATH):
            missing.append(exe)
    if missing:
        out(f"FAIL prerequisites: missing {', '.join(missing)}")
        return 2
    assert_in_fresh_namespaces()

    return run_as_init(worker, args)


def run_as_init(work, args):
    """As PID 1 of the namespace: reap every orphan (postfix and opendkim
    daemonize) while a child runs `work(args)`; when we exit, the kernel kills
    the rest."""
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        code = 2
        try:
            code = work(args)
        finally:
            sys.stdout.flush()
            os._exit(code)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 2
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 2


if __name__ == "__main__":
    sys.exit(main())
