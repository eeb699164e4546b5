"""The sensor's outbox: a bounded, durable FIFO in a SQLite file, with time passed in."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from officesensor.errors import StoreError
from officesensor.sensor.outbox import Outbox
from officesensor.sensor.publisher import (
    EXIT_DELIVERED,
    EXIT_LOST,
    EXIT_PENDING,
    PublisherStats,
    exit_code,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

OpenOutbox = Callable[..., Outbox]


@pytest.fixture
def open_outbox(tmp_path: Path) -> Iterator[OpenOutbox]:
    """Opens outboxes on one file; closes whatever the test left open."""
    opened: list[Outbox] = []

    def open_(max_messages: int = 1000, max_age: timedelta = 7 * DAY) -> Outbox:
        outbox = Outbox(tmp_path / "outbox.db", max_messages=max_messages, max_age=max_age)
        opened.append(outbox)
        return outbox

    yield open_
    for outbox in opened:
        outbox.close()


def payloads(outbox: Outbox) -> list[bytes]:
    return [m.payload for m in outbox.peek(10_000)]


def test_messages_come_back_in_the_order_they_were_added(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    first = outbox.add("office/metrics/Temperature", b"a", T0)
    rest = outbox.add_many([("office/metrics/Humidity", b"b"), ("office/weather", b"c")], T0)
    assert [first, *rest] == sorted([first, *rest])
    messages = outbox.peek(10)
    assert [(m.seq, m.topic, m.payload) for m in messages] == [
        (first, "office/metrics/Temperature", b"a"),
        (rest[0], "office/metrics/Humidity", b"b"),
        (rest[1], "office/weather", b"c"),
    ]
    assert all(m.created == T0 for m in messages)
    assert outbox.pending() == 3


def test_peek_pages_by_seq_and_removes_nothing(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    seqs = outbox.add_many([("t", bytes([i])) for i in range(5)], T0)
    assert [m.seq for m in outbox.peek(2)] == seqs[:2]
    assert [m.seq for m in outbox.peek(2, after_seq=seqs[1])] == seqs[2:4]
    assert outbox.peek(10, after_seq=seqs[-1]) == []
    assert outbox.pending() == 5


def test_remove_deletes_exactly_the_given_messages(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    seqs = outbox.add_many([("t", b"0"), ("t", b"1"), ("t", b"2"), ("t", b"3")], T0)
    assert outbox.remove(seqs[0], seqs[2]) == 2
    assert payloads(outbox) == [b"1", b"3"]
    assert outbox.remove(seqs[0], 999_999) == 0  # gone already, or never there
    assert outbox.remove() == 0
    assert outbox.pending() == 2
    assert outbox.dropped == 0  # delivered is not dropped


def test_messages_and_order_survive_close_and_reopen(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    outbox.add_many([("t", b"0"), ("t", b"1")], T0)
    outbox.close()
    again = open_outbox()
    assert again.pending() == 2
    again.add("t", b"2", T0)
    assert payloads(again) == [b"0", b"1", b"2"]


def test_a_seq_is_never_reused_even_after_the_outbox_emptied(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    seqs = outbox.add_many([("t", b"0"), ("t", b"1")], T0)
    outbox.remove(*seqs)
    outbox.close()
    again = open_outbox()
    assert again.pending() == 0
    assert again.add("t", b"2", T0) > max(seqs)


def test_beyond_max_messages_the_oldest_are_dropped_and_counted(
    open_outbox: OpenOutbox, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = open_outbox(max_messages=3)
    outbox.add_many([("t", b"0"), ("t", b"1")], T0)
    with caplog.at_level(logging.WARNING, logger="officesensor.sensor.outbox"):
        outbox.add_many([("t", b"2"), ("t", b"3"), ("t", b"4")], T0 + timedelta(seconds=1))
    assert payloads(outbox) == [b"2", b"3", b"4"]
    assert outbox.pending() == 3
    assert outbox.dropped == 2
    assert "dropped the 2 oldest" in caplog.text


def test_a_batch_larger_than_the_outbox_keeps_its_newest_messages(
    open_outbox: OpenOutbox,
) -> None:
    outbox = open_outbox(max_messages=2)
    outbox.add_many([("t", b"0"), ("t", b"1"), ("t", b"2")], T0)
    assert payloads(outbox) == [b"1", b"2"]
    assert outbox.dropped == 1


def test_messages_older_than_max_age_are_dropped_when_one_is_added(
    open_outbox: OpenOutbox, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = open_outbox(max_age=DAY)
    outbox.add("t", b"old", T0)
    outbox.add("t", b"newer", T0 + timedelta(hours=12))
    with caplog.at_level(logging.WARNING, logger="officesensor.sensor.outbox"):
        outbox.add("t", b"now", T0 + DAY + timedelta(seconds=1))
    assert payloads(outbox) == [b"newer", b"now"]
    assert outbox.dropped == 1
    assert "older than 1 day" in caplog.text


def test_drop_expired_drops_by_age_alone_and_keeps_what_is_young_enough(
    open_outbox: OpenOutbox,
) -> None:
    outbox = open_outbox(max_age=DAY)
    outbox.add("t", b"0", T0)
    outbox.add("t", b"1", T0 + timedelta(hours=1))
    assert outbox.drop_expired(T0 + DAY) == 0  # exactly max_age old: kept
    assert outbox.drop_expired(T0 + DAY + timedelta(minutes=30)) == 1
    assert payloads(outbox) == [b"1"]
    assert outbox.oldest() == T0 + timedelta(hours=1)
    assert outbox.drop_expired(T0 + 3 * DAY) == 1
    assert outbox.pending() == 0
    assert outbox.oldest() is None
    assert outbox.dropped == 2


def test_the_dropped_count_survives_reopening(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox(max_messages=1)
    outbox.add_many([("t", b"0"), ("t", b"1"), ("t", b"2")], T0)
    assert outbox.dropped == 2
    outbox.close()
    again = open_outbox(max_messages=1)
    assert again.dropped == 2
    again.add("t", b"3", T0)
    assert again.dropped == 3


def test_a_second_outbox_on_the_same_file_is_refused(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    outbox.add("t", b"0", T0)
    with pytest.raises(StoreError, match="in use by another process"):
        open_outbox()
    assert payloads(outbox) == [b"0"]


def test_the_file_is_in_wal_mode_and_gone_back_to_one_file_after_close(
    open_outbox: OpenOutbox, tmp_path: Path
) -> None:
    outbox = open_outbox()
    outbox.add("t", b"0", T0)
    outbox.close()
    header = (tmp_path / "outbox.db").read_bytes()[:20]
    assert header[18:20] == b"\x02\x02"  # file format 2: write-ahead log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_a_file_that_is_not_an_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE readings (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a sensor outbox"):
        Outbox(path, max_messages=10, max_age=DAY)


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "a" / "b" / "outbox.db", max_messages=10, max_age=DAY)
    outbox.close()
    assert (tmp_path / "a" / "b" / "outbox.db").is_file()


def test_a_naive_time_is_refused(open_outbox: OpenOutbox) -> None:
    outbox = open_outbox()
    with pytest.raises(ValueError, match="timezone-aware"):
        outbox.add("t", b"0", datetime(2024, 3, 1, 12, 0))
    assert outbox.pending() == 0


def stats(pending: int = 0, dropped: int = 0, refused: int = 0, failed: int = 0) -> PublisherStats:
    return PublisherStats(
        connected=False,
        written=10,
        published=10 - pending,
        pending=pending,
        dropped=5 + dropped,
        dropped_this_run=dropped,
        refused=refused,
        failed=failed,
    )


@pytest.mark.parametrize(
    ("run", "code"),
    [
        (stats(), EXIT_DELIVERED),
        (stats(pending=3), EXIT_PENDING),
        (stats(pending=3, dropped=1), EXIT_LOST),
        (stats(refused=1), EXIT_LOST),
        (stats(failed=1), EXIT_LOST),
    ],
)
def test_the_sensor_exit_code_says_whether_anything_was_lost_or_is_pending(
    run: PublisherStats, code: int
) -> None:
    assert exit_code(run) == code
