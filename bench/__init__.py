"""revocast's benchmark harness: ``python -m bench [--quick] --out DIR`` from the repo root.

A repository tool, not part of the installed library. It starts (or finds) a real
Kafka broker and Redis with :func:`devstack.resolve_services`, runs real consumer
processes, publishes signed revocations with the producer's
:class:`~producer.RevocationPublisher`, and reads the consumers' receipts to
measure how long a revocation takes to be in force in every service.

What is measured, and what is computed, is labelled as such in every output:

* measured: propagation latency (receipts), Kafka's own end-to-end floor (Kafka's
  ``EndToEndLatency`` tool), per-check cost (in-process vs a Redis round trip),
  revocation-list polling (a real poller against Redis), bootstrap replay time and
  memory, apply rate vs raw consume rate;
* computed: the exposure window of stateless JWTs (a simulation of token
  lifetimes; no clock is involved).

Nothing is asserted against the targets: they are reported, and where one is
missed the harness says where the time went.
"""

__all__: list[str] = []
