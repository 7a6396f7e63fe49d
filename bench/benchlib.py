"""What the benchmark scripts share: the JSON API, /proc CPU readings, waiting for a
process to listen, and letting TIME_WAIT sockets drain between runs."""
import json, os, subprocess, time, urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def http(base, method, path, body=None):
    """`method` http://`base``path` with a JSON body; the JSON answer."""
    req = urllib.request.Request(f"http://{base}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def cpu_secs(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICKS


def wait_http(url, timeout=30):
    """Waits (at most `timeout` s) until `url` answers."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout} s")


def time_wait_count():
    """Sockets in TIME_WAIT (-1 without `ss`)."""
    try:
        out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True).stdout
        return len(out.splitlines())
    except FileNotFoundError:
        return -1


def drain_time_wait(below=500, limit=150):
    """Waits (at most `limit` s) until fewer than `below` sockets are in TIME_WAIT."""
    start = time.time()
    while time.time() - start < limit and time_wait_count() > below:
        time.sleep(2)
    return time_wait_count()
