#!/usr/bin/env python3
# docs_examples.py - the documented answers are the server's: every api/openapi.yaml request example with a same-named 200 example, and every README curl example followed by a "# {...}" answer line.
"""Usage: docs_examples.py BASE_URL

Sends each documented request to the running server and compares the JSON it
answers with the JSON the docs show, value for value (numbers as parsed
doubles: the docs must carry the exact digits the server prints). Prints one
"ok"/"FAIL" line per example and "N passed, M failed"; exits 1 on a failure."""
import json
import os
import re
import sys
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post(url, path, body):
    req = urllib.request.Request(url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def openapi_cases():
    with open(os.path.join(ROOT, "api", "openapi.yaml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    for path, ops in spec["paths"].items():
        op = ops.get("post")
        if not op:
            continue
        req = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        ok = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
        answers = ok.get("examples", {})
        for name, ex in req.get("examples", {}).items():
            if name in answers:
                yield f"openapi {path} {name}", path, json.dumps(ex["value"]).encode(), answers[name]["value"]


def readme_cases():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    pat = re.compile(r"^curl -s localhost:8080(/\S+) -d '(.*)'$")
    for i, line in enumerate(lines[:-1]):
        m = pat.match(line)
        if m and lines[i + 1].startswith("# {"):
            yield f"README line {i + 1} {m.group(1)}", m.group(1), m.group(2).encode(), json.loads(lines[i + 1][2:])


def main():
    url = sys.argv[1].rstrip("/")
    passed = failed = 0
    cases = list(openapi_cases()) + list(readme_cases())
    for name, path, body, want in cases:
        status, got = post(url, path, body)
        if status == 200 and got == want:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {status}\n  documented: {json.dumps(want)[:600]}\n  answered:   {json.dumps(got)[:600]}")
    if not cases:
        failed += 1
        print("FAIL no documented examples found")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
