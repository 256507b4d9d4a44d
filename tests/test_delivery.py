"""Delivery order, age-bounded retries, `Retry-After` bounds and crash recovery of the outbox.

The dispatcher runs against the real outbox tables (SQLite and PostgreSQL); the receiver is a
fake notifier and time is an injected clock, so "down for ten minutes" takes no ten minutes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cml_monitor.alerts.dispatcher import NotificationDispatcher
from cml_monitor.alerts.notifiers import Delivery, OutgoingNotification
from cml_monitor.alerts.notifiers.base import retry_after_seconds
from cml_monitor.alerts.outbox import Channel, in_order, outbox_messages
from cml_monitor.storage import create_engine, migrate
from cml_monitor.storage.alerts import AlertRepository

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
HOOK = Channel("webhook", "http://127.0.0.1:9/hook")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Receiver:
    """A webhook receiver that is up or down and remembers what it accepted, in order."""

    channel = "webhook"

    def __init__(self) -> None:
        self.up = True
        self.answer = Delivery(ok=False, retryable=True, error="HTTP 503")
        self.accepted: list[tuple[str, str]] = []
        self.attempts: list[str] = []

    async def send(self, notification: OutgoingNotification) -> Delivery:
        self.attempts.append(notification.payload["n"])
        if not self.up:
            return self.answer
        self.accepted.append((notification.id, notification.payload["n"]))
        return Delivery(ok=True, status=200)


@pytest.fixture
async def outbox(database_url: str) -> AsyncIterator[AlertRepository]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield AlertRepository(engine)
    await engine.dispose()


async def queue(store: AlertRepository, worker_id: str, names: list[str], at: datetime) -> None:
    """Rows written in one transaction, in the order the names happened."""
    messages = []
    for name in names:
        messages += outbox_messages(
            {"type": "alert.firing", "n": name}, [HOOK], alert_id=None, worker_id=worker_id, now=at
        )
    await store.apply([], [], [], in_order(messages))


def dispatcher(
    store: AlertRepository, receiver: Receiver, clock: Clock, **options: Any
) -> NotificationDispatcher:
    options.setdefault("retry_max", 30.0)
    return NotificationDispatcher(store, {"webhook": receiver}, clock=clock, **options)


async def run_for(dispatch: NotificationDispatcher, clock: Clock, seconds: float, step: float = 5.0) -> None:
    for _ in range(int(seconds / step)):
        await dispatch.dispatch_due()
        clock.advance(step)


WORKER_A = "aaaaaaaa-0000-0000-0000-000000000001"
WORKER_B = "bbbbbbbb-0000-0000-0000-000000000002"


async def test_a_receiver_down_ten_minutes_gets_everything_in_order_once(outbox: AlertRepository) -> None:
    clock, receiver = Clock(), Receiver()
    dispatch = dispatcher(outbox, receiver, clock)
    receiver.up = False
    await queue(outbox, WORKER_A, ["a:status running->stopping", "a:unexpected_stop firing"], clock())
    await queue(outbox, WORKER_B, ["b:cpu firing"], clock())
    clock.advance(1)
    await queue(outbox, WORKER_A, ["a:unexpected_stop resolved"], clock())
    await run_for(dispatch, clock, 600)
    # Only the head of each queue was tried: nothing behind a failing message overtook it.
    assert set(receiver.attempts) == {"a:status running->stopping", "b:cpu firing"}
    assert await outbox.list_notifications(state="failed") == []
    receiver.up = True
    await run_for(dispatch, clock, 400)
    names = [name for _, name in receiver.accepted]
    assert [n for n in names if n.startswith("a:")] == [
        "a:status running->stopping",
        "a:unexpected_stop firing",
        "a:unexpected_stop resolved",
    ]
    assert sorted(names) == sorted(set(names)) and len(names) == 4  # nothing twice, nothing lost
    assert len(await outbox.list_notifications(state="sent")) == 4


async def test_one_workers_blocked_queue_does_not_hold_up_another(outbox: AlertRepository) -> None:
    clock = Clock()

    class Picky(Receiver):
        async def send(self, notification: OutgoingNotification) -> Delivery:
            if notification.payload["n"].startswith("a:"):
                self.attempts.append(notification.payload["n"])
                return self.answer
            return await super().send(notification)

    receiver = Picky()
    await queue(outbox, WORKER_A, ["a:1", "a:2"], clock())
    await queue(outbox, WORKER_B, ["b:1", "b:2"], clock())
    await run_for(dispatcher(outbox, receiver, clock), clock, 20)
    assert [name for _, name in receiver.accepted] == ["b:1", "b:2"]
    assert {name for name in receiver.attempts if name.startswith("a:")} == {"a:1"}


async def test_a_message_past_the_maximum_age_is_dead_lettered_not_retried_for_ever(
    outbox: AlertRepository,
) -> None:
    clock, receiver = Clock(), Receiver()
    receiver.up = False
    await queue(outbox, WORKER_A, ["a:old", "a:next"], clock())
    await run_for(dispatcher(outbox, receiver, clock, max_age=3600), clock, 4000, step=60)
    failed = await outbox.list_notifications(state="failed")
    assert {row["payload"] for row in failed} == {
        '{"n":"a:old","type":"alert.firing"}',
        '{"n":"a:next","type":"alert.firing"}',
    }


@pytest.mark.parametrize(
    ("header", "expected_delay"),
    [
        ("0", 1.0),  # never hammer
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),  # a past date
        ("99999999999", 30.0),  # the year 5195: capped at the retry maximum
        ("999999999999", 30.0),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),  # unreadable: ordinary backoff
        ("inf", None),
        ("7", 7.0),
    ],
)
async def test_retry_after_is_bounded(
    outbox: AlertRepository, header: str, expected_delay: float | None
) -> None:
    clock, receiver = Clock(), Receiver()
    receiver.up = False
    receiver.answer = Delivery(
        ok=False, retryable=True, retry_after=retry_after_seconds(header), error="HTTP 429"
    )
    await queue(outbox, WORKER_A, ["a:1"], clock())
    await dispatcher(outbox, receiver, clock, retry_base=2.0).dispatch_due()
    (row,) = await outbox.list_notifications(state="pending")
    delay = (row["next_attempt_at"] - clock()).total_seconds()
    if expected_delay is None:
        assert 1.0 <= delay <= 2.0  # first backoff step: base 2 s with equal jitter
    else:
        assert delay == pytest.approx(expected_delay, abs=0.01)


async def test_a_row_claimed_by_a_dispatcher_that_died_is_resent_after_a_short_lease(
    outbox: AlertRepository,
) -> None:
    clock = Clock()
    await queue(outbox, WORKER_A, ["a:1"], clock())
    (claimed,) = await outbox.claim_due(clock(), clock() + timedelta(seconds=15))  # then "kill -9"
    receiver = Receiver()
    dispatch = dispatcher(outbox, receiver, clock, delivery_timeout=10.0)
    clock.advance(10)
    assert await dispatch.dispatch_due() == 0  # still leased
    clock.advance(6)
    assert await dispatch.dispatch_due() == 1
    assert receiver.accepted == [(claimed["id"], "a:1")]  # the same delivery id
