"""``python -m bench [--quick] --out DIR`` - run from the repository root.

    python -m bench --quick --out /tmp/bq        # CI smoke run, under three minutes
    python -m bench --out bench-out              # the full sweep (make bench)
    python -m bench --out o --engines kafka-python --skip bootstrap,poll,peers
    python -m bench --soak --out soak-out       # the soak alone: 10 min at 300/s, 4 services

``--engines`` takes the engines the consumers package ships (``bench.engines``);
the default is every one whose Kafka client is installed here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.engines import available_engines, engine_names
from bench.plan import PEERS, full_plan, quick_plan

PARTS = ("e2e", "check", "bootstrap", "poll", "peers", "idp")


def _parser() -> argparse.ArgumentParser:
    installed = [e.name for e in available_engines() if e.available]
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="revocast benchmark: propagation latency (N services x rates x engines) "
        "against a real Kafka broker, beside Redis pub/sub and Redis Streams at the same N "
        "and rates, plus baselines. Writes results.json, results.md and PNG plots to --out.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--quick", action="store_true",
        help="small but real subset, the target configuration included (CI, < 3 min)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(installed),
        help=f"comma-separated consumer engines, from: {', '.join(engine_names())} "
        f"(default: those installed here: {','.join(installed)})",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to run beside revocast (default: {','.join(PEERS)})",
    )
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated parts to leave out: {', '.join(PARTS)} (development only)",
    )
    parser.add_argument(
        "--soak", action="store_true",
        help="run only the soak (bench.soak): 4 services at 300/s for --soak-minutes; RSS, "
        "p50/p99 per 10 s window, lost events (make soak)",
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0,
                        help="how long the soak publishes (default 10)")
    parser.add_argument("--soak-engine", default=None,
                        help="the soak's engine (default: the best one installed here)")
    parser.add_argument(
        "--no-service-profile",
        action="store_true",
        help="do not attach py-spy to a service during the headline step",
    )
    return parser


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.soak:
        from bench.soak import soak_main

        return soak_main(args.out, engine=args.soak_engine, minutes=args.soak_minutes)
    plan = quick_plan() if args.quick else full_plan()
    skip = frozenset(_names(args.skip))
    unknown = skip - set(PARTS)
    if unknown:
        print(f"python -m bench: error: unknown part(s) to skip: {sorted(unknown)}",
              file=sys.stderr)
        return 2
    try:
        plan = plan.with_engines(_names(args.engines), tuple(engine_names()))
        plan = plan.with_peers(() if "peers" in skip else _names(args.peers))
    except ValueError as exc:
        print(f"python -m bench: error: {exc}", file=sys.stderr)
        return 2
    missing = [e for e in available_engines() if e.name in plan.engines and not e.available]
    if missing:
        for e in missing:
            print(f"python -m bench: error: engine {e.name}: {e.reason}", file=sys.stderr)
        return 2
    if not plan.engines:
        print("python -m bench: error: no engine to run", file=sys.stderr)
        return 2
    if args.no_service_profile:
        plan = replace(plan, profile_service=False)
    # Imported here: the runner pulls in Kafka clients, faust's dependencies, matplotlib.
    from bench.runner import run_benchmark

    return run_benchmark(plan, args.out, skip=skip - {"peers"})


if __name__ == "__main__":
    sys.exit(main())
