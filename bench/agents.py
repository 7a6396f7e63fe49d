#!/usr/bin/env python3
"""Past one process: connect-rate caps, a run crossing one process's limit, 100,000 idle
connections (bench/AGENTS.md).

Every case is a headless `socketswarm run` (release) against `socketswarm target` run as
several processes on one port (SO_REUSEPORT, their counters summed on a stats port). A
run larger than one process holds is split over local agent processes automatically,
each on its own 127.x source address. Only loopback traffic; every run is bounded by its
plan; TIME_WAIT drains between cases.

    python3 bench/agents.py [--only rate|cross|idle] [--bin PATH] [--write bench/AGENTS.md]

What is measured, per case:
- rate: `max_connect_rate` R with enough connections for several seconds (or 50,000),
  ramped "at once" (1 s) so the cap is what paces them. Achieved = attempts between the
  first 100 ms tick with an attempt and the tick where all N were attempted, over that
  time (the export's ticks, --tick-ms 100).
- cross: 25,000 connections (one process holds ~19,000): the target's own counters
  (`/stats`, accepted upgrades) against the merged totals of the run.
- idle: 100,000 idle connections held 30 s: time to open, RSS of the run + its agents
  per held connection, CPU to hold (all processes, per second of hold), tick cadence of
  the merged progress (what the live page shows).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_secs, drain_time_wait, wait_http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.sysconf("SC_PAGE_SIZE")
WS, STATS = "127.0.0.1:9310", "127.0.0.1:9311"


def rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Target:
    def __init__(self, binary, processes):
        self.binary, self.processes = binary, processes

    def __enter__(self):
        self.p = subprocess.Popen([self.binary, "target", "--listen", WS, "--processes",
                                   str(self.processes), "--stats-listen", STATS],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://{STATS}/stats")
        return self

    def stats(self):
        import urllib.request
        with urllib.request.urlopen(f"http://{STATS}/stats", timeout=10) as r:
            return json.loads(r.read())

    def __exit__(self, *exc):
        self.p.terminate()
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def run(binary, plan, tick_ms, sample=None):
    """Runs `plan` headless; returns (export, samples) where samples are taken every
    0.5 s by `sample(pid)` while the run lives."""
    with tempfile.TemporaryDirectory() as d:
        pf, out = os.path.join(d, "plan.json"), os.path.join(d, "out.json")
        with open(pf, "w") as f:
            json.dump(plan, f)
        p = subprocess.Popen([binary, "run", pf, "--out", f"json={out}", "--tick-ms",
                              str(tick_ms), "--log", "warn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples = []
        while p.poll() is None:
            if sample:
                samples.append(sample(p.pid))
            time.sleep(0.5)
        err = p.stderr.read()
        if p.returncode not in (0, 99):
            raise SystemExit(f"run failed ({p.returncode}): {err[-2000:]}")
        with open(out) as f:
            return json.load(f), samples


def outcome(export):
    """How the run ended and what it concluded: the status, end reason, lost agents,
    failures by kind, the verdict, and the merged progress's largest gap between ticks
    (the live page's cadence)."""
    s, d, ticks = export["summary"], export.get("diagnosis") or {}, export["ticks"]
    gaps = [b["elapsed_ms"] - a["elapsed_ms"] for a, b in zip(ticks, ticks[1:])]
    return {"status": export.get("status"), "end_reason": s.get("end_reason"),
            "lost_agents": s.get("lost_agents") or [],
            "failures": s["totals"].get("failures", {}),
            "verdict": {k: d.get(k) for k in ("kind", "level", "confidence")},
            "max_tick_gap_ms": max(gaps) if gaps else None}


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def rate_case(binary, r, n):
    plan = {"name": f"rate {r}", "target": f"ws://{WS}/echo?tag=rate{r}",
            "max_connect_rate": r, "reconnect": {"mode": "never"},
            "stages": [{"duration": "1s", "connections": n},
                       {"duration": f"{int(n / r) + 10}s", "connections": n}]}
    with Target(binary, 4) as t:
        export, _ = run(binary, plan, 100)
        accepted = t.stats()["profiles"].get(f"/echo?tag=rate{r}", {}).get("accepted", 0)
    ticks = export["ticks"]
    first = next(x for x in ticks if x["totals"]["attempted"] > 0)
    last = next((x for x in ticks if x["totals"]["attempted"] >= n), ticks[-1])
    span = (last["elapsed_ms"] - first["elapsed_ms"]) / 1000
    done = last["totals"]["attempted"] - first["totals"]["attempted"]
    tot = export["summary"]["totals"]
    return {"asked": r, "n": n, "agents": len(export["summary"].get("agents") or []) or 1,
            "achieved": round(done / span, 1) if span > 0 else None, "span_s": span,
            "attempted": tot["attempted"], "opened": tot["opened"], "failed": tot["failed"],
            "target_accepted": accepted, **outcome(export)}


def cross_case(binary, n=25_000):
    plan = {"name": "cross", "target": f"ws://{WS}/echo?tag=cross", "reconnect": {"mode": "never"},
            "stages": [{"duration": "10s", "connections": n}, {"duration": "5s", "connections": n}]}
    with Target(binary, 3) as t:
        export, _ = run(binary, plan, 1000)
        accepted = t.stats()["profiles"].get("/echo?tag=cross", {}).get("accepted", 0)
    s = export["summary"]
    agents = s.get("agents") or []
    return {"n": n, "agents": len(agents), "opened": s["totals"]["opened"],
            "attempted": s["totals"]["attempted"], "failed": s["totals"]["failed"],
            "peak_open": s["peak_open"], "target_accepted": accepted,
            "sum_of_agents_opened": sum(a["totals"]["opened"] for a in agents if a.get("totals")),
            "end_reason": s["end_reason"]}


def idle_case(binary, n=100_000, ramp=20, hold=30):
    plan = {"name": "idle 100k", "target": f"ws://{WS}/echo?tag=idle", "reconnect": {"mode": "never"},
            "stages": [{"duration": f"{ramp}s", "connections": n},
                       {"duration": f"{hold}s", "connections": n}]}

    def sample(pid):
        procs = [pid] + children(pid)
        cpu = 0.0
        for q in procs:
            try:
                cpu += cpu_secs(q)
            except OSError:
                pass
        return {"t": time.time(), "rss": sum(rss(q) for q in procs), "cpu": cpu, "procs": len(procs)}

    with Target(binary, 7) as t:
        base = None
        export, samples = run(binary, plan, 1000, sample)
        accepted = t.stats()["profiles"].get("/echo?tag=idle", {}).get("accepted", 0)
    ticks = export["ticks"]
    t0 = samples[0]["t"]
    first = next(x for x in ticks if x["totals"]["attempted"] > 0)
    full = next((x for x in ticks if x["open"] >= n), None)
    # Baseline: the processes before the first connection (first two samples with all agents).
    most = max(s["procs"] for s in samples)
    base = min(s["rss"] for s in samples if s["procs"] == most)
    # Hold window: from 5 s after all were open to 2 s before the planned end.
    hold_start = t0 + ramp + 5
    hold_end = t0 + ramp + hold - 2
    held = [s for s in samples if hold_start <= s["t"] <= hold_end]
    rss_hold = statistics.median(s["rss"] for s in held) if held else 0
    cpu_hold = ((held[-1]["cpu"] - held[0]["cpu"]) / (held[-1]["t"] - held[0]["t"])
                if len(held) > 1 else None)
    gaps = [b["elapsed_ms"] - a["elapsed_ms"] for a, b in zip(ticks, ticks[1:])]
    s = export["summary"]
    return {"n": n, "agents": len(s.get("agents") or []), "processes": most,
            "opened": s["totals"]["opened"], "failed": s["totals"]["failed"],
            "dropped": s["totals"]["dropped"], "peak_open": s["peak_open"],
            "target_accepted": accepted,
            "time_to_open_s": (full["elapsed_ms"] - first["elapsed_ms"]) / 1000 if full else None,
            "rss_total_mib": round(rss_hold / 2**20, 1), "rss_base_mib": round(base / 2**20, 1),
            "bytes_per_conn": round((rss_hold - base) / n) if held else None,
            "cpu_hold_pct": round(100 * cpu_hold, 1) if cpu_hold is not None else None,
            "tick_gap_ms": {"median": statistics.median(gaps), "max": max(gaps)} if gaps else None,
            "ticks": len(ticks), **outcome(export)}


RATES = [(1, 5), (100, 500), (1000, 10_000), (10_000, 30_000), (50_000, 50_000)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/socketswarm"))
    ap.add_argument("--only", choices=["rate", "cross", "idle"])
    ap.add_argument("--json", default=os.path.join(ROOT, "bench/agents.json"))
    ap.add_argument("--idle-ramp", type=int, default=20, help="seconds to open the 100,000")
    ap.add_argument("--rates", help="comma-separated rates to run (default: all)")
    a = ap.parse_args()
    global RATES
    if a.rates:
        want = {int(x) for x in a.rates.split(",")}
        RATES = [(r, n) for r, n in RATES if r in want]
    results = {}
    if os.path.exists(a.json):
        with open(a.json) as f:
            results = json.load(f)
    if a.only in (None, "rate"):
        results["rate"] = []
        for r, n in RATES:
            drain_time_wait()
            res = rate_case(a.bin, r, n)
            res["loadavg_1m"] = loadavg()
            print(json.dumps(res), flush=True)
            results["rate"].append(res)
    if a.only in (None, "cross"):
        drain_time_wait()
        results["cross"] = cross_case(a.bin)
        results["cross"]["loadavg_1m"] = loadavg()
        print(json.dumps(results["cross"]), flush=True)
    if a.only in (None, "idle"):
        drain_time_wait()
        results["idle"] = idle_case(a.bin, ramp=a.idle_ramp)
        results["idle"]["loadavg_1m"] = loadavg()
        print(json.dumps(results["idle"]), flush=True)
    results["machine"] = {"cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(a.json, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
