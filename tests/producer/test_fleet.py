"""The fleet model and the "in force" rule, without a broker: watermarks in, answers out."""

from __future__ import annotations

import uuid

import pytest

from producer.fleet import Fleet
from producer.inforce import build_status, in_force, judge
from producer.positions import EventRef
from schemas import Receipt, Watermark

S = 1_000_000_000  # ns per second
T0 = 1_800_000_000 * S
TOPIC = "t.revocast.events"


def wm(
    service: str,
    instance: str,
    offsets: dict[int, int],
    at: int,
    *,
    started: int = T0,
    period: float = 1.0,
) -> Watermark:
    return Watermark(
        service=service,
        instance=instance,
        topic=TOPIC,
        offsets=offsets,
        applied_at_ns=at,
        started_at_ns=started,
        period_s=period,
        ready=True,
    )


def ref(partition: int, offset: int, published: int = T0) -> EventRef:
    return EventRef(uuid.uuid4(), "session.revoked", partition, offset, published)


def test_an_event_is_in_force_at_the_first_watermark_beyond_it_exact_to_the_batch() -> None:
    fleet = Fleet()
    fleet.add(wm("api", "a1", {0: 10, 1: 3}, T0 + 5 * S), T0 + 5 * S)
    fleet.add(wm("api", "a1", {0: 10, 1: 3}, T0 + 6 * S), T0 + 6 * S)  # idle: nothing new
    fleet.add(wm("api", "a1", {0: 15}, T0 + 7 * S), T0 + 7 * S)
    assert fleet.applied_at("api", "a1", 0, 9) == T0 + 5 * S  # next_offset - 1: covered
    assert fleet.applied_at("api", "a1", 0, 10) == T0 + 7 * S  # next_offset: the next batch
    assert fleet.applied_at("api", "a1", 0, 14) == T0 + 7 * S
    assert fleet.applied_at("api", "a1", 0, 15) is None
    assert fleet.applied_at("api", "a1", 1, 2) == T0 + 5 * S
    assert fleet.applied_at("api", "a1", 1, 3) is None
    assert fleet.applied_at("api", "a1", 2, 0) is None  # a partition it never named
    assert fleet.applied_at("api", "other", 0, 0) is None


def test_presence_live_silent_forgotten_and_future_stamps_do_not_keep_an_instance_live() -> None:
    fleet = Fleet(silent_after=3, forget_after=60)
    fleet.add(wm("api", "a1", {0: 1}, T0, period=1.0), T0)
    fleet.add(wm("api", "a2", {0: 1}, T0 + 3600 * S, period=1.0), T0)  # stamped an hour ahead
    assert fleet.members(T0 + 2 * S) == [("api", "a1", "live"), ("api", "a2", "live")]
    assert fleet.members(T0 + 4 * S) == [("api", "a1", "silent"), ("api", "a2", "silent")]
    assert fleet.forget_silent(T0 + 30 * S) == []
    assert fleet.forget_silent(T0 + 61 * S) == ["api/a1", "api/a2"]
    assert len(fleet) == 0


def test_a_restart_is_a_new_run_and_must_apply_again() -> None:
    fleet = Fleet()
    fleet.add(wm("api", "a1", {0: 10}, T0 + S), T0 + S)
    assert fleet.applied_at("api", "a1", 0, 5) == T0 + S
    fleet.add(wm("api", "a1", {0: 2}, T0 + 9 * S, started=T0 + 8 * S), T0 + 9 * S)
    assert fleet.applied_at("api", "a1", 0, 5) is None  # replaying: not there yet
    fleet.add(wm("api", "a1", {0: 10}, T0 + 10 * S, started=T0 + 8 * S), T0 + 10 * S)
    assert fleet.applied_at("api", "a1", 0, 5) == T0 + 10 * S
    # A late watermark of the old run changes nothing for the current one.
    fleet.add(wm("api", "a1", {0: 20}, T0 + 11 * S), T0 + 11 * S)
    assert fleet.applied_at("api", "a1", 0, 15) is None
    row = fleet.status(T0 + 11 * S).instances[0]
    assert (row.runs, row.applied_through) == (2, {0: 9})


def test_history_is_bounded_and_never_reports_earlier_than_the_truth() -> None:
    fleet = Fleet(max_history=4)
    for i in range(1, 20):
        fleet.add(wm("api", "a1", {0: i * 10}, T0 + i * S), T0 + i * S)
    kept = fleet.applied_at("api", "a1", 0, 0)
    assert kept is not None
    assert kept >= T0 + S  # offset 0 was applied at T0+1s: reported then or later
    assert fleet.applied_at("api", "a1", 0, 185) == T0 + 19 * S


def test_status_lists_lag_and_applied_through() -> None:
    fleet = Fleet()
    fleet.add(wm("api", "a1", {0: 10, 1: 0}, T0), T0)
    status = fleet.status(T0 + S, end_offsets={0: 12, 1: 0}, refused={"unsigned": 3})
    row = status.instances[0]
    assert row.applied_through == {0: 9, 1: -1}
    assert row.lag == {0: 2, 1: 0}
    assert row.total_lag == 2
    assert row.state == "live"
    assert status.refused == {"unsigned": 3}
    assert status.services == ["api"]


def test_every_instance_must_apply_and_a_silent_one_is_named_never_skipped() -> None:
    fleet = Fleet(silent_after=3)
    event = ref(0, 7)
    fleet.add(wm("api", "a1", {0: 8}, T0 + 2 * S), T0 + 2 * S)
    fleet.add(wm("api", "a2", {0: 7}, T0 + 2 * S), T0 + 2 * S)
    fleet.add(wm("web", "w1", {0: 8}, T0 + 3 * S), T0 + 3 * S)
    now = T0 + 3 * S
    status = build_status(event.event_id, event, [], fleet, now)
    assert status.pending == ["api/a2"]
    verdict = judge(status, fleet.services(), min_instances=1, silent_ok=False)
    assert (verdict.done, verdict.missing) == (False, ["api"])

    later = T0 + 10 * S  # a2 stopped; w1 and a1 kept quiet too but had applied it
    status = build_status(event.event_id, event, [], fleet, later)
    assert status.silent == ["api/a2"]
    verdict = judge(status, ["api", "web"], min_instances=1, silent_ok=False)
    assert verdict.missing == ["api"]
    assert verdict.silent == ["api/a2"]
    accepted = judge(status, ["api", "web"], min_instances=1, silent_ok=True)
    assert accepted.done
    result = in_force(status, ["api", "web"], 1, accepted.silent)
    assert result.silent == ("api/a2",)
    assert result.latency_ms == 3000.0  # web/w1 got there last, 3 s after publishing
    assert result.services["api"].instances[0].via == "watermark"


def test_no_fleet_is_never_in_force_and_receipts_still_count() -> None:
    fleet = Fleet()
    event = ref(1, 4)
    status = build_status(event.event_id, event, [], fleet, T0)
    assert not judge(status, [], min_instances=1, silent_ok=False).done
    old = Receipt(
        service="billing",
        instance="b1",
        event_id=event.event_id,
        event_type="session.revoked",
        published_at_ns=T0,
        applied_at_ns=T0 + 4_000_000,
        partition=1,
        offset=4,
    )
    status = build_status(event.event_id, event, [old], fleet, T0 + S)
    verdict = judge(status, ["billing"], min_instances=1, silent_ok=False)
    assert verdict.done
    assert in_force(status, ["billing"], 1, []).latency_ms == 4.0


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_fleet_rejects_nonsense_bounds(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Fleet(silent_after=bad)
