"""The alert state file (alerts/state.py) on a real SQLite file: keys, episodes, history,
acknowledgement, and the per-channel FIFO outbox with its counters."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from officesensor.alerts import state as state_module
from officesensor.alerts.engine import Engine, KeyState
from officesensor.alerts.rules import parse_rules
from officesensor.alerts.state import AlertState, AlertStateClosed, Outgoing
from officesensor.errors import StoreError

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RULES = parse_rules([{"name": "warm", "kind": "threshold", "above": 80.0, "cooldown": "0s"}])


@pytest.fixture
def state(tmp_path: Path):
    opened = AlertState(tmp_path / "alerts.db")
    yield opened
    opened.close()


def feed(state: AlertState, engine: Engine, values: list[float], sensor: str = "lab") -> datetime:
    now = T0
    for value in values:
        now += 15 * S
        made = engine.observe(sensor, "Temperature", value, now, False, now)
        owed = [(t, [Outgoing("mqtt", f"office/alerts/{sensor}/Temperature", b"{}")]) for t in made]
        state.record(owed, engine.take_dirty(), now)
    return now


def test_states_survive_a_reopen(tmp_path: Path):
    path = tmp_path / "alerts.db"
    first = AlertState(path)
    engine = Engine(RULES)
    feed(first, engine, [85.0])
    first.close()
    again = AlertState(path)
    try:
        loaded = again.load_states()
        assert list(loaded) == [("warm", "lab", "Temperature")]
        assert loaded[("warm", "lab", "Temperature")] == engine.state(
            ("warm", "lab", "Temperature")
        )
        assert isinstance(next(iter(loaded.values())), KeyState)
    finally:
        again.close()


def test_episodes_and_history(state: AlertState):
    engine = Engine(RULES)
    feed(state, engine, [85.0, 70.0, 86.0], sensor="lab")
    feed(state, engine, [90.0], sensor="attic")
    assert state.load_states().keys() == {
        ("warm", "lab", "Temperature"),
        ("warm", "attic", "Temperature"),
    }
    active = state.active()
    assert [(e.sensor, e.value) for e in active] == [("lab", 86.0), ("attic", 90.0)]
    events = state.events()
    assert [(e.sensor, e.state) for e in events] == [
        ("attic", "firing"), ("lab", "firing"), ("lab", "resolved"), ("lab", "firing")
    ]  # fmt: skip
    assert [e.seq for e in events] == sorted((e.seq for e in events), reverse=True)
    assert [e.state for e in state.events(sensor="lab", state="firing")] == ["firing", "firing"]
    assert state.events(metric="Humidity") == []
    assert len(state.events(before=events[1].seq)) == 2
    assert len(state.events(limit=1)) == 1
    resolved = state.episode(events[-1].id)
    assert resolved is not None
    assert resolved.resolved == T0 + 30 * S


def test_acknowledge_once(state: AlertState):
    engine = Engine(RULES)
    feed(state, engine, [85.0])
    (episode,) = state.active()
    acked = state.acknowledge(episode.id, T0 + 60 * S)
    assert acked is not None
    assert acked.acknowledged == T0 + 60 * S
    again = state.acknowledge(episode.id, T0 + 90 * S)
    assert again is not None
    assert again.acknowledged == T0 + 60 * S
    assert [e.state for e in state.events()] == ["acknowledged", "firing"]
    assert state.acknowledge("0000000000000000", T0) is None


def test_the_outbox_is_fifo_per_channel(state: AlertState):
    engine = Engine(RULES)
    now = feed(state, engine, [85.0, 70.0])
    (first,) = state.due(now)
    assert first.topic == "office/alerts/lab/Temperature"
    assert state.due(now) == [first]  # one head per channel
    state.retry(first, now + 10 * S)
    assert state.due(now) == []  # the head waits, and what follows waits behind it
    assert state.next_due() == now + 10 * S
    (retried,) = state.due(now + 10 * S)
    assert (retried.seq, retried.attempts) == (first.seq, 1)
    state.delivered(retried)
    (second,) = state.due(now)
    assert second.seq > first.seq
    state.dead(second)
    assert state.due(now) == []
    assert state.next_due() is None
    counts = state.counts()
    assert (counts.delivered, counts.retries, counts.dead_letters, counts.pending) == (
        {"mqtt": 1, "webhook": 0},
        {"mqtt": 1, "webhook": 0},
        {"mqtt": 1, "webhook": 0},
        {"mqtt": 0, "webhook": 0},
    )


def test_an_unconfigured_channel_is_dead_lettered(state: AlertState):
    t = Engine(RULES).observe("lab", "Temperature", 85.0, T0, False, T0)[0]
    state.record([(t, [Outgoing("webhook", "", b"{}"), Outgoing("webhook", "", b"{}")])], {}, T0)
    assert state.drop_channel("webhook") == 2
    assert state.counts().dead_letters["webhook"] == 2


def test_history_is_bounded(state: AlertState, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(state_module, "MAX_EVENTS", 10)
    engine = Engine(RULES)
    feed(state, engine, [85.0, 70.0] * 200)
    events = state.events(limit=1000)
    assert len(events) < 400
    assert events[0].seq == 400  # the newest stay


def test_a_second_process_cannot_open_the_same_file(state: AlertState):
    with pytest.raises(StoreError, match="in use by another process"):
        AlertState(state.path)


def test_a_foreign_database_is_refused(tmp_path: Path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (x)")
    conn.close()
    with pytest.raises(StoreError, match="not an alert state file"):
        AlertState(path)


def test_a_held_back_episode_is_notified_after_a_restart_once_the_cooldown_ends(tmp_path: Path):
    # The service stops during the cooldown with an episode held back, and starts again.
    rules = parse_rules([{"name": "warm", "kind": "threshold", "above": 80.0, "cooldown": "15m"}])
    path = tmp_path / "alerts.db"
    first = AlertState(path)
    now = feed(first, Engine(rules), [85.0, 70.0, 86.0])  # the third is held back
    (held,) = first.active()
    assert held.suppressed is True
    first.close()

    again = AlertState(path)
    try:
        engine = Engine(rules)
        assert engine.restore(again.load_states(), now) == []
        assert engine.tick(now + 14 * 60 * S) == []  # T0+30 s resolved + 15 min: not yet
        late = engine.tick(T0 + 30 * S + 15 * 60 * S)
        assert [(t.state, t.notify, t.id) for t in late] == [("firing", True, held.id)]
        again.record([(t, []) for t in late], engine.take_dirty(), late[0].at)
        (episode,) = again.active()
        assert (episode.id, episode.suppressed, episode.fired) == (held.id, False, held.fired)
        assert [(e.state, e.notified) for e in again.events(limit=2)] == [
            ("firing", True), ("firing", False)
        ]  # fmt: skip
        assert engine.tick(late[0].at + 60 * 60 * S) == []  # once
    finally:
        again.close()


def test_a_closed_state_file_answers_with_a_clear_error(tmp_path: Path):
    state = AlertState(tmp_path / "alerts.db")
    feed(state, Engine(RULES), [85.0])
    state.close()
    state.close()  # twice is harmless
    for read in (state.active, state.events, state.counts, state.load_states, state.next_due):
        with pytest.raises(AlertStateClosed, match="closed"):
            read()
    with pytest.raises(AlertStateClosed):
        state.acknowledge("0123456789abcdef", T0)
    with pytest.raises(AlertStateClosed):
        state.record([], {("warm", "lab", "Temperature"): None}, T0)
    assert issubclass(AlertStateClosed, StoreError)  # the alerts thread's retry catches it
