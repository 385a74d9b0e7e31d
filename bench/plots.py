"""PNG plots (matplotlib, Agg backend: no display needed).

* ``cdf_per_service.png`` - latency CDF of every service, and of "in force
  everywhere", for the headline configuration (one panel per flavor);
* ``p99_vs_rate.png`` - in-force-everywhere p99 against the *achieved* rate, a
  line per N (kafka-python solid, faust dashed);
* ``p99_vs_n.png`` - the same p99 against N, a line per target rate;
* ``exposure_windows.png`` - how long a revoked credential stays usable under each
  session model, log scale: JWT expiry (computed), revocation-list polling
  (measured), Redis per request (measured write round trip; the cost moves to
  every request), revocast (measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_all"]

_STYLE = {"kafka-python": "-", "faust": "--"}
_MARK = {"kafka-python": "o", "faust": "s"}


def _cdf(values_ns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.sort(np.asarray(values_ns, dtype=np.float64)) / 1e6
    ys = np.arange(1, arr.size + 1) / max(1, arr.size)
    return np.maximum(arr, 1e-3), ys



def _save(fig: Any, path: Path) -> Path:
    """Lay out, write the PNG, and free the figure (pyplot keeps every open one)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

def plot_cdf_per_service(
    raw: Mapping[str, Mapping[str, Any]], headline: tuple[int, int], path: Path
) -> Path | None:
    """``raw[flavor] = {"everywhere": [ns...], "per_service": {svc: [ns...]}}``."""
    flavors = [f for f in raw if raw[f].get("everywhere")]
    if not flavors:
        return None
    fig, axes = plt.subplots(1, len(flavors), figsize=(6.5 * len(flavors), 4.6), squeeze=False)
    for ax, flavor in zip(axes[0], flavors, strict=True):
        data = raw[flavor]
        for service, values in sorted(data["per_service"].items()):
            if values:
                xs, ys = _cdf(values)
                ax.plot(xs, ys, lw=1, alpha=0.8, label=service)
        xs, ys = _cdf(data["everywhere"])
        ax.plot(xs, ys, lw=2.5, color="black", label="in force everywhere (max)")
        ax.axvline(10, color="red", ls=":", lw=1)
        ax.text(10, 0.02, " 10 ms target", color="red", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("publish -> applied latency (ms, log)")
        ax.set_ylabel("fraction of events")
        ax.set_title(f"{flavor}: N={headline[0]}, R={headline[1]}/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_p99_vs_rate(entries: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    rows = [e for e in entries if e.get("p99_ms") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    all_ns = sorted({e["n"] for e in rows})
    for flavor in sorted({e["flavor"] for e in rows}):
        for n in sorted({e["n"] for e in rows if e["flavor"] == flavor}):
            pts = sorted(
                (e["achieved_rate"], e["p99_ms"])
                for e in rows
                if e["flavor"] == flavor and e["n"] == n and e["achieved_rate"]
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, _STYLE.get(flavor, "-"), marker=_MARK.get(flavor, "o"),
                        color=f"C{all_ns.index(n)}", label=f"{flavor} N={n}")
    ax.axhline(10, color="red", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("achieved publish rate (events/s, log)")
    ax.set_ylabel("in force everywhere p99 (ms, log)")
    ax.set_title("p99 vs rate (red: 10 ms target)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_p99_vs_n(entries: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    rows = [e for e in entries if e.get("p99_ms") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    all_rates: list[str] = []
    for e in rows:
        if e["rate"] not in all_rates:
            all_rates.append(e["rate"])
    for flavor in sorted({e["flavor"] for e in rows}):
        for rate in all_rates:
            pts = sorted((e["n"], e["p99_ms"]) for e in rows
                         if e["flavor"] == flavor and e["rate"] == rate)
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, _STYLE.get(flavor, "-"), marker=_MARK.get(flavor, "o"),
                    color=f"C{all_rates.index(rate)}", label=f"{flavor} R={rate}")
    ax.axhline(10, color="red", ls=":", lw=1)
    ax.set_yscale("log")
    ns = sorted({e["n"] for e in rows})
    ax.set_xticks(ns)
    ax.set_xlabel("services (N)")
    ax.set_ylabel("in force everywhere p99 (ms, log)")
    ax.set_title("p99 vs number of services (red: 10 ms target)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_exposure(models: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """``models``: ``{"label", "kind", "p50_s", "p99_s", "min_s", "max_s", "note"}``."""
    rows = [m for m in models if m.get("p50_s") is not None]
    if not rows:
        return None
    colors = {"computed": "tab:orange", "measured": "tab:blue"}
    fig, ax = plt.subplots(figsize=(13, 0.5 * len(rows) + 1.8))
    for y, m in enumerate(rows):
        lo = max(m.get("min_s") or m["p50_s"], 1e-7)
        hi = max(m.get("max_s") or m["p99_s"], lo)
        color = colors.get(m["kind"], "gray")
        ax.plot([lo, hi], [y, y], color=color, lw=1, alpha=0.6)
        ax.plot([max(m["p50_s"], 1e-7), max(m["p99_s"], 1e-7)], [y, y], color=color, lw=7,
                alpha=0.8, solid_capstyle="butt")
        ax.plot([max(m["p50_s"], 1e-7)], [y], "k|", ms=14)
        note = m.get("note") or ""
        ax.text(hi * 1.4, y, f"p50 {_fmt_s(m['p50_s'])}, p99 {_fmt_s(m['p99_s'])}; {note}",
                va="center", fontsize=7, clip_on=True)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{m['label']} [{m['kind']}]" for m in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1e7)
    ax.set_xlabel("exposure window after revocation (s, log): thin = min..max, thick = p50..p99")
    ax.set_title("How long a revoked credential stays usable, per session model")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.invert_yaxis()
    return _save(fig, path)


def _fmt_s(seconds: float) -> str:
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def plot_all(
    out_dir: Path,
    *,
    entries: Sequence[Mapping[str, Any]],
    headline_raw: Mapping[str, Mapping[str, Any]],
    headline: tuple[int, int],
    exposure_models: Sequence[Mapping[str, Any]],
) -> list[str]:
    made = [
        plot_cdf_per_service(headline_raw, headline, out_dir / "cdf_per_service.png"),
        plot_p99_vs_rate(entries, out_dir / "p99_vs_rate.png"),
        plot_p99_vs_n(entries, out_dir / "p99_vs_n.png"),
        plot_exposure(exposure_models, out_dir / "exposure_windows.png"),
    ]
    return [p.name for p in made if p is not None]
