#!/usr/bin/env python3
"""Memory per held idle connection of the headless `socketswarm run` (bench/LEAN.md).

The issue's measurement, repeatable: a fresh `socketswarm target` process, then
`socketswarm run plan.json` (release) in a process of its own, whose plan first holds
0 connections for a few seconds (the RSS baseline: the process is set up, the runtime
and the aggregator are running), then ramps to N idle connections in RAMP seconds and
holds them. RSS is sampled from /proc/PID/statm every 0.2 s.

    bytes / connection = (median RSS while holding - median RSS before the ramp) / N

RssAnon (heap) is reported too: RSS also counts code pages first touched by the ramp.
Only loopback traffic; every run is bounded by its plan; TIME_WAIT drains between reps.

    python3 bench/lean.py [--n 10000] [--ramp 5] [--hold 15] [--reps 3] [--bin PATH]
                          [--label NAME] [--json FILE] [--tcpkali]

`--tcpkali` measures tcpkali (if it is on PATH) against the same target and ramp for the
side-by-side figure. tcpkali has no 0-connection stage, so its baseline is a run holding
1 connection: bytes / connection = (median RSS holding N - median RSS holding 1) / (N - 1).
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

from benchlib import drain_time_wait, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.sysconf("SC_PAGE_SIZE")
TGT = "127.0.0.1:9191"


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def rss_anon_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def one_run(binary, n, ramp, hold, base_s=3.0, preload=None):
    """One repetition: returns a dict of readings (bytes). `preload`: a malloc library
    LD_PRELOADed into the run (not the target), to compare allocators without a build."""
    tmp = tempfile.mkdtemp(prefix="socketswarm-lean-")
    plan = {"name": f"lean idle {n}", "target": f"ws://{TGT}/echo?tag=lean",
            "stages": [{"duration": f"{base_s:g}s", "connections": 0},
                       {"duration": f"{ramp}s", "connections": n},
                       {"duration": f"{hold}s", "connections": n}]}
    plan_path = os.path.join(tmp, "plan.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    out_json = os.path.join(tmp, "result.json")
    env = dict(os.environ, RUST_LOG="warn")
    target = start_target(binary, env)
    try:
        t0 = time.time()
        run_env = dict(env, LD_PRELOAD=preload) if preload else env
        run = subprocess.Popen([binary, "run", plan_path, "--out", f"json={out_json}"], env=run_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base, held = [], []
        ramp_end = base_s + ramp
        while run.poll() is None:
            el = time.time() - t0
            try:
                r, a = rss_bytes(run.pid), rss_anon_bytes(run.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            # Baseline: the 0-connection stage after start-up settled.
            if 1.5 <= el <= base_s - 0.3:
                base.append((r, a))
            # Holding: from 3 s after the ramp ended until 2 s before the end.
            elif ramp_end + 3 <= el <= ramp_end + hold - 2:
                held.append((r, a))
            time.sleep(0.2)
        code = run.wait(timeout=60)
    finally:
        stop(target)
    with open(out_json) as f:
        totals = json.load(f)["summary"]["totals"]
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    return {"exit": code, "opened": totals["opened"], "failed": totals["failed"],
            "closed": totals["closed"], "base_rss": med(base, 0), "held_rss": med(held, 0),
            "held_rss_max": max(x[0] for x in held), "base_anon": med(base, 1),
            "held_anon": med(held, 1), "samples": (len(base), len(held))}


def start_target(binary, env):
    target = subprocess.Popen([binary, "target", "--listen", TGT], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://{TGT}/health")
    return target


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tcpkali_hold(binary, n, ramp, hold):
    """Median RSS / RssAnon of tcpkali holding `n` idle WebSocket connections."""
    env = dict(os.environ, RUST_LOG="warn")
    target = start_target(binary, env)
    try:
        rate = max(1, n // max(ramp, 1))
        t0 = time.time()
        kali = subprocess.Popen(["tcpkali", "--websocket", "-c", str(n), "--connect-rate", str(rate),
                                 "-T", f"{ramp + hold}s", TGT],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        held = []
        while kali.poll() is None and time.time() - t0 < ramp + hold + 30:
            el = time.time() - t0
            if ramp + 3 <= el <= ramp + hold - 2:
                try:
                    held.append((rss_bytes(kali.pid), rss_anon_bytes(kali.pid)))
                except (FileNotFoundError, ProcessLookupError):
                    break
            time.sleep(0.2)
        if kali.poll() is None:
            stop(kali)
    finally:
        stop(target)
    return (statistics.median(x[0] for x in held), statistics.median(x[1] for x in held))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--ramp", type=int, default=5)
    ap.add_argument("--hold", type=int, default=15)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "socketswarm"))
    ap.add_argument("--label", default="")
    ap.add_argument("--json", help="append the readings to this JSON-lines file")
    ap.add_argument("--preload", help="LD_PRELOAD this malloc library into the run")
    ap.add_argument("--tcpkali", action="store_true", help="measure tcpkali instead (see above)")
    a = ap.parse_args()
    if a.tcpkali:
        return kali_main(a)
    rows = []
    for rep in range(a.reps):
        drain_time_wait(below=1000, limit=120)
        r = one_run(a.bin, a.n, a.ramp, a.hold, preload=a.preload)
        r["per_conn"] = (r["held_rss"] - r["base_rss"]) / a.n
        r["per_conn_anon"] = (r["held_anon"] - r["base_anon"]) / a.n
        rows.append(r)
        print(f"rep {rep + 1}: opened {r['opened']} failed {r['failed']} closed {r['closed']} exit {r['exit']}; "
              f"RSS {r['base_rss'] / 2**20:.1f} -> {r['held_rss'] / 2**20:.1f} MiB: "
              f"{r['per_conn']:.0f} B/conn ({r['per_conn'] / 1024:.2f} KiB); RssAnon {r['per_conn_anon']:.0f} B/conn; "
              f"samples {r['samples']}", flush=True)
    per = [r["per_conn"] for r in rows]
    anon = [r["per_conn_anon"] for r in rows]
    print(f"{a.label or 'run'}: {a.n} idle connections, ramp {a.ramp}s, {a.reps} reps: "
          f"RSS median {statistics.median(per):.0f} B/conn (range {min(per):.0f}-{max(per):.0f}); "
          f"RssAnon median {statistics.median(anon):.0f} B/conn (range {min(anon):.0f}-{max(anon):.0f})")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"label": a.label, "n": a.n, "ramp": a.ramp, "time": time.time(),
                                "rows": rows}) + "\n")


def kali_main(a):
    if shutil.which("tcpkali") is None:
        print("tcpkali is not on PATH (not in this machine's Debian sources): no side-by-side figure")
        return 2
    per = []
    for rep in range(a.reps):
        drain_time_wait(below=1000, limit=120)
        one = tcpkali_hold(a.bin, 1, a.ramp, a.hold)
        drain_time_wait(below=1000, limit=120)
        many = tcpkali_hold(a.bin, a.n, a.ramp, a.hold)
        r = ((many[0] - one[0]) / (a.n - 1), (many[1] - one[1]) / (a.n - 1))
        per.append(r)
        print(f"tcpkali rep {rep + 1}: RSS {one[0] / 2**20:.1f} -> {many[0] / 2**20:.1f} MiB: "
              f"{r[0]:.0f} B/conn; RssAnon {r[1]:.0f} B/conn", flush=True)
    print(f"tcpkali: {a.n} idle connections, {a.reps} reps: RSS median "
          f"{statistics.median(x[0] for x in per):.0f} B/conn, RssAnon median "
          f"{statistics.median(x[1] for x in per):.0f} B/conn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
