"""The independent count: parsedmarc (PyPI, in the tests' virtual
environment) reads each file given, offline, and prints as JSON, per policy
domain, the messages and the aligned DKIM, SPF and DMARC passes in total and
per source address, over distinct reports (receiver, report id), and the
files it could not read.

    target/test-tools/bin/python tests/reports/parsedmarc-totals.py FILE...
"""
import json
import sys

import parsedmarc

seen = set()
domains = {}
failed = []
for path in sys.argv[1:]:
    try:
        parsed = parsedmarc.parse_report_file(path, offline=True, always_use_local_files=True)
    except Exception as e:  # noqa: BLE001 - any failure is "could not read"
        failed.append({"path": path, "error": f"{type(e).__name__}: {e}"})
        continue
    if parsed["report_type"] != "aggregate":
        failed.append({"path": path, "error": f"a {parsed['report_type']} report"})
        continue
    report = parsed["report"]
    meta = report["report_metadata"]
    domain = report["policy_published"]["domain"].lower()
    key = (meta["org_name"], meta["report_id"], domain)
    if key in seen:
        continue
    seen.add(key)
    d = domains.setdefault(domain, {"total": [0, 0, 0, 0], "sources": {}})
    for r in report["records"]:
        n = r["count"]
        a = r["alignment"]
        row = [n, n * bool(a["dkim"]), n * bool(a["spf"]), n * bool(a["dmarc"])]
        ip = r["source"]["ip_address"]
        src = d["sources"].setdefault(ip, [0, 0, 0, 0])
        for i, v in enumerate(row):
            d["total"][i] += v
            src[i] += v
json.dump({"domains": domains, "failed": failed}, sys.stdout, indent=1, sort_keys=True)
