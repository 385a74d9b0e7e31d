"""The broker's own floor: Kafka's Java ``org.apache.kafka.tools.EndToEndLatency``.

The tool (kafka-tools, in the jar directory devstack resolves) sends one record
at a time with the given acks, waits until its own consumer receives it, and
prints the average and the 50th/99th/99.9th percentiles. Kafka 4.3's arguments
(from its usage text)::

    --bootstrap-server HOST:PORT --topic NAME --num-records N
    --producer-acks 1|all --record-size BYTES

Its percentiles are whole milliseconds (the tool truncates each latency to
ms), so a p50 of ``1`` means "between 1 and 2 ms"; the average has 4 decimals.
The first record carries the JVM's warm-up (often 100-200 ms) and is part of
the tool's statistics, as in the tool itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["E2E_CLASS", "find_java", "parse_e2e_output", "run_end_to_end_latency"]

E2E_CLASS = "org.apache.kafka.tools.EndToEndLatency"

_AVG = re.compile(r"Avg latency:\s*([0-9.]+)\s*ms")
_PCT = re.compile(
    r"Percentiles:\s*50th\s*=\s*([0-9.]+),\s*99th\s*=\s*([0-9.]+),\s*99\.9th\s*=\s*([0-9.]+)"
)


def parse_e2e_output(text: str) -> dict[str, float]:
    """``{"avg", "p50", "p99", "p999"}`` (ms) from the tool's stdout; ValueError if absent."""
    avg = _AVG.search(text)
    pct = _PCT.search(text)
    if avg is None or pct is None:
        raise ValueError("EndToEndLatency printed no 'Avg latency' / 'Percentiles' line")
    return {
        "avg": float(avg.group(1)),
        "p50": float(pct.group(1)),
        "p99": float(pct.group(2)),
        "p999": float(pct.group(3)),
    }


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("java not found: install OpenJDK 17 (the broker needs it too)")
    return found


def run_end_to_end_latency(
    jar_dir: Path,
    bootstrap: str,
    topic: str,
    *,
    records: int,
    record_size: int,
    acks: str = "all",
    timeout: float = 180.0,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Run the tool once against ``bootstrap`` and return its parsed figures."""
    cmd = [
        find_java(),
        "-Xmx512m",
        "-cp",
        f"{jar_dir}/*",
        E2E_CLASS,
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--producer-acks",
        acks,
        "--record-size",
        str(record_size),
    ]
    begin = time.monotonic()
    done = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )
    elapsed = time.monotonic() - begin
    output = done.stdout + done.stderr
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(" ".join(cmd) + "\n\n" + output)
    if done.returncode != 0:
        tail = " | ".join(output.strip().splitlines()[-3:])
        raise RuntimeError(f"EndToEndLatency exited with {done.returncode}: {tail}")
    figures = parse_e2e_output(output)
    return {
        **figures,
        "unit": "ms",
        "resolution_ms": 1,
        "records": records,
        "record_size": record_size,
        "acks": acks,
        "tool": E2E_CLASS,
        "elapsed_s": round(elapsed, 2),
    }
