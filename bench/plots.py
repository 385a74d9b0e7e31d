"""PNG plots (matplotlib, Agg backend: no display needed).

* ``cdf_per_service.png`` - latency CDF of every service, and of "in force
  everywhere", for the headline configuration (one panel per engine);
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

_STYLE = {"kafka-python": "-", "faust": "--", "confluent": "-.", "redis-pubsub": ":",
          "redis-streams": ":"}
_MARK = {"kafka-python": "o", "faust": "s", "confluent": "D", "redis-pubsub": "^",
         "redis-streams": "v"}


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
    raw: Mapping[str, Mapping[str, Any]], headline: tuple[int, int], path: Path,
    target_ms: float = 10.0,
) -> Path | None:
    """``raw[engine] = {"everywhere": [ns...], "per_service": {svc: [ns...]}}``."""
    engines = [f for f in raw if raw[f].get("everywhere")]
    if not engines:
        return None
    fig, axes = plt.subplots(1, len(engines), figsize=(6.5 * len(engines), 4.6), squeeze=False)
    for ax, engine in zip(axes[0], engines, strict=True):
        data = raw[engine]
        for service, values in sorted(data["per_service"].items()):
            if values:
                xs, ys = _cdf(values)
                ax.plot(xs, ys, lw=1, alpha=0.8, label=service)
        xs, ys = _cdf(data["everywhere"])
        ax.plot(xs, ys, lw=2.5, color="black", label="in force everywhere (max)")
        ax.axvline(target_ms, color="red", ls=":", lw=1)
        ax.text(target_ms, 0.02, f" {target_ms:g} ms target", color="red", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("publish -> applied latency (ms, log)")
        ax.set_ylabel("fraction of events")
        ax.set_title(f"{engine}: N={headline[0]}, R={headline[1]}/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_p99_vs_rate(
    entries: Sequence[Mapping[str, Any]], path: Path, target_ms: float = 10.0
) -> Path | None:
    rows = [e for e in entries if e.get("p99_ms") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.2))
    all_ns = sorted({e["n"] for e in rows})
    for engine in sorted({e["engine"] for e in rows}):
        for n in sorted({e["n"] for e in rows if e["engine"] == engine}):
            pts = sorted(
                (e["achieved_rate"], e["p99_ms"])
                for e in rows
                if e["engine"] == engine and e["n"] == n and e["achieved_rate"]
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, _STYLE.get(engine, "-"), marker=_MARK.get(engine, "o"),
                        color=f"C{all_ns.index(n)}", label=f"{engine} N={n}")
    ax.axhline(target_ms, color="red", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("achieved publish rate (events/s, log)")
    ax.set_ylabel("in force everywhere p99 (ms, log)")
    ax.set_title(f"p99 vs rate (red: {target_ms:g} ms target; dotted: Redis peers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_p99_vs_n(
    entries: Sequence[Mapping[str, Any]], path: Path, target_ms: float = 10.0
) -> Path | None:
    rows = [e for e in entries if e.get("p99_ms") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.2))
    all_rates: list[str] = []
    for e in rows:
        if e["rate"] not in all_rates:
            all_rates.append(e["rate"])
    for engine in sorted({e["engine"] for e in rows}):
        for rate in all_rates:
            pts = sorted((e["n"], e["p99_ms"]) for e in rows
                         if e["engine"] == engine and e["rate"] == rate)
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, _STYLE.get(engine, "-"), marker=_MARK.get(engine, "o"),
                    color=f"C{all_rates.index(rate)}", label=f"{engine} R={rate}")
    ax.axhline(target_ms, color="red", ls=":", lw=1)
    ax.set_yscale("log")
    ns = sorted({e["n"] for e in rows})
    ax.set_xticks(ns)
    ax.set_xlabel("services (N)")
    ax.set_ylabel("in force everywhere p99 (ms, log)")
    ax.set_title(f"p99 vs number of services (red: {target_ms:g} ms target; dotted: Redis peers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


_TIME_TICKS = [(1e-6, "1 us"), (1e-5, "10 us"), (1e-4, "100 us"), (1e-3, "1 ms"),
               (1e-2, "10 ms"), (0.1, "100 ms"), (1.0, "1 s"), (10.0, "10 s"),
               (60.0, "1 min"), (600.0, "10 min"), (3600.0, "1 h"), (86400.0, "1 day")]


def _decade_limits(values: Sequence[float], pad_right: float = 1.0) -> tuple[float, float]:
    """Whole decades around the positive ``values``; ``pad_right`` extra decades on the right
    (room for the value labels)."""
    positive = [v for v in values if v and v > 0]
    lo = 10 ** np.floor(np.log10(min(positive)))
    hi = 10 ** (np.ceil(np.log10(max(positive))) + pad_right)
    return float(lo), float(hi)


def plot_exposure(models: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Two panels, one row per session model:

    * left, how long a revoked credential stays usable (log time axis with readable
      ticks; thick bar p50..p99, thin line min..max, value labels inside the plot);
    * right, what every request pays for the revocation check (us, log): a stateless
      JWT pays nothing (and revokes nothing), a local view a dictionary lookup, Redis
      per request a network round trip. The two together show the trade-off that a
      short exposure bar alone hides.

    ``models``: ``{"label", "kind", "p50_s", "p99_s", "min_s", "max_s", "note",
    "request_cost_ns"}``.
    """
    rows = [m for m in models if m.get("p50_s") is not None]
    if not rows:
        return None
    colors = {"computed": "tab:orange", "measured": "tab:blue"}
    fig, (ax, cost_ax) = plt.subplots(
        1, 2, figsize=(14, 0.42 * len(rows) + 2.2), sharey=True,
        gridspec_kw={"width_ratios": [2.2, 1]}, layout="constrained",
    )
    lows = [max(m.get("min_s") or m["p50_s"], 1e-7) for m in rows]
    highs = [max(m.get("max_s") or m["p99_s"], 1e-7) for m in rows]
    x_lo, x_hi = _decade_limits(lows + highs, pad_right=1.6)
    for y, m in enumerate(rows):
        lo, hi = lows[y], max(highs[y], lows[y])
        color = colors.get(m["kind"], "gray")
        ax.plot([lo, hi], [y, y], color=color, lw=1, alpha=0.6)
        p50, p99 = max(m["p50_s"], 1e-7), max(m["p99_s"], 1e-7)
        ax.plot([p50, max(p99, p50 * 1.05)], [y, y], color=color, lw=7, alpha=0.85,
                solid_capstyle="butt")
        ax.plot([p50], [y], "k|", ms=12)
        ax.text(hi * 1.3, y, f"p50 {_fmt_s(m['p50_s'])}, p99 {_fmt_s(m['p99_s'])}",
                va="center", fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{m['label']} [{m['kind']}]" for m in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ticks = [(v, t) for v, t in _TIME_TICKS if x_lo <= v <= x_hi]
    ax.set_xticks([v for v, _ in ticks], [t for _, t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("exposure window after the revocation (log): thick p50..p99, thin min..max")
    ax.set_title("How long a revoked credential stays usable", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.invert_yaxis()

    costs_us = [(m.get("request_cost_ns") or 0.0) / 1000 for m in rows]
    known = [c for c in costs_us if c > 0]
    if known:
        c_lo, c_hi = _decade_limits(known, pad_right=1.0)
        c_lo /= 10
        for y, (m, cost) in enumerate(zip(rows, costs_us, strict=True)):
            if m.get("request_cost_ns") is None:
                cost_ax.text(c_lo * 1.5, y, "not measured", va="center", fontsize=7,
                             color="gray")
            elif cost <= 0:
                cost_ax.text(c_lo * 1.5, y, "none (no revocation check)", va="center",
                             fontsize=7, color="gray")
            else:
                cost_ax.barh(y, cost - c_lo, left=c_lo, height=0.6,
                             color="tab:red" if cost > 20 else "tab:green", alpha=0.8)
                cost_ax.text(cost * 1.3, y, f"{cost:,.1f} us" if cost < 100 else
                             f"{cost:,.0f} us", va="center", fontsize=7)
        cost_ax.set_xscale("log")
        cost_ax.set_xlim(c_lo, c_hi)
        decades = [10.0 ** k for k in range(int(np.log10(c_lo)), int(np.log10(c_hi)) + 1)]
        if len(decades) > 6:  # every other decade: the labels must not run into each other
            decades = decades[::2]
        cost_ax.set_xticks(decades, [f"{d:g} us" if d < 1000 else f"{d / 1000:g} ms"
                                     for d in decades], fontsize=8)
        cost_ax.minorticks_off()
    cost_ax.set_xlabel("revocation check per request (us, log; p50)")
    cost_ax.set_title("What every request pays", fontsize=10)
    cost_ax.grid(True, axis="x", which="major", alpha=0.3)
    cost_ax.tick_params(axis="y", left=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt_s(seconds: float) -> str:
    """Three significant digits in the largest unit that keeps the value >= 1."""
    from bench.tables import num

    for scale, unit in ((3600.0, "h"), (60.0, "min"), (1.0, "s"), (1e-3, "ms")):
        if seconds >= scale:
            return f"{num(seconds / scale)} {unit}"
    return f"{num(seconds * 1e6)} us"


def plot_all(
    out_dir: Path,
    *,
    entries: Sequence[Mapping[str, Any]],
    headline_raw: Mapping[str, Mapping[str, Any]],
    headline: tuple[int, int],
    exposure_models: Sequence[Mapping[str, Any]],
    target_ms: float = 10.0,
) -> list[str]:
    """``entries``: revocast's and the peers' (their ``engine`` is the peer's name)."""
    made = [
        plot_cdf_per_service(headline_raw, headline, out_dir / "cdf_per_service.png",
                             target_ms),
        plot_p99_vs_rate(entries, out_dir / "p99_vs_rate.png", target_ms),
        plot_p99_vs_n(entries, out_dir / "p99_vs_n.png", target_ms),
        plot_exposure(exposure_models, out_dir / "exposure_windows.png"),
    ]
    return [p.name for p in made if p is not None]
