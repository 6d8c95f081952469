"""The HTTP load generator: wrk (Debian's `wrk`) when installed, else an async httpx client.

Both keep a fixed number of connections busy for a fixed time and report completed requests,
failures and latency percentiles, so the figures mean the same whichever ran.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from orderbus.bench.figures import percentile

ORDER_BODY: dict[str, object] = {
    "customer_id": "bench",
    "items": [{"sku": "KB-001", "quantity": 1}],
}

# wrk's `done` hook prints one machine-readable line: requests, failures, seconds, p50, p99.
_WRK_SCRIPT = """
wrk.method = "{method}"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %f %f %f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rate(self) -> float:
        return (self.requests - self.failures) / self.seconds if self.seconds else 0.0


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "httpx"


async def load(
    url: str, method: str, body: dict[str, object] | None, *, connections: int, seconds: float
) -> LoadResult:
    if tool() == "wrk":
        return await asyncio.to_thread(_wrk, url, method, body, connections, seconds)
    return await _httpx(url, method, body, connections, seconds)


def _wrk(
    url: str, method: str, body: dict[str, object] | None, connections: int, seconds: float
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT.format(method=method, body=json.dumps(body) if body else ""))
    try:
        # One thread: wrk's event loop drives 16 connections easily, and the second core is
        # left to the server under test.
        output = subprocess.run(  # noqa: S603 - a fixed command line
            [
                shutil.which("wrk") or "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        Path(script.name).unlink()
    line = next(x for x in output.splitlines() if x.startswith("BENCH "))
    requests, failures, duration, p50, p99 = line.split()[1:]
    return LoadResult(int(requests), int(failures), float(duration), float(p50), float(p99), "wrk")


async def _httpx(
    url: str, method: str, body: dict[str, object] | None, connections: int, seconds: float
) -> LoadResult:
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.request(method, url, json=body)
                    ok = response.status_code < 300
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1_000)
                failures += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return LoadResult(
        len(latencies),
        failures,
        elapsed,
        percentile(latencies, 50),
        percentile(latencies, 99),
        "httpx",
    )
