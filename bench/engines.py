"""Which consumer engines exist, how to start a service on each, and its bare Kafka client.

The benchmark measures every engine the ``consumers`` package ships, never a
hard-coded list: :func:`available_engines` reads them from
``consumers.engines`` (one module per Kafka client) when that package exists,
and otherwise from the two entry points of the original layout
(``consumers.service`` for kafka-python, ``consumers.faust_app`` for faust). An
engine whose Kafka client library is not installed (``confluent-kafka`` comes
with the optional ``revocast[fast]`` extra) is listed as unavailable, with the
reason, instead of failing the run.

Each engine is paired with its *bare client*: the same Kafka client library,
used as plainly as possible (assign every partition, count records, nothing
else; :mod:`bench.bareclient`). Its CPU per record at a given rate is the floor
the engine's service cost is compared with.

    [e.name for e in available_engines()]      # ['kafka-python', 'faust']
    engine_command(engine("faust"), ...)        # argv and environment of one service
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BARE_CLIENTS",
    "Engine",
    "available_engines",
    "engine",
    "engine_command",
    "engine_names",
    "settings_engines",
]

# engine name -> (bare client id, the Python module that client needs, short tag for topic names)
_KNOWN: dict[str, tuple[str, str, str]] = {
    "kafka-python": ("kafka-python", "kafka", "kp"),
    "faust": ("aiokafka", "aiokafka", "fa"),
    "confluent": ("confluent-kafka", "confluent_kafka", "ck"),
}
BARE_CLIENTS: tuple[str, ...] = ("kafka-python", "aiokafka", "confluent-kafka")
"""Client ids :mod:`bench.bareclient` speaks."""

# Environment variables a service must not inherit from the harness: the bench
# configures everything explicitly (and never lets services use Redis snapshots,
# which would skip the replay and share state between runs).
_SCRUB = ("REDIS_URL", "REVOCAST_REDIS_URL", "REVOCAST_SERVICE", "REVOCAST_INSTANCE",
          "REVOCAST_ENGINE")


@dataclass(frozen=True)
class Engine:
    name: str
    """As the consumers package spells it: ``kafka-python``, ``faust``, ``confluent``."""
    bare_client: str
    short: str
    available: bool
    reason: str = ""
    """Why it cannot run here, when ``available`` is false."""


def _consumers_dir() -> Path | None:
    spec = importlib.util.find_spec("consumers")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def engine_names() -> list[str]:
    """Every engine the consumers package ships (available here or not), reference first:
    one per module of ``consumers/engines/``, plus faust while it is ``consumers/faust_app``;
    without an engines package, the original two."""
    root = _consumers_dir()
    engines_dir = root / "engines" if root is not None else None
    if engines_dir is None or not (engines_dir / "__init__.py").is_file():
        names = ["kafka-python", "faust"]
    else:
        modules = [m.name for m in pkgutil.iter_modules([str(engines_dir)])
                   if not m.name.startswith("_")]
        names = [m.replace("_", "-") for m in modules if m.replace("_", "-") in _KNOWN]
        if root is not None and (root / "faust_app.py").is_file() and "faust" not in names:
            names.append("faust")
    order = list(_KNOWN)
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


def _make(name: str) -> Engine:
    bare, module, short = _KNOWN[name]
    if importlib.util.find_spec(module) is None:
        extra = " (pip install 'revocast[fast]')" if name == "confluent" else ""
        return Engine(name, bare, short, False, f"Python module {module!r} not installed{extra}")
    if name not in ("kafka-python", "faust") and name not in settings_engines():
        return Engine(name, bare, short, False,
                      "the consumers package has no engine setting (REVOCAST_ENGINE) to run it")
    return Engine(name, bare, short, True)


def available_engines() -> list[Engine]:
    return [_make(n) for n in engine_names()]


def engine(name: str) -> Engine:
    if name not in engine_names():
        raise ValueError(f"unknown engine {name!r}: choose from {', '.join(engine_names())}")
    return _make(name)


def settings_engines() -> tuple[str, ...]:
    """The engines ``ConsumerSettings.engine`` (``REVOCAST_ENGINE``) accepts; empty when the
    consumer settings have no engine field."""
    from typing import get_args

    from consumers.settings import ConsumerSettings

    field = ConsumerSettings.model_fields.get("engine")
    if field is None:
        return ()
    return tuple(str(a) for a in get_args(field.annotation))


def engine_command(
    eng: Engine,
    *,
    service: str,
    instance: str,
    bootstrap: str,
    prefix: str,
    jwks_path: Path,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of one service process on ``eng``, configured as a deployment
    is: the consumers package's own entry point and its ``REVOCAST_*`` settings."""
    env = {k: v for k, v in (environ if environ is not None else os.environ).items()
           if k not in _SCRUB}
    env["PYTHONUNBUFFERED"] = "1"
    settings_env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REVOCAST_JWKS": str(jwks_path),
        "REVOCAST_TOPIC_PREFIX": prefix,
        "REVOCAST_REDIS_SNAPSHOTS": "false",
        "REVOCAST_LOG_LEVEL": "WARNING",
    }
    if eng.name == "kafka-python" or eng.name in settings_engines():
        env.update(settings_env)
        if settings_engines():
            env["REVOCAST_ENGINE"] = eng.name
        return [sys.executable, "-m", "consumers.service", "--service", service,
                "--instance", instance], env
    if eng.name == "faust":
        cmd = [
            sys.executable, "-m", "consumers.faust_app",
            "--service", service,
            "--instance", instance,
            "--bootstrap", bootstrap,
            "--topic-prefix", prefix,
            "--jwks", str(jwks_path),
            "--loglevel", "warning",
        ]  # fmt: skip
        return cmd, env
    raise ValueError(f"engine {eng.name!r} is not a choice of ConsumerSettings.engine here")
