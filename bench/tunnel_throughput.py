"""Tunnel throughput and request latency: comfyfleet's Tunnel against OpenSSH's `ssh -L`.

Both forward a local port over SSH to the same real OpenSSH sshd (started here on loopback,
temporary keys), to the same HTTP server on the far side's loopback. Each tunnel runs in its
own process; this process is the HTTP client, the same for both. Measured, interleaved:

- throughput: GET of a --size MB body of random bytes (incompressible), best of --runs, MB/s;
- latency: median of --requests small GETs on one kept-alive connection (forwarding cost);
- new connections: median of --requests small GETs, each on a new TCP connection (the
  tunnel opens an SSH channel per connection, as a browser's parallel requests make it do).

    python bench/tunnel_throughput.py [--size 64] [--requests 200] [--runs 3]

Prints the figures side by side, with the direct (untunnelled) path as a reference, and the
ratio comfyfleet / ssh -L (throughput: higher is better; latency: lower is better).
Needs /usr/sbin/sshd and ssh (Debian: openssh-server, openssh-client).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the sshd launcher the tests use

from tests.remote.opensshd import OpenSshd, free_port  # noqa: E402

from comfyfleet.remote.keys import ensure_key  # noqa: E402

SERVER = """
import http.server, os, sys
size = int(sys.argv[2])
blob = os.urandom(size)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        body = blob if self.path == "/blob" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

OUR_TUNNEL = """
import asyncio, json, sys
from pathlib import Path
from comfyfleet.remote.target import SshTarget
from comfyfleet.remote.tunnel import Tunnel
from comfyfleet.util.clock import SystemClock

spec = json.loads(sys.argv[1])

async def main():
    target = SshTarget(host="127.0.0.1", port=spec["ssh_port"], user=spec["user"],
                       key_path=Path(spec["key"]), known_hosts_path=Path(spec["known"]),
                       alias="bench", instance_ref="bench")
    async def resolve():
        return target
    tunnel = Tunnel("bench", resolve, spec["remote_port"], clock=SystemClock(),
                    local_port=spec["local_port"])
    await tunnel.start()
    await tunnel.wait_up(30)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/small")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def throughput(port: int, size: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", "/blob")
    resp = conn.getresponse()
    got = 0
    while chunk := resp.read(1 << 20):
        got += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    assert got == size, (got, size)
    return size / elapsed / 1e6


def latency_keepalive(port: int, count: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", "/small")
        conn.getresponse().read()
        times.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(times) * 1000


def latency_new_connection(port: int, count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/small")
        conn.getresponse().read()
        conn.close()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(ports: dict[str, int], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    size = args.size * 1_000_000
    results: dict[str, dict[str, list[float]]] = {n: {} for n in ports}
    for _ in range(args.runs):  # interleaved, so drifts hit every path alike
        for name, port in ports.items():
            row = results[name]
            row.setdefault("MB/s", []).append(throughput(port, size))
            row.setdefault("keep-alive ms", []).append(latency_keepalive(port, args.requests))
            row.setdefault("new-conn ms", []).append(latency_new_connection(port, args.requests))
    best = {"MB/s": max, "keep-alive ms": min, "new-conn ms": min}
    return {n: {k: best[k](v) for k, v in row.items()} for n, row in results.items()}


def report(figures: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    runs, requests = args.runs, args.requests
    print(f"\n{args.size} MB download (best of {runs}); median of {requests} small GETs")
    print(f"{'':28}{'MB/s':>10}{'keep-alive ms':>16}{'new-conn ms':>14}")
    for name, row in figures.items():
        print(
            f"{name:28}{row['MB/s']:>10.1f}{row['keep-alive ms']:>16.3f}{row['new-conn ms']:>14.3f}"
        )
    ours, theirs = figures["comfyfleet Tunnel"], figures["OpenSSH ssh -L"]
    print("\nratio comfyfleet / ssh -L:")
    print(f"  throughput   {ours['MB/s'] / theirs['MB/s']:.2f}  (higher is better)")
    for key in ("keep-alive ms", "new-conn ms"):
        print(f"  {key:12} {ours[key] / theirs[key]:.2f}  (lower is better)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=64, help="download size, MB")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tunnel-bench-") as tmp:
        base = Path(tmp)
        key = ensure_key(base / "config")
        sshd = OpenSshd(base / "sshd", (key.public_text + "\n").encode())
        sshd.start()
        try:
            http_port, ours_port, ssh_port = free_port(), free_port(), free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", SERVER, str(http_port), str(args.size * 1_000_000)]
                )
            )
            wait_port(http_port)
            spec = {
                "ssh_port": sshd.port,
                "user": sshd.user,
                "key": str(key.private_path),
                "known": str(base / "known_hosts"),
                "remote_port": http_port,
                "local_port": ours_port,
            }
            procs.append(subprocess.Popen([sys.executable, "-c", OUR_TUNNEL, json.dumps(spec)]))
            wait_port(ours_port)
            forward = [
                "ssh", "-F", "/dev/null", "-N", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={base / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                "-i", str(key.private_path), "-p", str(sshd.port),
                "-L", f"{ssh_port}:127.0.0.1:{http_port}", f"{sshd.user}@127.0.0.1",
            ]  # fmt: skip
            procs.append(subprocess.Popen(forward, stdin=subprocess.DEVNULL))
            wait_port(ssh_port)
            figures = measure(
                {
                    "direct (no tunnel)": http_port,
                    "comfyfleet Tunnel": ours_port,
                    "OpenSSH ssh -L": ssh_port,
                },
                args,
            )
            report(figures, args)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(10)
            sshd.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
