#!/usr/bin/env python3
"""Engine benchmarks for socketswarm (not tests: they measure, they do not assert).

Starts `socketswarm target` and `socketswarm serve --sandbox off` as separate processes,
drives runs through the JSON API, samples both processes' RSS and CPU from /proc, times
the live SSE stream, and writes bench/RESULTS.md.

    bench/run.sh                       # build release + run everything (~6 min)
    bench/run.sh --quick               # smaller sizes (~2 min)

Only loopback traffic; every run is bounded by its plan and stops by itself.
"""
import functools, os, signal, subprocess, sys, tempfile, threading, time, urllib.request

from benchlib import cpu_secs, drain_time_wait, wait_http
import benchlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SOCKETSWARM_BIN / BENCH_OUT: another build (e.g. `make run`'s target/quick) and report.
BIN = os.environ.get("SOCKETSWARM_BIN") or os.path.join(ROOT, "target", "release", "socketswarm")
OUT = os.environ.get("BENCH_OUT") or os.path.join(ROOT, "bench", "RESULTS.md")
QUICK = "--quick" in sys.argv
APP, TGT = "127.0.0.1:3190", "127.0.0.1:9190"
PAGE = os.sysconf("SC_PAGE_SIZE")
http = functools.partial(benchlib.http, APP)




def rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024










class SseWatch(threading.Thread):
    """Records the arrival time of every `snapshot` event of one run."""

    def __init__(self, run_id):
        super().__init__(daemon=True)
        self.run_id, self.arrivals = run_id, []

    def run(self):
        with urllib.request.urlopen(f"http://{APP}/api/runs/{self.run_id}/events", timeout=600) as r:
            for raw in r:
                line = raw.decode().strip()
                if line == "event: snapshot":
                    self.arrivals.append(time.time())
                elif line == "event: done":
                    return


def run_plan(name, plan, sample_from, procs):
    """Launches `plan`, samples RSS/CPU of `procs` from `sample_from` s on, returns the result."""
    base = {p: rss_kib(pid) for p, pid in procs.items()}
    cpu0 = {p: cpu_secs(pid) for p, pid in procs.items()}
    rid = http("POST", "/api/runs", plan)["id"]
    watch = SseWatch(rid)
    watch.start()
    t0 = time.time()
    samples, hold_cpu = [], {}
    duration = sum(parse_secs(s["duration"]) for s in plan["stages"])
    while time.time() - t0 < duration + 15:
        run = http("GET", f"/api/runs/{rid}")
        el = time.time() - t0
        if el >= sample_from and run["status"] == "running":
            if not hold_cpu:
                hold_cpu = {"t": time.time(), **{p: cpu_secs(pid) for p, pid in procs.items()}}
            samples.append({p: rss_kib(pid) for p, pid in procs.items()} | {"open": (run.get("last") or {}).get("open", 0)})
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    hold_end = {"t": time.time(), **{p: cpu_secs(pid) for p, pid in procs.items()}}
    watch.join(timeout=20)
    run = http("GET", f"/api/runs/{rid}")
    gaps = [b - a for a, b in zip(watch.arrivals, watch.arrivals[1:])]
    return {"name": name, "id": rid, "run": run, "base_rss": base, "samples": samples, "cpu0": cpu0, "hold_cpu": hold_cpu,
            "hold_end": hold_end, "sse_events": len(watch.arrivals), "sse_max_gap": max(gaps) if gaps else None}


def parse_secs(d):
    return float(d[:-2]) / 1000 if d.endswith("ms") else float(d[:-1]) * {"s": 1, "m": 60, "h": 3600}[d[-1]]


class Processes:
    """A fresh `socketswarm target` and `socketswarm serve --sandbox off` per scenario, so
    each RSS baseline is a clean process."""

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="socketswarm-bench-")
        env = dict(os.environ, RUST_LOG="warn")
        self.target = subprocess.Popen([BIN, "target", "--listen", TGT], env=env)
        self.app = subprocess.Popen([BIN, "serve", "--listen", APP, "--sandbox", "off", "--database", os.path.join(self.tmp, "bench.db"),
                                     "--site-root", os.path.join(ROOT, "target", "site")], env=env)
        wait_http(f"http://{TGT}/health")
        wait_http(f"http://{APP}/api/health")
        time.sleep(1)
        return {"engine": self.app.pid, "target": self.target.pid}

    def __exit__(self, *exc):
        for p in (self.app, self.target):
            p.send_signal(signal.SIGTERM)
        for p in (self.app, self.target):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    sizes = [2000] if QUICK else [10000, 19000]
    results = []
    for n in sizes:
        drain_time_wait(below=1000, limit=90)
        ramp = max(5, n // 2000)
        plan = {"name": f"idle {n}", "target": f"ws://{TGT}/echo?tag=idle{n}",
                "stages": [{"duration": f"{ramp}s", "connections": n}, {"duration": "20s", "connections": n}]}
        with Processes() as procs:
            results.append(("idle", n, run_plan(f"idle {n}", plan, ramp + 5, procs)))
    drain_time_wait(below=1000, limit=90)
    burst = 2000 if QUICK else 10000
    plan = {"name": f"connect burst {burst}", "target": f"ws://{TGT}/echo?tag=burst",
            "stages": [{"duration": "2s", "connections": burst}, {"duration": "5s", "connections": burst}]}
    with Processes() as procs:
        results.append(("burst", burst, run_plan(plan["name"], plan, 0, procs)))
    drain_time_wait(below=1000, limit=90)
    m = 1000 if QUICK else 5000
    plan = {"name": f"echo {m}", "target": f"ws://{TGT}/echo?tag=echo",
            "stages": [{"duration": "5s", "connections": m}, {"duration": "15s", "connections": m}],
            "script": [{"repeat": {"every": "100ms", "steps": [{"send": "x{{vu}}"}, {"expect": {"timeout": "5s"}}]}}]}
    with Processes() as procs:
        results.append(("echo", m, run_plan(plan["name"], plan, 8, procs)))
    write_report(results)


def write_report(results):
    lines = ["# socketswarm engine benchmarks", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this machine ({os.cpu_count()} cores), release build.",
             "Rerun: `make bench` (or `bench/run.sh --quick`). The target is `socketswarm target` in its own process;",
             "the engine runs inside `socketswarm serve --sandbox off`; both are fresh processes for each scenario.",
             "RSS from /proc/PID/statm (user space; kernel socket buffers are extra), CPU from /proc/PID/stat.",
             "KiB / conn = (RSS while holding - RSS of the idle process before the run) / connections: it includes the",
             "run's fixed costs (histograms, channels), so it is an upper bound on the per-connection cost.", ""]
    lines += ["## Idle connections held (goal: <= 4 KiB engine RSS per connection)", "",
              "| connections | opened | failed | engine RSS before | engine RSS holding | **engine KiB / conn** | target KiB / conn | engine CPU while holding | target CPU while holding | SSE ticks (max gap) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, n, r in results:
        if kind != "idle":
            continue
        t = r["run"]["summary"]["totals"] if r["run"].get("summary") else {}
        s = [x for x in r["samples"] if x["open"] >= n * 0.99] or r["samples"]
        eng = max(x["engine"] for x in s) if s else 0
        tgt = max(x["target"] for x in s) if s else 0
        per_e = (eng - r["base_rss"]["engine"]) / n
        per_t = (tgt - r["base_rss"]["target"]) / n
        dt = r["hold_end"]["t"] - r["hold_cpu"]["t"] if r["hold_cpu"] else 1
        ce = (r["hold_end"]["engine"] - r["hold_cpu"]["engine"]) / dt * 100 if r["hold_cpu"] else 0
        ct = (r["hold_end"]["target"] - r["hold_cpu"]["target"]) / dt * 100 if r["hold_cpu"] else 0
        gap = f"{r['sse_max_gap']:.2f} s" if r["sse_max_gap"] else "n/a"
        lines.append(f"| {n:,} | {t.get('opened', 0):,} | {t.get('failed', 0):,} | {r['base_rss']['engine']/1024:.1f} MiB | {eng/1024:.1f} MiB | **{per_e:.2f}** | {per_t:.2f} | {ce:.1f} % of a core | {ct:.1f} % | {r['sse_events']} ({gap}) |")
    lines += ["", "## Connect rate (goal: limited by the target, not the engine)", ""]
    for kind, n, r in results:
        if kind != "burst":
            continue
        run = r["run"]
        series = run.get("series", {})
        rates = series.get("opened_rate", [])
        peak = max(rates) if rates else 0
        t = run["summary"]["totals"]
        cpu_e = r["hold_end"]["engine"] - r["cpu0"]["engine"]
        cpu_t = r["hold_end"]["target"] - r["cpu0"]["target"]
        lat = run["summary"]["latency"].get("ws_connecting", {})
        lines += [f"- Asked for {n:,} connections within 2 s ({n//2:,}/s): opened {t['opened']:,}, failed {t['failed']:,} {t['failures']}.",
                  f"- Peak opened per second (1 s ticks): **{peak:,.0f}/s**; ws_connecting p50 {lat.get('p50_us',0)/1000:.1f} ms, p99 {lat.get('p99_us',0)/1000:.1f} ms.",
                  f"- CPU seconds over the run: engine process {cpu_e:.2f} s, target process {cpu_t:.2f} s."]
    lines += ["", "## Echo throughput", ""]
    for kind, n, r in results:
        if kind != "echo":
            continue
        run = r["run"]
        series = run.get("series", {})
        rec = series.get("received_rate", [])
        hold = [v for t, v in zip(series.get("t", []), rec) if 8 <= t <= 19]
        avg = sum(hold) / len(hold) if hold else 0
        lat = run["summary"]["latency"].get("ws_rtt", {})
        dt = r["hold_end"]["t"] - r["hold_cpu"]["t"] if r["hold_cpu"] else 1
        ce = (r["hold_end"]["engine"] - r["hold_cpu"]["engine"]) / dt * 100 if r["hold_cpu"] else 0
        ct = (r["hold_end"]["target"] - r["hold_cpu"]["target"]) / dt * 100 if r["hold_cpu"] else 0
        lines += [f"- {n:,} connections, each sending a message every 100 ms and timing the echo (offered {n*10:,}/s).",
                  f"- Echo round trips per second during the hold: **{avg:,.0f}/s**; ws_rtt p50 {lat.get('p50_us',0)/1000:.2f} ms, p99 {lat.get('p99_us',0)/1000:.2f} ms (from the scheduled send).",
                  f"- CPU while holding: engine {ce:.0f} % of a core, target {ct:.0f} % (both share 2 cores)."]
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
