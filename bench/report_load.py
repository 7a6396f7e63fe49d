#!/usr/bin/env python3
"""How fast a run with 1 hour of per-second data loads: the report page, its JSON, the
HTML report, the CSV and a comparison of two such runs.

Starts a fresh `socketswarm serve` (release build, temp database), makes one short real
run against the embedded sandbox, stretches its export to 3,600 ticks (each tick a copy
of a real one with its own seq and time) and imports it twice through /api/runs/import.
Then times each request N times (fresh connection each) and writes
bench/REPORT-LOAD.md.

    python3 bench/report_load.py [--bin target/release/socketswarm] [--ticks 3600] [--n 7]
"""
import argparse
import copy
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime, timezone


def req(url, method="GET", body=None):
    data = body.encode() if isinstance(body, str) else body
    r = urllib.request.Request(url, data=data, method=method,
                               headers={"content-type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp.status, resp.read()


def start(binary, db):
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--sandbox", "127.0.0.1:0",
         "--sandbox-tls", "127.0.0.1:0", "--database", db, "--log", "warn,server=info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = sandbox = None
    deadline = time.time() + 30
    log = ""
    while time.time() < deadline and not (base and sandbox):
        line = proc.stdout.readline()
        log += line
        m = re.search(r"socketswarm on (http://[0-9.:]+)", line)
        if m:
            base = m.group(1)
        m = re.search(r"sandbox target on (ws://[0-9.:]+)/echo", line)
        if m:
            sandbox = m.group(1)
    if not (base and sandbox):
        proc.kill()
        raise SystemExit("server did not start:\n" + log)
    return proc, base, sandbox


def timed(url, n):
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        status, body = req(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, (url, status)
        size = len(body)
    return statistics.median(times), max(times), size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/socketswarm")
    ap.add_argument("--ticks", type=int, default=3600)
    ap.add_argument("--n", type=int, default=7)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="socketswarm-reportload-")
    proc, base, sandbox = start(args.bin, os.path.join(tmp, "bench.db"))
    try:
        plan = {
            "name": "one hour",
            "target": f"{sandbox}/echo?cap=150&rate=40&burst=40",
            "stages": [{"duration": "3s", "connections": 200}, {"duration": "2s", "connections": 200}],
            "script": [{"repeat": {"every": "500ms", "steps": [{"send": "hi {{vu}}"}, {"expect": {"contains": "hi"}}]}}],
        }
        _, body = req(f"{base}/api/runs", "POST", json.dumps(plan))
        rid = json.loads(body)["id"]
        while json.loads(req(f"{base}/api/runs/{rid}")[1])["status"] in ("queued", "running"):
            time.sleep(0.3)
        export = json.loads(req(f"{base}/api/runs/{rid}/export.json")[1])
        real = export["ticks"]
        ticks = []
        for i in range(args.ticks):
            t = copy.deepcopy(real[i % len(real)])
            t["seq"] = i + 1
            t["elapsed_ms"] = (i + 1) * 1000
            ticks.append(t)
        export["ticks"] = ticks
        export["summary"]["duration_ms"] = args.ticks * 1000
        doc = json.dumps(export)
        ids = []
        for _ in range(2):
            _, body = req(f"{base}/api/runs/import", "POST", doc)
            ids.append(json.loads(body)["id"])
        a, b = ids
        rows = [
            ("Run page `/runs/{id}` (server-rendered HTML, all data inline)", f"{base}/runs/{a}"),
            ("Run JSON `/api/runs/{id}`", f"{base}/api/runs/{a}"),
            ("HTML report download", f"{base}/api/runs/{a}/report.html"),
            ("CSV of the per-second series", f"{base}/api/runs/{a}/series.csv"),
            ("Compare page `/compare?runs=a,b` (two 1-hour runs)", f"{base}/compare?runs={a},{b}"),
        ]
        results = [(name, *timed(url, args.n)) for name, url in rows]
        browser = []
        for name, url in [("Run page, charts drawn", f"{base}/runs/{a}"),
                          ("Compare page, charts drawn", f"{base}/compare?runs={a},{b}")]:
            try:
                out = subprocess.run(["node", "bench/browser_load.mjs", url, str(args.n)],
                                     capture_output=True, text=True, timeout=300, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                browser.append((name, r["median"], r["max"]))
            except (subprocess.SubprocessError, OSError, ValueError) as e:
                browser.append((name + f" (not measured: {e})", float("nan"), float("nan")))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Report load time for long runs",
        "",
        f"Measured {when} on this machine (2 cores), `{args.bin}`. Rerun: `python3 bench/report_load.py`.",
        f"A run with **{args.ticks:,} per-second ticks** (1 hour; each tick a copy of a real 200-connection",
        "tick with failures and latency percentiles), imported twice. Each request made "
        f"{args.n} times on a fresh connection; the server parses the stored ticks on every request",
        "(no cache). Goal: the report loads in well under a second.",
        "",
        "| request | median | max | size |",
        "|---|---|---|---|",
    ]
    for name, med, mx, size in results:
        out.append(f"| {name} | **{med:.0f} ms** | {mx:.0f} ms | {size / 1024:.0f} KiB |")
    out += [
        "",
        "In headless Chromium (`bench/browser_load.mjs`): from navigation start until every chart",
        "on the page has drawn (server render + wasm hydration + uPlot), median of the same N loads:",
        "",
        "| page | median | max |",
        "|---|---|---|",
    ]
    for name, med, mx in browser:
        out.append(f"| {name} | **{med:.0f} ms** | {mx:.0f} ms |")
    out.append("")
    with open("bench/REPORT-LOAD.md", "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
