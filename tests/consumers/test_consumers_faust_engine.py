"""The faust engine in-process (its own thread and event loop) against the real broker.

It runs the engine-parametrised scenarios of ``test_consumers_kafka`` and
``test_consumers_watermarks`` unchanged, as the engine ``"faust"``: those modules
build their consumers through ``RevocationConsumer``, which is swapped here for
:func:`tests.consumers.conftest.make_consumer` (same arguments, same public API,
same defaults). Then what only faust can get wrong: a crashed agent fails closed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from consumers.engines.faust import FaustRevocationConsumer
from schemas import Envelope, KeySet, TopicNames
from tests.consumers import test_consumers_kafka as kafka_scenarios
from tests.consumers import test_consumers_snapshots as snapshot_scenarios
from tests.consumers import test_consumers_watermarks as watermark_scenarios
from tests.consumers.conftest import make_consumer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCENARIOS: list[Callable[..., None]] = [
    kafka_scenarios.test_three_services_two_replicas_each_apply_every_event,
    kafka_scenarios.test_malformed_records_are_dead_lettered_and_the_consumer_keeps_going,
    kafka_scenarios.test_freshness_follows_heartbeats_per_partition,
    kafka_scenarios.test_duplicates_are_applied_once_and_receipted_once,
    kafka_scenarios.test_unreachable_broker_is_a_clear_broker_unavailable_error,
    kafka_scenarios.test_missing_events_topic_is_a_config_error,
    watermark_scenarios.test_a_watermark_covers_an_event_only_once_it_is_applied,
    watermark_scenarios.test_watermarks_are_signed_by_the_instance_and_a_forgery_is_refused,
    watermark_scenarios.test_an_idle_instance_announces_itself_every_period,
    snapshot_scenarios.test_a_snapshot_of_a_recreated_topic_is_refused_and_history_replayed,
]

client = snapshot_scenarios.client  # that module's own fixture (a Redis client)


def _on_faust(
    bootstrap: str,
    topics: TopicNames,
    service: str,
    instance: str,
    keys: KeySet | None,
    *,
    engine: str,
    **kwargs: Any,
) -> Any:
    assert engine == "faust", engine
    return make_consumer(engine, bootstrap, topics, service, instance, keys, **kwargs)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_the_faust_engine_passes_the_engine_scenarios(
    scenario: Callable[..., None], request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (kafka_scenarios, watermark_scenarios, snapshot_scenarios):
        monkeypatch.setattr(module, "RevocationConsumer", _on_faust)
    arguments = {
        name: "faust" if name == "engine" else request.getfixturevalue(name)
        for name in inspect.signature(scenario).parameters
    }
    scenario(**arguments)


def test_a_crashed_agent_fails_closed(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    until: Callable[..., bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher.heartbeats()
    publisher.flush()
    consumer = FaustRevocationConsumer(kafka_bootstrap, topics, "crash", "crash-1", trusted_keys)
    with consumer:
        assert consumer.wait_ready(60)
        assert until(lambda: consumer.denial() is None, 15), consumer.denial()

        def broken() -> None:  # the agent's own bookkeeping fails, not a record
            raise RuntimeError("the agent dies here")

        monkeypatch.setattr(consumer.core, "batch_done", broken)
        publisher.send(events(1)[0])
        publisher.flush()
        assert until(lambda: consumer.error is not None, 30)
        assert not consumer.ready
        assert consumer.denial() == "revocation agent crashed: RuntimeError: the agent dies here"
        with pytest.raises(RuntimeError, match="the agent dies here"):
            consumer.wait_ready(1)
