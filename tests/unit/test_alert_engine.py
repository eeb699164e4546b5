"""The alert state machine (alerts/engine.py), driven with an injected clock: every transition,
the hysteresis edges, for, cooldown, de-duplication, stale series with a learned cadence, and
a restart from persisted state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from officesensor.alerts.engine import (
    Engine,
    KeyState,
    Transition,
    episode_id,
    threshold_condition,
)
from officesensor.alerts.rules import AlertRule, parse_rules

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def rule(**changes: object) -> AlertRule:
    table: dict[str, object] = {"name": "warm", "kind": "threshold", "above": 80.0}
    table.update(changes)
    return parse_rules([{k: v for k, v in table.items() if v is not None}])[0]


class Clocked:
    """An engine fed readings of one series at an explicit clock."""

    def __init__(self, *rules: AlertRule, sensor: str = "lab", metric: str = "Temperature"):
        self.engine = Engine(rules)
        self.sensor, self.metric = sensor, metric
        self.now = T0
        self.events: list[Transition] = []

    def read(self, value: float, anomaly: bool = False, after: timedelta = 15 * S) -> list[str]:
        self.now += after
        found = self.engine.observe(self.sensor, self.metric, value, self.now, anomaly, self.now)
        self.events += found
        return [t.state for t in found]

    def tick(self, after: timedelta) -> list[str]:
        self.now += after
        found = self.engine.tick(self.now)
        self.events += found
        return [t.state for t in found]

    def notified(self) -> list[str]:
        return [t.state for t in self.events if t.notify]


# ----------------------------------------------------------------------------- threshold


def test_threshold_fires_once_above_and_resolves_once_back():
    run = Clocked(rule(hysteresis=2.0))
    assert run.read(79.0) == []
    assert run.read(81.0) == ["firing"]
    assert [run.read(v) for v in (82.0, 85.0, 81.0)] == [[], [], []]  # dedupe
    assert run.read(77.0) == ["resolved"]
    firing, resolved = run.events
    assert (firing.notify, resolved.notify) == (True, True)
    assert firing.id == resolved.id == episode_id("warm", "lab", "Temperature", firing.since)
    assert (firing.value, firing.threshold, firing.severity, firing.kind) == (
        81.0, 80.0, "warning", "threshold"
    )  # fmt: skip
    assert resolved.value == 77.0
    assert resolved.since == firing.since == firing.at


@pytest.mark.parametrize(
    ("value", "fires"), [(80.0, False), (80.0001, True), (79.9, False), (1e9, True)]
)
def test_threshold_fires_only_strictly_above(value, fires):
    run = Clocked(rule())
    assert run.read(value) == (["firing"] if fires else [])


@pytest.mark.parametrize(
    ("value", "resolves"), [(78.0001, False), (78.0, True), (77.0, True), (80.0, False)]
)
def test_threshold_resolves_only_at_above_minus_hysteresis(value, resolves):
    run = Clocked(rule(hysteresis=2.0))
    run.read(85.0)
    assert run.read(value) == (["resolved"] if resolves else [])


@pytest.mark.parametrize(
    ("value", "resolves"), [(61.9999, False), (62.0, True), (70.0, True), (55.0, False)]
)
def test_below_threshold_mirrors_above(value, resolves):
    run = Clocked(rule(above=None, below=60.0, hysteresis=2.0))
    assert run.read(60.0) == []
    assert run.read(59.5) == ["firing"]
    assert run.events[0].threshold == 60.0
    assert run.read(value) == (["resolved"] if resolves else [])


def test_without_hysteresis_it_resolves_at_the_threshold():
    run = Clocked(rule())
    run.read(81.0)
    assert run.read(80.0) == ["resolved"]


def test_flapping_within_the_hysteresis_band_sends_nothing_more():
    run = Clocked(rule(hysteresis=2.0))
    for value in (81.0, 79.0, 80.5, 78.5, 81.2, 78.1, 80.01, 79.99):
        run.read(value)
    assert run.notified() == ["firing"]
    run.read(78.0)
    assert run.notified() == ["firing", "resolved"]


def test_a_rule_with_both_sides_reports_the_side_that_fired():
    run = Clocked(rule(above=80.0, below=60.0, hysteresis=1.0))
    run.read(59.0)
    run.read(60.5)  # still within below + hysteresis
    assert run.read(61.0) == ["resolved"]
    run.read(81.0)
    assert [(t.state, t.threshold) for t in run.events] == [
        ("firing", 60.0), ("resolved", 60.0), ("firing", 80.0)
    ]  # fmt: skip


def test_threshold_condition_keeps_its_side_until_back_by_hysteresis():
    both = rule(above=80.0, below=60.0, hysteresis=1.0)
    assert threshold_condition(both, 79.5, "above") == (True, "above", 80.0)
    assert threshold_condition(both, 79.5, None) == (False, None, 80.0)
    assert threshold_condition(both, 60.5, "below") == (True, "below", 60.0)
    assert threshold_condition(both, 61.0, "below") == (False, None, 60.0)


def test_other_series_and_rules_for_other_series_are_left_alone():
    run = Clocked(rule(sensor="office-*", metric="humidity"))
    assert run.read(99.0) == []
    engine = run.engine
    assert engine.observe("office-2", "Humidity", 99.0, T0, False, T0)[0].state == "firing"
    assert engine.observe("Office-3", "HUMIDITY", 99.0, T0, False, T0)[0].state == "firing"
    assert engine.observe("lab-office-2", "Humidity", 99.0, T0, False, T0) == []


# ----------------------------------------------------------------------------- for


def test_for_makes_it_pending_first_and_fires_on_a_reading_once_held():
    run = Clocked(rule(**{"for": "1m"}))
    assert run.read(81.0) == ["pending"]
    start = run.now
    assert run.read(81.0, after=30 * S) == []
    assert run.read(81.0, after=30 * S) == ["firing"]
    firing = run.events[-1]
    assert (firing.since, firing.at, firing.id) == (start, start + M, run.events[0].id)
    assert [t.notify for t in run.events] == [False, True]


def test_for_fires_on_a_tick_when_no_reading_comes():
    run = Clocked(rule(**{"for": "1m"}))
    run.read(81.0)
    assert run.tick(59 * S) == []
    assert run.tick(1 * S) == ["firing"]
    assert run.events[-1].value == 81.0
    assert run.tick(10 * M) == []


def test_a_pending_condition_that_stops_holding_is_cancelled_silently():
    run = Clocked(rule(hysteresis=1.0, **{"for": "5m"}))
    run.read(81.0)
    assert run.read(79.5) == []  # inside the band: still holding
    assert run.read(79.0) == ["cancelled"]
    assert run.tick(10 * M) == []
    assert run.notified() == []
    assert run.engine.take_dirty() == {("warm", "lab", "Temperature"): None}


def test_pending_again_starts_a_new_episode_with_its_own_id():
    run = Clocked(rule(**{"for": "5m"}))
    run.read(81.0)
    run.read(79.0)
    run.read(81.0)
    first, _cancelled, second = run.events
    assert first.id != second.id


# ----------------------------------------------------------------------------- cooldown


def test_an_episode_within_the_cooldown_is_recorded_but_not_notified():
    run = Clocked(rule(cooldown="15m"))
    run.read(81.0)
    run.read(79.0)  # resolved at T
    resolved_at = run.now
    run.read(81.0, after=5 * M)
    run.read(79.0)
    assert [(t.state, t.notify, t.suppressed) for t in run.events] == [
        ("firing", True, False),
        ("resolved", True, False),
        ("firing", False, True),
        ("resolved", False, True),
    ]
    # The cooldown runs from the last notified resolution, not the suppressed one's.
    run.now = resolved_at + 15 * M - 15 * S
    assert run.read(81.0) == ["firing"]
    assert run.events[-1].notify is True


def test_an_episode_still_firing_when_the_cooldown_ends_is_notified_then():
    # The radiator left on: it goes on 5 minutes after the last alert resolved, and stays on.
    run = Clocked(rule(cooldown="15m"))
    run.read(81.0)
    run.read(79.0)
    resolved_at = run.now
    assert run.read(81.0, after=5 * M) == ["firing"]
    held = run.events[-1]
    assert (held.notify, held.suppressed) == (False, True)
    run.now = resolved_at + 15 * M - 2 * S
    assert run.tick(S) == []  # the cooldown is not over yet
    assert run.tick(S) == ["firing"]  # now it is: the firing is notified, late
    late = run.events[-1]
    assert (late.notify, late.suppressed, late.id, late.since) == (True, False, held.id, held.since)
    assert late.at == resolved_at + 15 * M
    assert late.value == 81.0
    assert "cooldown" in late.detail
    assert run.tick(10 * M) == []  # once
    assert run.read(82.0) == []
    assert run.read(79.0) == ["resolved"]
    assert (run.events[-1].notify, run.events[-1].suppressed) == (True, False)
    assert run.notified() == ["firing", "resolved", "firing", "resolved"]


def test_an_episode_over_within_the_cooldown_stays_quiet_for_good():
    run = Clocked(rule(cooldown="15m"))
    run.read(81.0)
    run.read(79.0)
    run.read(81.0, after=5 * M)
    run.read(79.0, after=5 * M)
    assert run.tick(10 * M) == []
    assert run.tick(24 * 60 * M) == []
    assert run.notified() == ["firing", "resolved"]
    assert [t.suppressed for t in run.events[2:]] == [True, True]
    assert run.engine.state(("warm", "lab", "Temperature")) is None  # forgotten


def test_a_held_back_episode_resolving_after_the_cooldown_is_notified_before_resolving():
    # No tick ran between the end of the cooldown and the resolving reading: it is not lost.
    run = Clocked(rule(cooldown="15m"))
    run.read(81.0)
    run.read(79.0)
    run.read(81.0, after=5 * M)
    assert run.read(79.0, after=11 * M) == ["firing", "resolved"]
    late, resolved = run.events[-2:]
    assert (late.notify, late.value, resolved.notify, resolved.value) == (True, 81.0, True, 79.0)
    assert late.id == resolved.id


def test_a_held_back_stale_alert_is_notified_when_the_cooldown_ends():
    run = seeded(stale_rule(cooldown="10m"), gaps=[15.0] * 10)
    assert run.tick(61 * S) == ["firing"]
    assert run.read(70.0, after=S) == ["resolved"]
    assert run.tick(2 * M) == ["firing"]  # silent again: within the cooldown, held back
    assert run.events[-1].notify is False
    assert run.tick(8 * M) == ["firing"]
    assert run.notified() == ["firing", "resolved", "firing"]
    assert run.read(70.0, after=S) == ["resolved"]
    assert run.notified()[-1] == "resolved"


def test_cooldown_zero_notifies_every_episode():
    run = Clocked(rule(cooldown="0s"))
    for value in (81.0, 79.0, 81.0, 79.0):
        run.read(value)
    assert run.notified() == ["firing", "resolved", "firing", "resolved"]


def test_the_cooldown_is_forgotten_once_over():
    run = Clocked(rule(cooldown="10m"))
    run.read(81.0)
    run.read(79.0)
    key = ("warm", "lab", "Temperature")
    assert run.engine.take_dirty()[key] is not None  # kept: the cooldown runs
    assert run.engine.state(key) is not None
    run.tick(11 * M)
    assert run.engine.take_dirty() == {key: None}
    assert run.engine.state(key) is None


# ----------------------------------------------------------------------------- anomaly


def anomaly_rule(**changes: object) -> AlertRule:
    return parse_rules([{"name": "odd", "kind": "anomaly", **changes}])[0]


def test_anomaly_fires_on_a_flagged_reading_and_resolves_after_clear_after_normal_ones():
    run = Clocked(anomaly_rule(clear_after=3))
    assert run.read(70.0) == []
    assert run.read(75.0, anomaly=True) == ["firing"]
    assert run.read(70.0) == []
    assert run.read(70.1) == []
    assert run.read(74.0, anomaly=True) == []  # a flagged one starts the count again
    assert [run.read(70.0) for _ in range(3)] == [[], [], ["resolved"]]
    assert run.notified() == ["firing", "resolved"]
    assert run.events[0].threshold is None


def test_anomaly_with_clear_after_one_resolves_on_the_next_normal_reading():
    run = Clocked(anomaly_rule())
    run.read(75.0, anomaly=True)
    assert run.read(70.0) == ["resolved"]


def test_anomaly_with_for_needs_the_episode_to_last():
    run = Clocked(anomaly_rule(clear_after=2, **{"for": "1m"}))
    assert run.read(75.0, anomaly=True) == ["pending"]
    assert run.read(70.0) == []
    assert run.read(70.0) == ["cancelled"]  # two normal readings: over before it fired
    run.read(75.0, anomaly=True)
    run.read(75.0, anomaly=True, after=30 * S)
    assert run.read(75.0, anomaly=True, after=30 * S) == ["firing"]


# ----------------------------------------------------------------------------- stale


def stale_rule(**changes: object) -> AlertRule:
    return parse_rules([{"name": "quiet", "kind": "stale", "intervals": 4, **changes}])[0]


def seeded(
    *rules: AlertRule, gaps: list[float], now: datetime = T0, active: bool = False
) -> Clocked:
    run = Clocked(*rules)
    times = [T0 - timedelta(seconds=sum(gaps))]
    for gap in gaps:
        times.append(times[-1] + timedelta(seconds=gap))
    run.now = now
    run.engine.seed("lab", "Temperature", times, now)
    return run


def test_stale_fires_after_intervals_times_the_learned_cadence():
    run = seeded(stale_rule(), gaps=[15.0] * 10)
    assert run.engine.cadence_s("lab", "Temperature") == 15.0
    assert run.tick(60 * S) == []  # silent exactly 4 x 15 s: not yet
    assert run.tick(1 * S) == ["firing"]
    firing = run.events[0]
    assert (firing.since, firing.value, firing.threshold) == (T0 + 60 * S, 61.0, 60.0)
    assert run.tick(10 * M) == []  # once per episode
    assert run.read(70.0, after=5 * S) == ["resolved"]
    assert run.events[-1].value == 666.0  # how long it was silent
    assert run.notified() == ["firing", "resolved"]


def test_the_cadence_is_the_median_gap_so_an_outage_does_not_stretch_it():
    run = seeded(stale_rule(), gaps=[15.0, 15.0, 3600.0, 15.0, 14.0, 16.0, 15.0])
    assert run.engine.cadence_s("lab", "Temperature") == 15.0


def test_the_cadence_follows_recent_readings_only():
    run = seeded(stale_rule(), gaps=[60.0] * 30)
    for _ in range(25):
        run.read(70.0, after=5 * S)
    assert run.engine.cadence_s("lab", "Temperature") == 5.0
    assert run.tick(21 * S) == ["firing"]


def test_a_cadence_is_learned_from_readings_without_any_history():
    run = Clocked(stale_rule(intervals=3))
    run.read(70.0)
    assert run.tick(10 * M) == []  # one reading: no cadence yet, no judgement
    run.read(70.0, after=10 * S)
    assert run.engine.cadence_s("lab", "Temperature") == 610.0
    run.read(70.0, after=10 * S)
    run.read(70.0, after=10 * S)
    assert run.engine.cadence_s("lab", "Temperature") == 10.0
    assert run.tick(30 * S) == []
    assert run.tick(1 * S) == ["firing"]


def test_after_a_start_a_series_gets_a_full_allowance():
    # The store's latest reading is an hour old (the service was down; the broker holds the
    # backlog): counted from now, not from then.
    run = seeded(stale_rule(), gaps=[15.0] * 10, now=T0 + timedelta(hours=1))
    assert run.tick(59 * S) == []
    assert run.read(70.0, after=1 * S) == []


def test_stale_with_for_waits_that_much_longer():
    run = seeded(stale_rule(**{"for": "2m"}), gaps=[15.0] * 10)
    assert run.tick(61 * S) == ["pending"]
    assert run.events[0].since == T0 + 60 * S
    assert run.tick(118 * S) == []
    assert run.tick(1 * S) == ["firing"]


def test_a_stale_alert_notes_a_sensor_that_says_it_is_offline():
    run = seeded(stale_rule(), gaps=[15.0] * 10)
    run.engine.sensor_status("lab", online=False, now=T0 + 5 * S)
    run.tick(61 * S)
    assert "offline since" in run.events[0].detail
    run.engine.sensor_status("lab", online=True, now=T0 + 70 * S)


def test_a_late_seed_adds_the_stored_history_to_what_live_readings_taught():
    run = Clocked(stale_rule())
    run.read(70.0, after=S)  # live readings first: one, no cadence yet
    assert run.engine.cadence_s("lab", "Temperature") is None
    stored = [run.now - timedelta(seconds=15 * i) for i in range(10, 0, -1)]
    run.engine.seed("lab", "Temperature", stored, T0)
    assert run.engine.cadence_s("lab", "Temperature") == 15.0
    assert run.tick(60 * S) == []  # still counted from the live reading
    assert run.tick(S) == ["firing"]


def test_a_series_no_stale_rule_watches_has_no_clock():
    run = Clocked(rule())
    run.engine.seed("lab", "Temperature", [T0, T0 + S], T0)
    run.read(70.0)
    assert run.engine.cadence_s("lab", "Temperature") is None


# ----------------------------------------------------------------------------- restart


def restarted(run: Clocked, *rules: AlertRule) -> Clocked:
    """A new engine from what the old one handed to be persisted, as the service stores it."""
    saved: dict[tuple[str, str, str], dict[str, object]] = {}
    for key, data in run.engine.take_dirty().items():
        if data is None:
            saved.pop(key, None)
        else:
            saved[key] = data
    again = Clocked(*(rules or run.engine.rules))
    again.now = run.now
    closed = again.engine.restore(
        {key: KeyState.from_json(data) for key, data in saved.items()}, run.now
    )
    again.events += closed
    return again


def test_a_restart_while_firing_neither_notifies_again_nor_forgets_to_resolve():
    run = Clocked(rule(hysteresis=1.0))
    run.read(81.0)
    fired = run.events[0]
    again = restarted(run)
    assert again.read(82.0) == []
    assert again.read(79.5) == []  # the hysteresis side survived too
    assert again.read(78.0) == ["resolved"]
    assert again.events[0].id == fired.id
    assert again.events[0].notify is True
    assert again.events[0].since == fired.since


def test_a_restart_keeps_pending_since_and_cooldowns():
    run = Clocked(rule(cooldown="15m", **{"for": "2m"}))
    run.read(81.0)
    again = restarted(run)
    assert again.read(81.0, after=100 * S) == []  # confirmed, 100 s into its 2 min
    assert again.tick(19 * S) == []
    assert again.tick(1 * S) == ["firing"]
    assert again.events[-1].since == run.events[0].since
    again.read(79.0)
    third = restarted(again)
    third.read(81.0, after=M)
    assert third.tick(3 * M) == ["firing"]
    assert third.events[-1].suppressed is True


def test_a_restart_within_the_cooldown_still_notifies_a_held_back_episode_once_over():
    run = Clocked(rule(cooldown="15m"))
    run.read(81.0)
    run.read(79.0)
    resolved_at = run.now
    run.read(81.0, after=5 * M)  # held back
    again = restarted(run)
    again.now = resolved_at + 15 * M - S
    assert again.tick(S) == ["firing"]
    assert again.events[-1].id == run.events[-1].id
    assert again.events[-1].notify is True
    third = restarted(again)  # notified: a later restart does not notify it again
    assert third.tick(M) == []
    assert third.read(79.0) == ["resolved"]
    assert third.events[-1].notify is True


def test_after_a_restart_a_pending_condition_fires_only_once_a_reading_confirms_it():
    for value, expected in ((81.0, ["firing"]), (70.0, ["cancelled"])):
        run = Clocked(rule(**{"for": "2m"}))
        run.read(81.0)
        again = restarted(run)
        assert again.tick(10 * M) == []  # the downtime alone proves nothing
        assert again.read(value) == expected
        assert again.events[-1].since == run.events[0].since


def test_a_restart_keeps_a_stale_alert_until_readings_come_back():
    run = seeded(stale_rule(), gaps=[15.0] * 10)
    run.tick(5 * M)
    again = restarted(run)
    times = [T0 - timedelta(seconds=15 * (10 - i)) for i in range(11)]
    again.engine.seed("lab", "Temperature", times, again.now)  # the store's, at start
    assert again.tick(S) == []
    assert again.read(70.0) == ["resolved"]
    assert again.events[-1].notify is True


def test_a_restart_without_the_rule_closes_its_alert_silently():
    run = Clocked(rule())
    run.read(81.0)
    again = restarted(run, anomaly_rule())
    (closed,) = again.events
    assert (closed.state, closed.notify, closed.detail) == ("resolved", False, "rule removed")
    assert again.engine.take_dirty() == {("warm", "lab", "Temperature"): None}


def test_states_round_trip_through_json():
    state = KeyState("threshold", "firing", T0, "abc", True, "above", 2, T0 + M, 81.5, 80.0)
    assert KeyState.from_json(state.to_json()) == state


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"above": 80, "below": 60, "hysteresis": 20}, "hysteresis must be less"),
        ({"above": 80, "below": 80}, "below must be less than above"),
        ({"above": 80, "hysteresis": -1}, "hysteresis must be at least 0"),
        ({"above": 80, "intervals": 3}, "'intervals' does not apply"),
    ],
)
def test_bad_threshold_rules_are_refused(table, message):
    with pytest.raises(ValueError, match=message):
        parse_rules([{"name": "warm", "kind": "threshold", **table}])
