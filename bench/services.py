"""N revocast service processes of one engine, started, probed until ready, stopped.

Each service is the consumers package's own entry point for its engine
(:func:`bench.engines.engine_command`), configured through its ``REVOCAST_*``
environment exactly as a deployment would be.

Each process is a different service (``svc1`` ... ``svcN``), so "in force
everywhere" means "applied by all N". Ready means *applied*: the harness
publishes a probe revocation every second and waits until every service has
reported one applied (a receipt, or a watermark past its offset). That covers the
consumer's own catch-up, a faust worker's group join, and the report path, so the
first measured event never waits for a service that is still starting.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.engines import engine, engine_command
from bench.processes import Child, Children
from bench.receipts import Applied, ReceiptReader
from producer import RevocationPublisher
from schemas import SessionRevoked, Subject, SubjectKind, TopicNames, in_seconds

__all__ = ["GroupSpec", "ServiceGroup", "ServiceStartError"]


class ServiceStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class GroupSpec:
    engine: str
    n: int
    bootstrap: str
    prefix: str
    jwks_path: Path
    logs_dir: Path

    @property
    def topics(self) -> TopicNames:
        return TopicNames.prefixed(self.prefix)

    @property
    def services(self) -> list[str]:
        return [f"svc{i}" for i in range(1, self.n + 1)]


def _service_command(spec: GroupSpec, service: str) -> tuple[list[str], dict[str, str]]:
    return engine_command(
        engine(spec.engine), service=service, instance=f"{service}-{spec.engine}",
        bootstrap=spec.bootstrap, prefix=spec.prefix, jwks_path=spec.jwks_path,
    )


class ServiceGroup:
    """Start with :meth:`start`, then :meth:`wait_ready`; :meth:`stop` (or the
    :class:`Children` it was given, on exit) stops every process."""

    def __init__(self, spec: GroupSpec, children: Children) -> None:
        self.spec = spec
        self.children = children
        self.members: dict[str, Child] = {}
        self.ready_after_s: float | None = None
        self.probes = 0

    def start(self) -> None:
        for service in self.spec.services:
            cmd, env = _service_command(self.spec, service)
            log = self.spec.logs_dir / f"{self.spec.prefix}.{service}.log"
            child = Child(f"{self.spec.engine}:{service}", cmd, env=env, log_path=log)
            self.members[service] = self.children.start(child)

    def pids(self) -> dict[str, int]:
        return {s: c.pid for s, c in self.members.items() if c.pid is not None}

    def cpu_seconds(self) -> float:
        return sum(c.cpu_seconds() or 0.0 for c in self.members.values())

    def check_alive(self) -> None:
        dead = [(s, c) for s, c in self.members.items() if not c.alive]
        if dead:
            _service, child = dead[0]
            raise ServiceStartError(
                f"{child.name} exited with code {child.returncode}; last log lines "
                f"({child.log_path}):\n{child.log_tail()}"
            )

    def wait_ready(
        self,
        publisher: RevocationPublisher,
        reader: ReceiptReader,
        *,
        timeout: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> float:
        """Probe until every service has applied a probe; returns the seconds it took."""
        begin = time.monotonic()
        deadline = begin + timeout
        probes: dict[uuid.UUID, tuple[int, int]] = {}
        applied = Applied()
        ready: set[str] = set()
        wanted = set(self.spec.services)
        next_probe = begin
        while True:
            now = time.monotonic()
            if now >= next_probe:
                published = publisher.publish(
                    SessionRevoked(
                        subject=Subject(id="bench-probe", kind=SubjectKind.SERVICE_ACCOUNT),
                        session_id=f"probe-{uuid.uuid4().hex}",
                        expires_at=in_seconds(600),
                        reason="bench readiness probe",
                    )
                )
                probes[published.event_id] = (published.partition, published.offset)
                self.probes += 1
                next_probe = now + 1.0
            for report in reader.poll(0.2):
                applied.add(report)
            ready |= {s for s in wanted - ready
                      if any(applied.applied_ns(s, e, pos) is not None
                             for e, pos in probes.items())}
            if on_progress is not None:
                on_progress(len(ready))
            if ready >= wanted:
                self.ready_after_s = time.monotonic() - begin
                return self.ready_after_s
            self.check_alive()
            if time.monotonic() >= deadline:
                missing = sorted(wanted - ready)
                tails = "\n".join(
                    f"--- {self.members[s].log_path}:\n{self.members[s].log_tail(4)}"
                    for s in missing[:2]
                )
                raise ServiceStartError(
                    f"{self.spec.engine}: {len(missing)} of {self.spec.n} services applied no "
                    f"probe within {timeout:g} s ({', '.join(missing)}); logs:\n{tails}"
                )

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        for child in self.members.values():
            child.send_stop()
        deadline = time.monotonic() + timeout
        codes = {
            service: child.wait_stopped(deadline - time.monotonic())
            for service, child in self.members.items()
        }
        self.children.items = [c for c in self.children.items if c not in self.members.values()]
        self.members = {}
        return codes
