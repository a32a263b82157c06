#!/usr/bin/env python3
"""Writes tests/reports/corpus/: DMARC aggregate reports for the domains of
tests/reports/mailsetup.yaml, as receivers send them — Google's zip attached
to a message (base64), Outlook.com's .xml.gz attached (application/gzip, its
XML namespaces and envelope elements), Yahoo's bare .xml.gz, an RFC 7489
Appendix C style .xml, a DMARCbis report (RFC 9990's namespace, np, testing,
discovery_method, generator, an extension) attached as text/xml with an
RFC 2047 file name, one quoted-printable text/xml — plus a copy of one
report (counted once), and three files that are not reports. Deterministic:
run it again and nothing changes (gzip and zip times are fixed).

    python3 tests/reports/make-corpus.py
"""
import base64
import gzip
import io
import os
import quopri
import zipfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
DAY = 86400
NOV1 = 1761955200  # 2025-11-01 00:00 UTC


def rec(ip, count, dkim, spf, auth_dkim, auth_spf, header_from, disposition="none", reasons=(), extra=""):
    reason = "".join(f"<reason><type>{t}</type><comment>{c}</comment></reason>" for t, c in reasons)
    dk = "".join(
        f"<dkim><domain>{d}</domain>{f'<selector>{s}</selector>' if s else ''}<result>{r}</result>"
        f"<human_result></human_result></dkim>" for d, s, r in auth_dkim)
    sp = "".join(f"<spf><domain>{d}</domain><scope>mfrom</scope><result>{r}</result></spf>" for d, r in auth_spf)
    return (f"<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>"
            f"<disposition>{disposition}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf>{reason}"
            f"</policy_evaluated></row><identifiers>{extra}<header_from>{header_from}</header_from></identifiers>"
            f"<auth_results>{dk}{sp}</auth_results></record>")


def feedback(org, email, report_id, begin, domain, policy, records, root="<feedback>", version="",
             generator="", extension=""):
    return (f'<?xml version="1.0" encoding="UTF-8" ?>\n{root}{version}<report_metadata><org_name>{org}</org_name>'
            f"<email>{email}</email>{generator}<report_id>{report_id}</report_id><date_range><begin>{begin}</begin>"
            f"<end>{begin + DAY - 1}</end></date_range></report_metadata><policy_published><domain>{domain}</domain>"
            f"{policy}</policy_published>{''.join(records)}{extension}</feedback>\n")


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def zipped(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name, date_time=(2025, 11, 2, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
    return buf.getvalue()


def message(frm, subject, parts):
    """A multipart/mixed message: parts are (headers, body) with the body
    already encoded as the headers say."""
    lines = [f"From: {frm}", "To: dmarc-reports@example.com", f"Subject: {subject}",
             "Date: Sun, 02 Nov 2025 08:00:00 +0000", "Message-ID: <" + subject.replace(" ", ".") + "@corpus>",
             "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="==report=="', "",
             "This is a multi-part message in MIME format."]
    for headers, body in parts:
        lines += ["--==report==", *headers, "", body]
    lines += ["--==report==--", ""]
    return "\r\n".join(lines).encode()


def b64(data):
    return "\r\n".join(base64.b64encode(data).decode()[i:i + 76] for i in range(0, len(base64.b64encode(data)), 76))


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    policy = "<adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct>"

    # Google: a zip attached to a message, base64.
    google = feedback("google.com", "noreply-dmarc-support@google.com", "4820931245513458612", NOV1, "example.com",
                      policy + "<fo>0</fo>", [
                          rec("192.0.2.25", 40, "pass", "pass", [("example.com", "20251001", "pass")],
                              [("example.com", "pass")], "example.com"),
                          rec("198.51.100.77", 6, "pass", "fail", [("example.com", "20251001", "pass")],
                              [("forwarder.example.net", "pass")], "example.com"),
                          rec("203.0.113.9", 12, "fail", "fail", [], [("example.com", "fail")], "example.com"),
                      ])
    gname = f"google.com!example.com!{NOV1}!{NOV1 + DAY - 1}"
    gzip_of_google = zipped(gname + ".xml", google.encode())
    write("google-com.eml", message(
        "noreply-dmarc-support@google.com", f"Report domain: example.com Submitter: google.com Report-ID: 4820931245513458612",
        [(["Content-Type: text/plain; charset=UTF-8"], "This is an aggregate report from google.com."),
         ([f'Content-Type: application/zip; name="{gname}.zip"', "Content-Transfer-Encoding: base64",
           f'Content-Disposition: attachment; filename="{gname}.zip"'], b64(gzip_of_google))]))
    # The same report, saved from the message as well: counted once.
    write(gname + ".zip", gzip_of_google)

    # Outlook.com: .xml.gz attached, application/gzip; its namespaces, version, envelope elements.
    outlook = feedback(
        "Outlook.com", "dmarcreport@microsoft.com", "f3a7c9e2d1b04e6f8a5c2b7d9e1f0a3c", NOV1 + DAY, "example.com",
        policy, [
            rec("192.0.2.25", 25, "pass", "pass", [("example.com", "20251001", "pass")], [("example.com", "pass")],
                "example.com", extra="<envelope_to>outlook.com</envelope_to><envelope_from>example.com</envelope_from>"),
            rec("203.0.113.9", 3, "fail", "fail", [], [("example.com", "fail")], "example.com",
                extra="<envelope_to>hotmail.com</envelope_to><envelope_from>example.com</envelope_from>"),
            rec("198.51.100.200", 9, "pass", "fail", [("example.com", "esp1", "pass")],
                [("bounces.esp.example.net", "pass")], "example.com",
                extra="<envelope_to>outlook.com</envelope_to><envelope_from>bounces.esp.example.net</envelope_from>"),
        ],
        root='<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        version="<version>1.0</version>")
    oname = f"enterprise.protection.outlook.com!example.com!{NOV1 + DAY}!{NOV1 + 2 * DAY - 1}.xml.gz"
    write("outlook-com.eml", message(
        "dmarcreport@microsoft.com", "Report Domain: example.com Submitter: enterprise.protection.outlook.com",
        [(['Content-Type: text/plain; charset="us-ascii"', "Content-Transfer-Encoding: 7bit"],
          "This is a DMARC aggregate report from Microsoft Corporation."),
         ([f'Content-Type: application/gzip; name="{oname}"', "Content-Transfer-Encoding: base64",
           f'Content-Disposition: attachment; filename="{oname}"'], b64(gz(outlook.encode())))]))

    # Yahoo: a bare .xml.gz; example.org, where one of this host's messages failed.
    yahoo = feedback("Yahoo", "dmarchelp@yahooinc.com", "1762041600.740321", NOV1 + DAY, "example.org",
                     "<adkim>r</adkim><aspf>r</aspf><p>none</p><pct>100</pct>", [
                         rec("192.0.2.25", 4, "fail", "fail", [("example.org", "20251001", "fail")],
                             [("mail.example.com", "softfail")], "example.org"),
                         rec("198.51.100.3", 10, "fail", "pass", [], [("example.org", "pass")], "example.org"),
                         rec("192.0.2.25", 30, "pass", "pass", [("example.org", "20251001", "pass")],
                             [("example.org", "pass")], "example.org"),
                     ])
    write(f"yahoo.com!example.org!{NOV1 + DAY}!{NOV1 + 2 * DAY - 1}.xml.gz", gz(yahoo.encode()))

    # RFC 7489 Appendix C style: a bare .xml, an IPv6 source, a forwarded override.
    plain = feedback("mail.receiver.example", "dmarc@mail.receiver.example", "rx-2025-11-03", NOV1 + 2 * DAY,
                     "example.com", policy, [
                         rec("2001:db8::25", 5, "pass", "pass", [("example.com", "20251001", "pass")],
                             [("example.com", "pass")], "example.com"),
                         rec("192.0.2.25", 2, "pass", "pass", [("example.com", "20251001", "pass")],
                             [("example.com", "pass")], "example.com"),
                         rec("198.51.100.99", 1, "fail", "fail", [("example.com", "20251001-2", "fail")],
                             [("lists.example.net", "pass")], "example.com", reasons=[("forwarded", "list")]),
                     ])
    write("mail.receiver.example!example.com!rx-2025-11-03.xml", plain.encode())

    # DMARCbis: the namespace, np, testing, discovery_method, generator, an
    # extension; inline in a message, quoted-printable, an RFC 2047 name.
    bis = feedback("bis.example", "reports@bis.example", "bis-7", NOV1 + 3 * DAY, "example.com",
                   "<p>none</p><sp>none</sp><np>reject</np><adkim>r</adkim><aspf>r</aspf><testing>n</testing>"
                   "<discovery_method>treewalk</discovery_method>", [
                       rec("192.0.2.25", 7, "pass", "pass", [("example.com", "20251001", "pass")],
                           [("example.com", "pass")], "example.com"),
                       rec("203.0.113.50", 1, "fail", "fail", [], [("example.com", "fail")], "example.com",
                           disposition="none", reasons=[("local_policy", "")]),
                   ],
                   root='<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">', version="<version>1.0</version>",
                   generator="<generator>bis-reporter 1.0</generator>",
                   extension='<extension><ext:note xmlns:ext="urn:example:ext">ignored</ext:note></extension>')
    write("bis-example.eml", message(
        "reports@bis.example", "Report Domain: example.com Submitter: bis.example Report-ID: <bis-7>",
        [(["Content-Type: text/plain; charset=ISO-8859-1", "Content-Transfer-Encoding: quoted-printable"],
          quopri.encodestring("Rapport agrégé DMARC.".encode("latin-1")).decode()),
         (['Content-Type: text/xml; charset=UTF-8; name="=?UTF-8?Q?bis.example!example.com!bis-7.xml?="',
           "Content-Transfer-Encoding: base64",
           'Content-Disposition: attachment; filename="=?UTF-8?Q?bis.example!example.com!bis-7.xml?="'],
          b64(bis.encode()))]))

    # The XML itself quoted-printable, as some small receivers send it
    # (parsedmarc base64-decodes every attachment, so it cannot read this one).
    qp = feedback("qp.example", "dmarc@qp.example", "qp-1", NOV1 + 3 * DAY, "example.org",
                  "<p>none</p>", [
                      rec("192.0.2.25", 3, "pass", "pass", [("example.org", "20251001", "pass")],
                          [("example.org", "pass")], "example.org"),
                  ])
    write("qp-example.eml", message(
        "dmarc@qp.example", "Report Domain: example.org Submitter: qp.example",
        [(['Content-Type: text/xml; charset=UTF-8; name="qp.example!example.org!qp-1.xml"',
           "Content-Transfer-Encoding: quoted-printable",
           'Content-Disposition: attachment; filename="qp.example!example.org!qp-1.xml"'],
          quopri.encodestring(qp.encode()).decode().replace("\n", "\r\n"))]))

    # Not reports: each named with its reason, the rest still summarised.
    write("broken.xml.gz", gz(yahoo.encode())[:120])
    write("missing-metadata.xml", google.replace("report_metadata>", "metadata>").encode())
    write("not-a-report.eml", message("someone@example.net", "Hello", [(["Content-Type: text/plain"], "Just text.")]))


if __name__ == "__main__":
    main()
