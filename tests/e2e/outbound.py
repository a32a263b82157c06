#!/usr/bin/python3
"""End-to-end proof of the outbound policy (`outbound:` in the spec) with
Debian's real Postfix, OpenDKIM, BIND 9 and unbound: mail delivered straight
to receivers found through a DNSSEC-signed DNS.

Run it only inside fresh namespaces (it refuses otherwise), like driver.py:

    unshare --mount --net --pid --fork --mount-proc --kill-child \\
        /usr/bin/python3 tests/e2e/outbound.py \\
        --mailsetup target/debug/mailsetup --spec examples/outbound.yaml --work /tmp/DIR

The world it builds in the namespace:
  * BIND 9 on 127.0.0.53, authoritative for a root zone signed with
    dnssec-signzone (ECDSA P-256 KSK and ZSK made here), holding MX, A and
    TLSA records for the receivers below.
  * unbound on 127.0.0.1:53 (what /etc/resolv.conf names), asking that BIND
    for everything and trusting the zone's KSK: it validates as it would the
    real root.
  * A test CA, trusted in this namespace's /etc/ssl/certs, that issued the
    receivers' certificates and the MTA-STS policy servers' (HTTPS on
    127.0.2.1:443, one policy per mta-sts.DOMAIN); postfix-mta-sts-resolver's
    daemon on 127.0.0.1:8461; /usr/bin/mailsetup (an overlay) for master.cf's
    socketmap service.
  * SMTP receivers on their own loopback addresses, port 25:
      dane-ok.e2e.test     STARTTLS, a certificate its TLSA 3 1 1 record matches
      dane-bad.e2e.test    STARTTLS, a TLSA record for another key
      dane-notls.e2e.test  no STARTTLS, a TLSA record
      plain.e2e.test       STARTTLS, no TLSA record, no MTA-STS
      slow.e2e.test        in a group of outbound.limits (rate delay)
      sts-ok.e2e.test      MTA-STS enforce, a CA certificate for its MX name
      sts-badname.e2e.test MTA-STS enforce, a CA certificate for another name
      sts-testing.e2e.test MTA-STS testing, a CA certificate for another name
      dane-sts.e2e.test    MTA-STS enforce with a CA certificate for its MX
                           name (MTA-STS alone would send), and a TLSA record
                           for another key (DANE must not)
      hosted.e2e.test      its MX under a name a group of outbound.limits lists
  * A second network namespace `app` (10.20.0.10) on host.networks, joined
    to this one (10.20.0.5) by a veth pair: an application server.

What it checks:
  1. plan warns and apply refuses DANE, writing nothing, when /etc/resolv.conf names a
     resolver that is not on this host, when nothing answers on 127.0.0.1,
     when the resolver there does not validate (unbound without the trust
     anchor), and (dane-and-mta-sts) when /usr/bin/mailsetup is missing; it
     succeeds then. `postconf -n` gives no warning; `check` reports DANE in
     force with a validating resolver.
  2. dane-ok: delivered over TLS, Postfix logs "Verified TLS connection".
     dane-bad and dane-notls: deferred, nothing reaches those receivers (mail
     is never sent in clear or to an unverified server). plain: delivered.
  2b. MTA-STS: sts-ok delivered over verified TLS; sts-badname deferred,
     nothing sent to it; sts-testing delivered (testing mode reports, never
     blocks). dane-sts: the MTA-STS resolver would allow it (`postmap -q`
     answers "secure"), the socketmap answers "dane" first, and the mail is
     deferred: DANE takes precedence (RFC 8461 section 2).
  3. hosted.e2e.test is delivered by its group's transport (found by MX;
     `postmap -q` on the socketmap says so), plain.e2e.test by the default.
     N messages to slow.e2e.test arrive no faster than its rate delay; as many
     to plain.e2e.test at once are not held to it.
  4. A message submitted from the app namespace arrives with no trace of the
     client's address or name, with a Received: header of this host's, and a
     DKIM signature dkimpy verifies against `mailsetup dns`'s record.

TEST-ONLY CHANGES to the spec: host.maillog_file = /var/log/postfix.log, and
two groups in outbound.limits: `e2eslow` (domains: [slow.e2e.test],
rate_delay_seconds: 2) and `e2emx` (mx: [hosted.e2e.test], concurrency: 1).
"""

import argparse
import hashlib
import json
import os
import shutil
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import driver as e2e  # noqa: E402  (the namespace, reporting and DKIM helpers)

R = e2e.R
BIND_ADDR = "127.0.0.53"
APP_HOST, APP_CLIENT = "10.20.0.5", "10.20.0.10"
APP_NAME = "app7.internal.example"
SLOW_DELAY = 2
SLOW_COUNT = 4
STS_HTTPS = "127.0.2.1"
RECEIVERS = {
    # name: (address, certificate: "own" (its MX name) | "wrong" | None (no
    # STARTTLS), TLSA: "match" | "other" | None, MTA-STS mode or None)
    "dane-ok": ("127.0.1.1", "own", "match", None),
    "dane-bad": ("127.0.1.2", "own", "other", None),
    "dane-notls": ("127.0.1.3", None, "match", None),
    "plain": ("127.0.1.4", "own", None, None),
    "slow": ("127.0.1.5", None, None, None),
    "sts-ok": ("127.0.1.6", "own", None, "enforce"),
    "sts-badname": ("127.0.1.7", "wrong", None, "enforce"),
    "sts-testing": ("127.0.1.8", "wrong", None, "testing"),
    "dane-sts": ("127.0.1.9", "own", "other", "enforce"),
    "hosted": ("127.0.1.10", None, None, None),
}


def domain(name):
    return f"{name}.e2e.test"


def spki_sha256(cert):
    der = e2e.sh(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True).stdout
    spki = e2e.sh(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, check=True).stdout
    return hashlib.sha256(spki).hexdigest()


def make_ca(directory):
    key, crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    e2e.sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=mailsetup e2e test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True)
    return crt, key


def issue(directory, ca, label, names):
    """A key and a certificate from `ca` for `names` (subjectAltName)."""
    key, csr, crt = (os.path.join(directory, f"{label}.{ext}") for ext in ("key", "csr", "crt"))
    ext = os.path.join(directory, f"{label}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names)
                + "\nextendedKeyUsage=serverAuth\n")
    e2e.sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}"], check=True)
    e2e.sh(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-out", crt, "-extfile", ext],
           check=True)
    return crt, key


def serve_sts_policies(tls_files):
    """HTTPS on STS_HTTPS:443: each mta-sts.DOMAIN's policy (RFC 8461 3.2)."""
    import http.server
    import ssl
    import threading

    policies = {f"mta-sts.{domain(name)}": (f"version: STSv1\r\nmode: {sts}\r\n"
                                             f"mx: mx.{domain(name)}\r\nmax_age: 86400\r\n")
                for name, (_, _, _, sts) in RECEIVERS.items() if sts}

    class Policy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            body = policies.get(host)
            if self.path != "/.well-known/mta-sts.txt" or body is None:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((STS_HTTPS, 443), Policy)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sorted(policies)


def start_mta_sts_daemon(directory):
    conf = os.path.join(directory, "mta-sts-daemon.yml")
    with open(conf, "w") as f:
        f.write("host: 127.0.0.1\nport: 8461\ncache:\n  type: internal\n")
    subprocess.Popen(["mta-sts-daemon", "-c", conf, "-v", "debug", "-l",
                      os.path.join(directory, "mta-sts.log")],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    e2e.must("postfix-mta-sts-resolver answers on 127.0.0.1:8461",
             e2e.wait_for(lambda: e2e.port_open("127.0.0.1", 8461), 20),
             e2e.tail(os.path.join(directory, "mta-sts.log")))


def trust(ca_cert):
    """The test CA in this namespace's system trust (what Postfix's
    smtp_tls_CAfile and the MTA-STS resolver read)."""
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    os.makedirs(os.path.dirname(bundle), exist_ok=True)
    with open(ca_cert) as src, open(bundle, "a") as dst:
        dst.write("\n" + src.read())


def install_mailsetup(binary, scratch):
    """/usr/bin/mailsetup in this namespace only (an overlay on /usr/bin)."""
    upper, work = os.path.join(scratch, "usr-bin"), os.path.join(scratch, "usr-bin-work")
    os.makedirs(upper)
    os.makedirs(work)
    e2e.sh(["mount", "-t", "overlay", "e2e-usr-bin", "-o",
            f"lowerdir=/usr/bin,upperdir={upper},workdir={work}", "/usr/bin"], check=True)
    shutil.copy(binary, "/usr/bin/mailsetup")
    os.chmod("/usr/bin/mailsetup", 0o755)


def signed_root(directory, hashes, other_hash):
    """Writes and signs the root zone; returns the KSK file (the trust anchor).
    `hashes`: each receiver's certificate's SPKI SHA-256."""
    zone = ["$TTL 300", ". SOA ns. hostmaster. 1 3600 600 86400 300", ". NS ns.",
            f"ns. A {BIND_ADDR}"]
    for name, (address, _, tlsa, sts) in RECEIVERS.items():
        d, mx = domain(name), f"mx.{domain(name)}"
        zone += [f"{d}. MX 10 {mx}.", f"{mx}. A {address}"]
        if tlsa:
            zone.append(f"_25._tcp.{mx}. TLSA 3 1 1 {hashes.get(name, other_hash) if tlsa == 'match' else other_hash}")
        if sts:
            zone += [f'_mta-sts.{d}. TXT "v=STSv1; id=20261205"', f"mta-sts.{d}. A {STS_HTTPS}"]
    path = os.path.join(directory, "root.zone")
    with open(path, "w") as f:
        f.write("\n".join(zone) + "\n")
    keys = os.path.join(directory, "keys")
    os.makedirs(keys)
    ksk = e2e.sh(["dnssec-keygen", "-q", "-K", keys, "-a", "ECDSAP256SHA256", "-f", "KSK", "."],
                 check=True).out.strip()
    e2e.sh(["dnssec-keygen", "-q", "-K", keys, "-a", "ECDSAP256SHA256", "."], check=True)
    e2e.sh(["dnssec-signzone", "-S", "-K", keys, "-o", ".", "-f", path + ".signed", path],
           check=True, cwd=directory)
    return os.path.join(keys, ksk + ".key")


def start_bind(directory):
    d = directory
    with open(os.path.join(d, "named.conf"), "w") as f:
        f.write(f"""options {{ directory "{d}"; listen-on port 53 {{ {BIND_ADDR}; }};
  listen-on-v6 {{ none; }}; pid-file "{d}/named.pid"; recursion no;
  dnssec-validation no; notify no; session-keyfile "{d}/session.key"; }};
controls {{ }};
zone "." {{ type primary; file "root.zone.signed"; }};
""")
    log = open(os.path.join(d, "named.log"), "ab")
    subprocess.Popen(["named", "-g", "-4", "-n", "1", "-u", "root", "-c",
                      os.path.join(d, "named.conf")], stdout=log, stderr=log,
                     stdin=subprocess.DEVNULL)
    e2e.must("BIND serves the signed root zone on 127.0.0.53",
             e2e.wait_for(lambda: e2e.sh(["dig", "+short", "+time=1", "+tries=1", f"@{BIND_ADDR}",
                                          "ns.", "A"]).out.strip() == BIND_ADDR, 20),
             e2e.tail(os.path.join(d, "named.log")))


UNBOUND = []


def start_unbound(directory, anchor):
    """unbound on 127.0.0.1:53 asking BIND for the root; validating with `anchor`."""
    for old in UNBOUND:
        old.terminate()
        old.wait(timeout=10)
    UNBOUND.clear()
    conf = os.path.join(directory, "unbound.conf")
    modules = "validator iterator" if anchor else "iterator"
    with open(conf, "w") as f:
        f.write(f"""server:
  interface: 127.0.0.1
  port: 53
  do-ip6: no
  do-not-query-localhost: no
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  use-syslog: no
  logfile: "{directory}/unbound.log"
  verbosity: 1
  val-log-level: 2
  module-config: "{modules}"
  # unbound answers for RFC 6761's test. itself unless told not to.
  local-zone: "test." nodefault
""" + (f'  trust-anchor-file: "{anchor}"\n' if anchor else "") + f"""stub-zone:
  name: "."
  stub-addr: {BIND_ADDR}
""")
    e2e.sh(["unbound-checkconf", conf], check=True)
    UNBOUND.append(subprocess.Popen(["unbound", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    e2e.must(f"unbound answers on 127.0.0.1 ({modules})",
             e2e.wait_for(lambda: e2e.sh(["dig", "+short", "+time=1", "+tries=1", "@127.0.0.1",
                                          f"mx.{domain('plain')}", "A"]).out.strip()
                          == RECEIVERS["plain"][0], 20),
             e2e.sh(["dig", "+time=2", "+tries=1", "@127.0.0.1", f"mx.{domain('plain')}", "A"]).out
             + e2e.tail(os.path.join(directory, "unbound.log")))


def resolv_conf(server):
    with open("/etc/resolv.conf", "w") as f:
        f.write(f"nameserver {server}\n")


def app_namespace():
    """The application server: namespace `app`, 10.20.0.10, joined to 10.20.0.5 here."""
    for argv in (["ip", "netns", "add", "app"],
                 ["ip", "link", "add", "veth-host", "type", "veth", "peer", "name", "veth-app",
                  "netns", "app"],
                 ["ip", "addr", "add", f"{APP_HOST}/24", "dev", "veth-host"],
                 ["ip", "link", "set", "veth-host", "up"],
                 ["ip", "-n", "app", "addr", "add", f"{APP_CLIENT}/24", "dev", "veth-app"],
                 ["ip", "-n", "app", "link", "set", "veth-app", "up"],
                 ["ip", "-n", "app", "link", "set", "lo", "up"]):
        e2e.sh(argv, check=True)


def message(token, to):
    return (f"From: noreply@example.com\r\nTo: {to}\r\nSubject: outbound {token}\r\n"
            f"Message-ID: <{token}@example.com>\r\nDate: {e2e.formatdate()}\r\n\r\n"
            f"token {token}\r\n").encode()


def submit(token, to, helo="client.e2e.test"):
    with smtplib.SMTP("127.0.0.1", 25, timeout=20, local_hostname=helo) as s:
        s.sendmail("noreply@example.com", [to], message(token, to))


def arrived(receiver, token, count=1, timeout=e2e.DELIVERY_TIMEOUT):
    def found():
        got = [m for m in receiver.snapshot() if token.encode() in m["data"]]
        return got if len(got) >= count else None
    e2e.wait_for(found, timeout)
    return [m for m in receiver.snapshot() if token.encode() in m["data"]]


def log_has(pattern, timeout=e2e.DELIVERY_TIMEOUT):
    import re
    rx = re.compile(pattern)
    return e2e.wait_for(lambda: rx.search(e2e.log_text(e2e.MAILLOG)), timeout)


def scenario(args):
    ctx = e2e.Ctx()
    ctx.bin, ctx.host, ctx.outputs = os.path.abspath(args.mailsetup), None, []
    ctx.work = os.path.abspath(args.work)
    e2e.out(f"# outbound e2e {os.path.basename(args.spec)} with {ctx.bin}")
    spec = e2e.load_yaml(os.path.abspath(args.spec))
    spec.setdefault("host", {})["maillog_file"] = e2e.MAILLOG
    outbound = spec.setdefault("outbound", {})
    e2e.must("the example asks for DANE, MTA-STS and redaction",
             outbound.get("tls") == "dane-and-mta-sts" and outbound.get("redact_received"),
             json.dumps(outbound))
    outbound.setdefault("limits", {})["e2eslow"] = {"domains": [domain("slow")],
                                                    "rate_delay_seconds": SLOW_DELAY}
    outbound["limits"]["e2emx"] = {"mx": [domain("hosted")], "concurrency": 1}

    e2e.setup_mounts(ctx.work)
    e2e.start_syslog_sink()
    e2e.sh(["ip", "link", "set", "lo", "up"], check=True)
    # named listens only on addresses an interface has.
    e2e.sh(["ip", "addr", "add", f"{BIND_ADDR}/32", "dev", "lo"], check=True)
    app_namespace()
    ctx.spec_path = os.path.join(ctx.work, "spec.yaml")
    e2e.dump_yaml(spec, ctx.spec_path)
    dns_dir = os.path.join(ctx.work, "ns", "dns")
    os.makedirs(dns_dir)

    certs = os.path.join(ctx.work, "ns", "certs")
    os.makedirs(certs)
    ca = make_ca(certs)
    tls_files = {}
    for name, (_, cert, _, _) in RECEIVERS.items():
        if cert:
            names = [f"mx.{domain(name)}" if cert == "own" else "wrong.e2e.test"]
            tls_files[name] = issue(certs, ca, name, names)
    other = issue(certs, ca, "other", ["other.e2e.test"])
    anchor = signed_root(dns_dir, {n: spki_sha256(f[0]) for n, f in tls_files.items()},
                         spki_sha256(other[0]))
    start_bind(dns_dir)
    R.ok("a DNSSEC-signed root zone (dnssec-signzone) with MX, A, TLSA and MTA-STS records")
    trust(ca[0])
    sts_names = serve_sts_policies(issue(certs, ca, "mta-sts", [
        f"mta-sts.{domain(n)}" for n, r in RECEIVERS.items() if r[3]]))
    R.ok(f"MTA-STS policies over HTTPS for {', '.join(sts_names)} (a test CA's certificate)")

    # 1. apply refuses DANE without a validating resolver on this host.
    main_cf = "/etc/postfix/main.cf"

    def snapshot():
        return open(main_cf, "rb").read() if os.path.exists(main_cf) else None

    for label, server, start in (("a resolver elsewhere", "192.0.2.53", None),
                                 ("nothing answering on 127.0.0.1", "127.0.0.1", None),
                                 ("a resolver that does not validate", "127.0.0.1", "plain")):
        if start:
            start_unbound(dns_dir, None)
        resolv_conf(server)
        plan = e2e.mailsetup(ctx, "plan", ctx.spec_path)
        R.check(f"plan warns that apply will refuse DANE with {label}",
                plan.returncode == 0 and "apply will refuse" in plan.err, e2e.cmd_why(plan))
        before = snapshot()
        p = e2e.mailsetup(ctx, "apply", ctx.spec_path, "--no-install-packages")
        R.check(f"apply refuses DANE with {label}, writing nothing",
                p.returncode == 1 and "outbound.tls is dane" in p.err and snapshot() == before,
                e2e.cmd_why(p))
    start_unbound(dns_dir, anchor)
    before = snapshot()
    p = e2e.mailsetup(ctx, "apply", ctx.spec_path, "--no-install-packages")
    R.check("apply refuses dane-and-mta-sts without /usr/bin/mailsetup, writing nothing",
            p.returncode == 1 and "/usr/bin/mailsetup does not exist" in p.err and snapshot() == before,
            e2e.cmd_why(p))
    install_mailsetup(ctx.bin, os.path.join(ctx.work, "ns"))
    p = e2e.mailsetup(ctx, "apply", ctx.spec_path, "--no-install-packages")
    e2e.must("apply succeeds with unbound validating on 127.0.0.1", p.returncode == 0, e2e.cmd_why(p))
    p = e2e.mailsetup(ctx, "check", ctx.spec_path, "--format", "json", "--resolver", "127.0.0.1")
    down = [f for f in json.loads(p.out or "[]") if f["target"] == "mta-sts-resolver"]
    R.check("`check` fails the MTA-STS resolver while it is not running (exit 3)",
            p.returncode == 3 and len(down) == 1 and down[0]["status"] == "fail", e2e.cmd_why(p))
    start_mta_sts_daemon(dns_dir)
    p = e2e.sh(["postconf", "-n"])
    R.check("`postconf -n` accepts main.cf without a warning", p.returncode == 0 and not p.err.strip(),
            e2e.cmd_why(p))
    # Postfix's smtp runs chrooted in the spool: the start script copies this in.
    os.makedirs("/var/spool/postfix/etc", exist_ok=True)
    shutil.copy("/etc/resolv.conf", "/var/spool/postfix/etc/resolv.conf")
    e2e.start_daemons(ctx)
    e2e.must(f"smtpd listens on {APP_HOST}:25 too", e2e.wait_for(lambda: e2e.port_open(APP_HOST, 25), 10))
    p = e2e.mailsetup(ctx, "check", ctx.spec_path, "--format", "json", "--resolver", "127.0.0.1")
    try:
        tls = {f["target"]: f for f in json.loads(p.out) if f["check"] == "tls"}
    except ValueError:
        tls = {}
    policy, resolver = tls.get("outbound", {}), tls.get("mta-sts-resolver", {})
    R.check("`check` reports DANE, then MTA-STS, in force with a validating resolver",
            policy.get("status") == "pass" and "validates DNSSEC" in policy.get("detail", "")
            and "then MTA-STS" in policy.get("detail", ""), e2e.cmd_why(p))
    R.check("`check` finds the MTA-STS resolver answering", resolver.get("status") == "pass",
            e2e.cmd_why(p))

    receivers = {}
    for name, (address, *_) in RECEIVERS.items():
        # STARTTLS offered, not required: a sender may still try without it.
        receivers[name] = e2e.Sink(25, tls_files.get(name), host=address, require_starttls=False)

    # 2. DANE verdicts.
    tokens = {name: e2e.new_token(name) for name in ("dane-ok", "dane-bad", "dane-notls", "plain")}
    for name, token in tokens.items():
        submit(token, f"rcpt@{domain(name)}")
    got = arrived(receivers["dane-ok"], tokens["dane-ok"])
    R.check("dane-ok: delivered over TLS", len(got) == 1 and got[0]["tls"], f"{got}\n{e2e.tail(e2e.MAILLOG, 20)}")
    R.check("dane-ok: Postfix logs a verified TLS connection",
            log_has(r"Verified TLS connection established to mx\.dane-ok\.e2e\.test"),
            e2e.tail(e2e.MAILLOG, 20))
    got = arrived(receivers["plain"], tokens["plain"])
    R.check("plain (no TLSA): delivered, opportunistic TLS", len(got) == 1, e2e.tail(e2e.MAILLOG, 20))
    for name, why in (("dane-bad", r"certificate not (verified|trusted)|TLSA|verification failed"),
                      ("dane-notls", r"TLS is required, but was not offered")):
        deferred = log_has(rf"to=<rcpt@{domain(name)}>.*status=deferred \(.*({why})")
        R.check(f"{name}: deferred ({'no matching certificate' if name == 'dane-bad' else 'no STARTTLS'}),"
                " nothing sent to it", deferred and not receivers[name].snapshot(),
                e2e.tail(e2e.MAILLOG, 20))

    # 2b. MTA-STS, and DANE before it.
    for table, port, want in (("postfix", 8461, "OK secure match=mx.dane-sts.e2e.test"),
                              ("dane", 8462, "OK dane")):
        p = e2e.sh(["postmap", "-q", domain("dane-sts"), f"socketmap:inet:127.0.0.1:{port}:{table}"])
        R.check(f"dane-sts: the {'MTA-STS resolver' if port == 8461 else 'socketmap service'} "
                f"answers {p.out.strip()!r}", p.out.strip().startswith(want.removeprefix("OK ")),
                e2e.cmd_why(p))
    p = e2e.sh(["postmap", "-q", domain("sts-ok"), "socketmap:inet:127.0.0.1:8462:dane"])
    R.check("sts-ok: the socketmap service leaves it to MTA-STS (not found)", p.returncode == 1,
            e2e.cmd_why(p))
    sts = {name: e2e.new_token(name) for name in ("sts-ok", "sts-badname", "sts-testing", "dane-sts")}
    for name, token in sts.items():
        submit(token, f"rcpt@{domain(name)}")
    got = arrived(receivers["sts-ok"], sts["sts-ok"])
    R.check("sts-ok (enforce): delivered over verified TLS",
            len(got) == 1 and got[0]["tls"]
            and log_has(r"Verified TLS connection established to mx\.sts-ok\.e2e\.test"),
            e2e.tail(e2e.MAILLOG, 20))
    got = arrived(receivers["sts-testing"], sts["sts-testing"])
    R.check("sts-testing (testing): delivered though the certificate names another host",
            len(got) == 1, e2e.tail(e2e.MAILLOG, 20))
    for name, what in (("sts-badname", "the certificate names another host"),
                       ("dane-sts", "DANE fails; MTA-STS alone would have sent it")):
        deferred = log_has(rf"to=<rcpt@{domain(name)}>.*status=deferred")
        R.check(f"{name}: deferred ({what}), nothing sent to it",
                deferred and not receivers[name].snapshot(), e2e.tail(e2e.MAILLOG, 20))

    # 3. A group found by MX.
    # Postfix asks a socketmap transport table with the whole address.
    for key, want in ((f"rcpt@{domain('hosted')}", "e2emx:"), (f"rcpt@{domain('plain')}", "")):
        p = e2e.sh(["postmap", "-q", key, "socketmap:inet:127.0.0.1:8462:transport"])
        R.check(f"{key}: the socketmap's transport is {want or 'none (the default)'!r}",
                p.out.strip() == want and p.returncode == (0 if want else 1), e2e.cmd_why(p))
    token = e2e.new_token("hosted")
    submit(token, f"rcpt@{domain('hosted')}")
    R.check("hosted.e2e.test: delivered by the e2emx transport (its MX is under the group's name)",
            arrived(receivers["hosted"], token)
            and log_has(r"postfix/e2emx/smtp\[\d+\]: \w+: to=<rcpt@hosted\.e2e\.test>.*status=sent"),
            e2e.tail(e2e.MAILLOG, 20))

    # 3b. Throttling. A first message looks the receiver up (unbound caches
    # it): the rate delay spaces the starts of deliveries, so a slow lookup
    # in one would shorten the gap after it.
    warm = e2e.new_token("slow-first")
    submit(warm, f"first@{domain('slow')}")
    e2e.must("slow.e2e.test: a first message arrives", arrived(receivers["slow"], warm),
             e2e.tail(e2e.MAILLOG, 20))
    slow_tokens = [e2e.new_token("slow") for _ in range(SLOW_COUNT)]
    fast_tokens = [e2e.new_token("fast") for _ in range(SLOW_COUNT)]
    for i in range(SLOW_COUNT):
        submit(slow_tokens[i], f"r{i}@{domain('slow')}")
        submit(fast_tokens[i], f"r{i}@{domain('plain')}")
    timeout = e2e.DELIVERY_TIMEOUT + SLOW_COUNT * SLOW_DELAY
    slow = [arrived(receivers["slow"], t, timeout=timeout) for t in slow_tokens]
    fast = [arrived(receivers["plain"], t) for t in fast_tokens]
    if all(slow) and all(fast):
        times = sorted(m[0]["time"] for m in slow)
        gaps = [b - a for a, b in zip(times, times[1:])]
        R.check(f"slow.e2e.test: {SLOW_COUNT} messages at least {SLOW_DELAY} s apart "
                f"(gaps {', '.join(f'{g:.2f}' for g in gaps)} s)",
                all(g >= SLOW_DELAY - 0.25 for g in gaps), str(gaps))
        spread = max(m[0]["time"] for m in fast) - min(m[0]["time"] for m in fast)
        R.check(f"plain.e2e.test: {SLOW_COUNT} messages not held to that delay "
                f"(all within {spread:.2f} s)", spread < SLOW_DELAY, f"{spread:.2f} s")
    else:
        R.fail("throttling: every message arrives", e2e.tail(e2e.MAILLOG, 30))

    # 4. The app server's submission keeps its address and name to itself.
    token = e2e.new_token("app")
    to = f"app@{domain('plain')}"
    code = (f"import smtplib,sys\n"
            f"with smtplib.SMTP('{APP_HOST}', 25, timeout=20, local_hostname='{APP_NAME}') as s:\n"
            f"    s.sendmail('noreply@example.com', ['{to}'], sys.stdin.buffer.read())\n")
    p = e2e.sh(["ip", "netns", "exec", "app", "/usr/bin/python3", "-c", code], input=message(token, to))
    e2e.must(f"the app server ({APP_CLIENT}, on host.networks) submits over SMTP", p.returncode == 0,
             e2e.cmd_why(p))
    got = arrived(receivers["plain"], token)
    if got:
        raw = got[0]["data"]
        headers, _ = e2e.split_message(raw)
        received = e2e.header_values(headers, "Received")
        leaks = [s for s in (APP_CLIENT, APP_NAME, "app7") if s.encode() in raw]
        R.check("the app's message names neither its address nor its name", not leaks,
                f"found {leaks} in:\n{raw[:1500].decode(errors='replace')}")
        R.check("it keeps a Received: header of this host's",
                any(v.lstrip().startswith("by mail.example.com (Postfix) with ESMTP id") for v in received),
                str(received))
        p = e2e.mailsetup(ctx, "dns", ctx.spec_path, "--format", "json")
        records = e2e.Records(json.loads(p.out) if p.returncode == 0 else [])
        why = e2e.verify_signature(raw, records, "example.com", None, [])
        R.check("its DKIM signature verifies (dkimpy, the record `mailsetup dns` prints)", why is None, why)
    else:
        R.fail("the app's message arrives", e2e.tail(e2e.MAILLOG, 20))


def worker(args):
    try:
        scenario(args)
    except e2e.Abort as e:
        e2e.out(f"    aborted after: {e}")
    except Exception as e:  # noqa: BLE001
        import traceback
        R.fail("outbound driver", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    if R.failures:
        e2e.out("--- postfix log (tail) ---\n" + e2e.tail(e2e.MAILLOG, 40))
    e2e.out(f"# {R.passes} ok, {len(R.failures)} failed, {time.monotonic() - e2e.T0:.1f}s")
    return 1 if R.failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mailsetup", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    missing = [exe for exe in ("postfix", "opendkim", "named", "unbound", "dnssec-signzone", "dig", "ip",
                               "mta-sts-daemon")
               if not shutil.which(exe, path=e2e.PATH)]
    if missing:
        e2e.out(f"FAIL prerequisites: missing {', '.join(missing)}")
        return 2
    e2e.assert_in_fresh_namespaces()
    return e2e.run_as_init(worker, args)


if __name__ == "__main__":
    sys.exit(main())
