"""``python -m bench [--quick] --out DIR`` - run from the repository root.

    python -m bench --quick --out /tmp/bq        # CI smoke run, under two minutes
    python -m bench --out bench-out              # the full sweep (make bench)
    python -m bench --out o --flavors kafka-python --skip bootstrap,poll
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.plan import FLAVORS, full_plan, quick_plan

PARTS = ("e2e", "check", "bootstrap", "poll")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="revocast benchmark: propagation latency (N services x rates x flavors) "
        "against a real Kafka broker, plus baselines. Writes results.json, results.md and "
        "PNG plots to --out.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--quick", action="store_true", help="small but real subset (CI smoke test, < 2 min)"
    )
    parser.add_argument(
        "--flavors",
        default=",".join(FLAVORS),
        help=f"comma-separated consumer flavors (default: {','.join(FLAVORS)})",
    )
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated parts to leave out: {', '.join(PARTS)} (development only)",
    )
    parser.add_argument(
        "--no-service-profile",
        action="store_true",
        help="do not attach py-spy to a service during the headline step",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = quick_plan() if args.quick else full_plan()
    try:
        flavors = tuple(f.strip() for f in args.flavors.split(",") if f.strip())
        plan = plan.with_flavors(flavors)
    except ValueError as exc:
        print(f"python -m bench: error: {exc}", file=sys.stderr)
        return 2
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = skip - set(PARTS)
    if unknown:
        print(f"python -m bench: error: unknown part(s) to skip: {sorted(unknown)}",
              file=sys.stderr)
        return 2
    if args.no_service_profile:
        from dataclasses import replace

        plan = replace(plan, profile_service=False)
    # Imported here: the runner pulls in Kafka clients, faust's dependencies, matplotlib.
    from bench.runner import run_benchmark

    return run_benchmark(plan, args.out, skip=skip)


if __name__ == "__main__":
    sys.exit(main())
