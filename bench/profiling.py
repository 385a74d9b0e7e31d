"""Where the time goes: summaries of pyinstrument sessions and py-spy samples.

Two profilers, for two questions:

* **pyinstrument**, in-process, on the consumer's apply loop during a replay
  (:mod:`bench.replay` ``--mode profile``): what one event costs a consumer.
* **py-spy** (optional: ``pip install py-spy`` into the virtualenv), attached
  from outside to one live service process during the headline step, sampling
  every thread, blocked ones included, without pausing it (``--nonblocking
  --threads --idle``): what each thread of a service does under the real load,
  and where its CPU goes. Skipped, and said so, when py-spy is missing or not
  allowed to attach.

Both are reduced to the same shape: functions with their inclusive and self
share of the samples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["find_py_spy", "parse_collapsed", "pyinstrument_top", "record_py_spy", "top_shares"]

_LINE_NO = re.compile(r":\d+\)$")


def top_shares(
    inclusive: Counter[str], self_: Counter[str], total: float, limit: int = 15
) -> dict[str, Any]:
    if total <= 0:
        return {"total": 0, "inclusive": [], "self": []}
    return {
        "total": round(total, 4),
        "inclusive": [
            {"function": name, "share": round(value / total, 4)}
            for name, value in inclusive.most_common(limit)
        ],
        "self": [
            {"function": name, "share": round(value / total, 4)}
            for name, value in self_.most_common(limit)
        ],
    }


# pyinstrument samples wall time: a thread blocked on a lock, a selector or a sleep
# shows up as self time of these frames. They are folded into one "waiting" entry.
_WAITING = ("lock.acquire", "Condition.wait", "Event.wait", "select", "sleep", "poll (<built-in>)")


def _waiting(label: str) -> bool:
    if label.startswith(("Condition.wait", "Event.wait", "wait (threading.py)")):
        return True
    return "<built-in>" in label and any(w in label for w in _WAITING)


def pyinstrument_top(session: Any, limit: int = 15) -> dict[str, Any]:
    """Inclusive (counted once per stack) and self time per function of a session.

    Self time spent blocked (lock, selector, sleep) is reported as one entry,
    ``(waiting: lock/select/sleep)``.
    """
    root = session.root_frame()
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    if root is None:
        return top_shares(inclusive, self_, 0.0, limit)

    def name(frame: Any) -> str:
        return f"{frame.function} ({frame.file_path_short})"

    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        frame, on_path = stack.pop()
        if frame.is_synthetic:
            continue
        label = name(frame)
        if label not in on_path:
            inclusive[label] += frame.time
        self_["(waiting: lock/select/sleep)" if _waiting(label) else label] += (
            frame.total_self_time
        )
        child_path = on_path | {label}
        stack.extend((child, child_path) for child in frame.children)
    return top_shares(inclusive, self_, float(root.time), limit)


_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-fA-F]+\):?\s*(.*)$")
_IDLE_LEAVES = ("Condition.wait", "Event.wait", "EpollSelector.select", "select (", "sleep (",
                "lock.acquire", "Queue.get", "_wait_for_tstate_lock")


def _is_idle_leaf(frame: str) -> bool:
    return frame.startswith(_IDLE_LEAVES)


_KNOWN_THREADS = (
    ("revocast-consumer-", "revocast-consumer"),
    ("revocast-outbox-", "revocast-outbox"),
    ("kafka-io-", "kafka-io"),
)


def _thread_name(raw: str) -> str:
    """The thread's role without the service/instance part, e.g.
    ``revocast-consumer-svc1/svc1-kafka-python`` -> ``revocast-consumer``."""
    for prefix, role in _KNOWN_THREADS:
        if raw.startswith(prefix):
            return role
    if raw.endswith("-network-thread"):
        return "kafka-network-thread"
    return raw


def parse_collapsed(lines: Iterable[str], limit: int = 15) -> dict[str, Any]:
    """Summarise py-spy ``--format raw`` output (``a;b;c COUNT`` per line).

    Recorded with ``--threads --idle`` (as :func:`record_py_spy` does), every stack
    starts with a ``thread (id): name`` frame and blocked threads are sampled too;
    the summary then has a ``threads`` block: per thread, the share of samples in
    which it was busy and its top leaf functions (wall-clock view). ``inclusive``
    and ``self`` are over the busy samples only (a blocked leaf - a wait, a select,
    a sleep - is not CPU).
    """
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    threads: dict[str, Counter[str]] = {}
    total = 0
    busy = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        stack_text, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [_LINE_NO.sub(")", f.strip()) for f in stack_text.split(";") if f.strip()]
        thread = None
        if frames and (match := _THREAD.match(frames[0])):
            thread = _thread_name(match.group(1).strip())
            frames = frames[1:]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        idle = _is_idle_leaf(leaf)
        if thread is not None:
            threads.setdefault(thread, Counter())["(blocked)" if idle else leaf] += count
        if idle:
            continue
        busy += count
        for frame in set(frames):
            inclusive[frame] += count
        self_[leaf] += count
    out: dict[str, Any] = {"samples": total, "busy_samples": busy,
                           **top_shares(inclusive, self_, float(busy), limit)}
    if threads:
        out["threads"] = {}
        for name, leaves in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
            n = sum(leaves.values())
            out["threads"][name] = {
                "samples": n,
                "busy_share": round(1 - leaves.get("(blocked)", 0) / n, 4),
                "top": [
                    {"function": f, "share": round(c / n, 4)} for f, c in leaves.most_common(6)
                ],
            }
    return out


def find_py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("py-spy")


def record_py_spy(
    pid: int, duration: float, out: Path, *, rate: int = 100
) -> subprocess.Popen[bytes] | None:
    """Start py-spy recording ``pid`` for ``duration`` s into ``out`` (raw collapsed
    stacks); returns the process (wait on it), or None when py-spy is missing."""
    py_spy = find_py_spy()
    if py_spy is None:
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(duration))),
            "--rate",
            str(rate),
            "--nonblocking",
            "--threads",
            "--idle",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
