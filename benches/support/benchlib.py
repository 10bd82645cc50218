"""What the Python benchmarks of the live path share (benches/soak.py,
benches/scrape_matrix.py, benches/scrape_under_streams.py): free loopback
ports, the engine process's memory and CPU from /proc, plain HTTP GETs on
127.0.0.1, sums of exposition samples, readiness, stream clients and
stopping the engine. Standard library only.

The scripts import it with
`sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))`.
"""

import http.client
import os
import signal
import socket
import subprocess
import time


def free_port():
    """A loopback port nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_mb(pid):
    """Resident memory of process `pid` in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    """User + system CPU seconds process `pid` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(port, path, timeout=60):
    """`GET path` on 127.0.0.1:port, one connection: (status, body text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body.decode()
    finally:
        c.close()


def scrape(port, timeout=10.0):
    """The text of /metrics; OSError unless the status is 200."""
    status, body = get(port, "/metrics", timeout)
    if status != 200:
        raise OSError(f"status {status}")
    return body


def sample(text, prefix):
    """Sum of the samples whose line starts with `prefix`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def taken(text):
    """Events the engine has taken: ingested + duplicates + rejected."""
    return (
        sample(text, "funnel_events_ingested_total")
        + sample(text, "funnel_events_duplicate_total")
        + sample(text, "funnel_events_rejected_total")
    )


def wait_ready(port, seconds):
    """Polls /readyz every 0.5 s until it answers 200; SystemExit after
    `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            if get(port, "/readyz", 5)[0] == 200:
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit("demo not ready")
        time.sleep(0.5)


def follow_stream(port, stop, received, i, timeout, conns=None):
    """One stream client: reads /api/v1/kpis/stream?interval=1 until `stop`
    is set or the stream ends, adding the bytes read to `received[i]`. Its
    connection is appended to `conns` when given (to shut it down from
    outside). True when the stream ended (or failed) before `stop` was set."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if conns is not None:
        conns.append(c)
    try:
        c.request("GET", "/api/v1/kpis/stream?interval=1")
        r = c.getresponse()
        while not stop.is_set():
            chunk = r.read1(65536)
            if not chunk:
                break
            received[i] += len(chunk)
    except (OSError, http.client.HTTPException):
        pass
    return not stop.is_set()


def stop_engine(p, timeout=30):
    """SIGTERM, then SIGKILL if the process has not exited after `timeout`
    seconds."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
