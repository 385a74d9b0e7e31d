"""Latency from an identity provider's request to in force everywhere: SCIM and SSF push.

N kafka-python services are started as in the sweep (:mod:`bench.sweep`); the endpoint is
``revocast serve-api``'s app with SCIM and SSF mounted (:class:`bench.ingress.IngressServer`).
An IdP then sends, one after the other at a steady pace, ``count`` SCIM deactivations
(``PATCH /Users/{id}`` ``active: false`` for users it provisioned first) and ``count`` CAEP
session-revoked SETs by push. For every request:

* ``request_to_answer``: from the request leaving to the IdP holding the answer (the
  endpoint answers only after Kafka acknowledged the revocation);
* ``request_to_in_force_everywhere``: from the request leaving to the last of the N
  services having applied the revocation (what the services report: per-event receipts or
  watermarks, :class:`bench.receipts.Applied`).

Both clocks are this host's ``time.time_ns``. Requests are sequential: the figures are
per-request latencies at a light load, not a throughput test.
"""

from __future__ import annotations

import time
from typing import Any

from bench.ingress import IdpRequest, IngressServer, RecordingPublisher, ScimIdp, SsfTransmitter
from bench.stats import in_force_everywhere, summarize_values
from bench.sweep import SweepContext, start_group

__all__ = ["run_from_idp"]


def _paced(count: int, rate: float, send: Any) -> list[IdpRequest]:
    out = []
    begin = time.monotonic()
    for i in range(count):
        wait = begin + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        out.append(send(i))
    return out


def run_from_idp(ctx: SweepContext, *, n: int, count: int, rate: float) -> dict[str, Any]:
    if ctx.redis_url is None:
        raise RuntimeError("the SCIM and SSF endpoints need Redis: no REDIS_URL")
    group, publisher, reader, _bare = start_group(ctx, "kafka-python", n)
    recorder: RecordingPublisher | None = None
    try:
        topics = group.spec.topics
        recorder = RecordingPublisher(ctx.bootstrap, topics, ctx.signer, issuer="bench-idp",
                                      client_id="revocast-bench-idp", delivery_timeout=30.0)
        task = ctx.ui.task(f"from the IdP: SCIM and SSF endpoints, N={n}", total=2 * count)
        with IngressServer(ctx.bootstrap, topics, recorder, ctx.redis_url) as server:
            scim = ScimIdp(server, recorder)
            ssf = SsfTransmitter(server, recorder)
            try:
                users = [(scim.provision(f"bench-user-{i}"), f"bench-user-{i}")
                         for i in range(count)]
                reader.read_to_end(timeout=15)
                requests = _paced(count, rate, lambda i: scim.deactivate(*users[i]))
                task.update(count)
                requests += _paced(count, rate, lambda i: ssf.session_revoked(
                    f"bench-ssf-{i}", f"bench-sess-{i}"))
                task.update(2 * count)
            finally:
                scim.close()
                ssf.close()
        positions = {p.event_id: (p.partition, p.offset) for r in requests for p in r.published}
        drain, applied = reader.wait_applied(positions, group.spec.services,
                                             timeout=ctx.plan.drain_timeout,
                                             stall=ctx.plan.stall_timeout)
        task.done()
    finally:
        if recorder is not None:
            recorder.close()
        reader.close()
        publisher.close()
        group.stop()
    out: dict[str, Any] = {
        "services": n,
        "engine": "kafka-python",
        "requests_per_kind": count,
        "pace_per_s": rate,
        **drain.to_dict(),
        "definition": "request_to_in_force_everywhere: from the IdP's request leaving to the "
        "last of the N services having applied the revocation (receipts); request_to_answer: "
        "to the IdP holding the 2xx (sent only after Kafka acknowledged)",
    }
    for kind, label in (("scim-deactivate", "scim"), ("ssf-session-revoked", "ssf_push")):
        mine = [r for r in requests if r.kind == kind]
        sent = {p.event_id: r.sent_ns for r in mine for p in r.published}
        result = in_force_everywhere(
            sent, applied.latencies(sent, positions, group.spec.services), group.spec.services
        )
        out[label] = {
            "request": "PATCH /scim/v2/Users/{id} active=false" if label == "scim"
            else "POST /ssf/v1/push/<transmitter> CAEP session-revoked SET",
            "requests": len(mine),
            "events": len(sent),
            "incomplete_events": result.incomplete,
            "request_to_answer": summarize_values(r.answered_ns - r.sent_ns for r in mine),
            "request_to_in_force_everywhere": result.everywhere.summary(),
        }
    return out
