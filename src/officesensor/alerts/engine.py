"""Alert rule evaluation: one small state machine per (rule, sensor, metric). Pure.

Nothing here reads the clock or touches a file or a socket: the alert service
(``alerts/service.py``) passes ``now`` in, persists what ``take_dirty`` hands back, and
delivers the transitions marked ``notify``. So every rule below is tested in milliseconds.

A key moves ok -> pending (its condition holds, since t) -> firing (it held for ``for``)
-> ok again (resolved). A pending condition that stops holding goes back to ok (cancelled).

- threshold: on when value > above (or < below); once on, off only at value <= above -
  hysteresis (>= below + hysteresis). A Schmitt trigger: a value wobbling around the
  threshold neither fires again nor resolves.
- anomaly: on with a reading the live detector flagged; off after ``clear_after`` normal
  readings in a row.
- stale: on when a series has been silent for ``intervals`` x its cadence (the median of its
  recent reading gaps); off with its next reading. Judged by ``tick``.

Times are when the server got a reading (``now``), not the sensor's timestamp, so a sensor
clock that is off cannot make a series look stale; cadences come from the sensor's own
timestamps (their gaps), which a backlog delivered all at once cannot shrink.

One notification per firing episode: its firing and its resolution carry ``notify``. An
episode that fires within ``cooldown`` after a notified one resolved is held back: if it
resolves before the cooldown ends it is recorded but never notified (``suppressed``), nor is
its resolution; if it still fires when the cooldown ends, its firing is notified then (a late
firing transition, same episode id), and so is its resolution. The cooldown delays, it never
drops a lasting alert. It runs from the last notified resolution, so an alert that keeps
flapping is still heard once per cooldown.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from officesensor.alerts.rules import AlertRule
from officesensor.models import from_epoch_us, to_epoch_us

#: (rule name, sensor, metric)
Key = tuple[str, str, str]

OK, PENDING, FIRING = "ok", "pending", "firing"
#: States of transitions (and of history events): the two that are notified, and the others.
RESOLVED, CANCELLED = "resolved", "cancelled"
#: Reading gaps a series' cadence is the median of.
CADENCE_GAPS = 20


@dataclass(slots=True)
class KeyState:
    """Where one (rule, sensor, metric) stands. Kept only while not plain ok."""

    kind: str
    phase: str = OK
    since: datetime | None = None  # when the condition turned on (pending and firing)
    episode: str | None = None  # id of the current episode (from pending on)
    notified: bool = False  # the current episode's firing was notified
    side: str | None = None  # threshold: "above" or "below", while on
    normal_run: int = 0  # anomaly: normal readings in a row while on
    quiet_until: datetime | None = None  # cooldown: episodes firing before this are suppressed
    value: float | None = None  # the latest value judged (saved with the next transition)
    threshold: float | None = None

    def active(self) -> bool:
        return self.phase != OK

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "phase": self.phase,
            "since": _us(self.since),
            "episode": self.episode,
            "notified": self.notified,
            "side": self.side,
            "normal_run": self.normal_run,
            "quiet_until": _us(self.quiet_until),
            "value": self.value,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyState:
        return cls(
            kind=str(data["kind"]),
            phase=str(data["phase"]),
            since=_time(data.get("since")),
            episode=data.get("episode"),
            notified=bool(data.get("notified")),
            side=data.get("side"),
            normal_run=int(data.get("normal_run") or 0),
            quiet_until=_time(data.get("quiet_until")),
            value=data.get("value"),
            threshold=data.get("threshold"),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a key's state: an event in the history, and a notification if
    ``notify``. ``id`` names the episode: its firing and resolution share it."""

    rule: str
    kind: str
    severity: str
    sensor: str
    metric: str
    state: str  # pending | firing | resolved | cancelled
    id: str
    value: float | None
    threshold: float | None
    since: datetime
    at: datetime
    notify: bool
    suppressed: bool
    detail: str = ""


@dataclass(slots=True)
class SeriesClock:
    """When a series was last heard from, and its latest reading times (for its cadence)."""

    last_seen: datetime
    times: deque[datetime] = field(default_factory=lambda: deque(maxlen=CADENCE_GAPS + 1))

    def add(self, ts: datetime, now: datetime) -> None:
        if not self.times or ts > self.times[-1]:
            self.times.append(ts)
        self.last_seen = max(self.last_seen, now)

    def cadence_s(self) -> float | None:
        """The median of the recent gaps between readings; None before two readings."""
        gaps = [(b - a).total_seconds() for a, b in pairwise(self.times)]
        return statistics.median(gaps) if gaps else None


def episode_id(rule: str, sensor: str, metric: str, since: datetime) -> str:
    """A stable id: the same episode gets the same id in every run."""
    text = f"{rule}\0{sensor}\0{metric}\0{to_epoch_us(since)}"
    return hashlib.blake2s(text.encode(), digest_size=8).hexdigest()


def threshold_condition(
    rule: AlertRule, value: float, side: str | None
) -> tuple[bool, str | None, float | None]:
    """(on, side, threshold) for a reading; ``side`` is where the condition stood before
    (None when off): once on, it holds until the value is back by ``hysteresis``."""
    h = rule.hysteresis
    if rule.above is not None and (
        value > rule.above or (side == "above" and value > rule.above - h)
    ):
        return True, "above", rule.above
    if rule.below is not None and (
        value < rule.below or (side == "below" and value < rule.below + h)
    ):
        return True, "below", rule.below
    threshold = rule.below if side == "below" or rule.above is None else rule.above
    return False, None, threshold


class Engine:
    """Evaluates ``rules`` over readings (``observe``) and silence (``tick``)."""

    def __init__(self, rules: Sequence[AlertRule]) -> None:
        self.rules = tuple(rules)
        self._by_name = {rule.name: rule for rule in self.rules}
        self._states: dict[Key, KeyState] = {}
        self._dirty: set[Key] = set()
        self._matching: dict[tuple[str, str], tuple[AlertRule, ...]] = {}
        self._clocks: dict[tuple[str, str], SeriesClock] = {}
        self._offline: dict[str, datetime] = {}
        #: Restored pending keys whose condition no reading has confirmed since the restart:
        #: ``tick`` does not fire them on the strength of a reading from before the downtime.
        self._unconfirmed: set[Key] = set()

    # ------------------------------------------------------------------ state

    def restore(self, states: Mapping[Key, KeyState], now: datetime) -> list[Transition]:
        """Take up persisted states. Those of a rule that is gone (or changed kind) are
        closed: a firing one resolved, a pending one cancelled, neither notified."""
        closed: list[Transition] = []
        for key, state in states.items():
            rule = self._by_name.get(key[0])
            if rule is not None and rule.kind == state.kind:
                self._states[key] = state
                if state.phase == PENDING and state.kind != "stale":
                    self._unconfirmed.add(key)
                continue
            if state.active():
                gone = AlertRule(key[0], state.kind, severity="warning")
                event = RESOLVED if state.phase == FIRING else CANCELLED
                closed.append(
                    self._transition(
                        gone, key, state, event, now, notify=False, detail="rule removed"
                    )
                )
            self._dirty.add(key)  # forget it
        return closed

    def state(self, key: Key) -> KeyState | None:
        return self._states.get(key)

    def take_dirty(self) -> dict[Key, dict[str, Any] | None]:
        """The keys changed since the last call, as JSON (None: back to plain ok, forget it)."""
        changed = {key: self._json(key) for key in self._dirty}
        self._dirty.clear()
        return changed

    def _json(self, key: Key) -> dict[str, Any] | None:
        state = self._states.get(key)
        return None if state is None else state.to_json()

    # ------------------------------------------------------------------ series

    def rules_for(self, sensor: str, metric: str) -> tuple[AlertRule, ...]:
        found = self._matching.get((sensor, metric))
        if found is None:
            found = tuple(rule for rule in self.rules if rule.matches(sensor, metric))
            if len(self._matching) < 100_000:  # series are bounded by ingest anyway
                self._matching[(sensor, metric)] = found
        return found

    def watches_silence(self, sensor: str, metric: str) -> bool:
        return any(rule.kind == "stale" for rule in self.rules_for(sensor, metric))

    def seed(self, sensor: str, metric: str, times: Sequence[datetime], now: datetime) -> None:
        """Learn a series' cadence from its stored reading times (oldest first) at start.

        A series whose stale alert is active keeps its real last reading; any other is
        counted as heard from ``now`` (the start), so it gets a full allowance after a restart
        while the broker delivers what it kept meanwhile. A late seed (the store did not
        answer at start) only adds the stored times to what live readings taught since."""
        if not times or not self.watches_silence(sensor, metric):
            return
        clock = self._clocks.get((sensor, metric))
        if clock is not None:
            merged = sorted({*times, *clock.times})
            clock.times.clear()
            clock.times.extend(merged)  # the deque keeps the newest
            return
        active = any(
            (state := self._states.get((rule.name, sensor, metric))) is not None and state.active()
            for rule in self.rules_for(sensor, metric)
            if rule.kind == "stale"
        )
        clock = SeriesClock(times[-1] if active else max(times[-1], now))
        for ts in times:
            clock.add(ts, clock.last_seen)
        self._clocks[(sensor, metric)] = clock

    def cadence_s(self, sensor: str, metric: str) -> float | None:
        clock = self._clocks.get((sensor, metric))
        return None if clock is None else clock.cadence_s()

    def sensor_status(self, sensor: str, online: bool, now: datetime) -> None:
        """A sensor's own word (its status topic or last will): noted on stale alerts."""
        if online:
            self._offline.pop(sensor, None)
        else:
            self._offline.setdefault(sensor, now)

    # ------------------------------------------------------------------ evaluation

    def observe(
        self, sensor: str, metric: str, value: float, ts: datetime, anomaly: bool, now: datetime
    ) -> list[Transition]:
        """Judge one newly stored reading (in time order per series), received at ``now``."""
        rules = self.rules_for(sensor, metric)
        if not rules:
            return []
        silent_s: float | None = None
        if self.watches_silence(sensor, metric):
            clock = self._clocks.get((sensor, metric))
            if clock is None:
                clock = self._clocks[(sensor, metric)] = SeriesClock(now)
            silent_s = max(0.0, (now - clock.last_seen).total_seconds())
            clock.add(ts, now)
        out: list[Transition] = []
        for rule in rules:
            key = (rule.name, sensor, metric)
            self._unconfirmed.discard(key)
            state = self._states.get(key)
            if rule.kind == "threshold":
                side = state.side if state is not None and state.active() else None
                on, side, threshold = threshold_condition(rule, value, side)
                out += self._advance(rule, key, on, now, value, threshold, side=side)
            elif rule.kind == "anomaly":
                active = state is not None and state.active()
                run = 0 if anomaly or state is None else state.normal_run + 1
                on = anomaly or (active and run < rule.clear_after)
                out += self._advance(rule, key, on, now, value, None)
                current = self._states.get(key)
                if on and current is not None:
                    current.normal_run = run
                    self._dirty.add(key)
            elif state is not None and state.active():  # stale: the silence is over
                out += self._advance(rule, key, False, now, silent_s, state.threshold)
        return out

    def tick(self, now: datetime) -> list[Transition]:
        """Judge the passing of time: conditions held long enough fire, silent series go stale."""
        out: list[Transition] = []
        for key, state in list(self._states.items()):
            if not state.active() and (state.quiet_until is None or state.quiet_until <= now):
                del self._states[key]  # its cooldown is over
                self._dirty.add(key)
            elif _held_back(state, now):
                out += self._late_firing(self._by_name[key[0]], key, state, now)
            elif state.phase == PENDING and state.kind != "stale" and key not in self._unconfirmed:
                rule = self._by_name[key[0]]
                assert state.since is not None
                if now - state.since >= rule.for_:
                    out += self._advance(rule, key, True, now, state.value, state.threshold)
        for (sensor, metric), clock in self._clocks.items():
            cadence = clock.cadence_s()
            if cadence is None:
                continue
            silent_s = (now - clock.last_seen).total_seconds()
            for rule in self.rules_for(sensor, metric):
                if rule.kind != "stale":
                    continue
                key = (rule.name, sensor, metric)
                allowed_s = rule.intervals * cadence
                on = silent_s > allowed_s
                current = self._states.get(key)
                if on or (current is not None and current.active()):
                    out += self._advance(
                        rule, key, on, now, silent_s, allowed_s,
                        since=clock.last_seen + timedelta(seconds=allowed_s),
                        detail=self._offline_note(sensor),
                    )  # fmt: skip
        return out

    def _late_firing(
        self, rule: AlertRule, key: Key, state: KeyState, now: datetime
    ) -> list[Transition]:
        """Notify the firing of an episode the cooldown held back, now that it is over (and
        the episode still fires): its resolution will be notified too."""
        state.notified = True
        self._dirty.add(key)
        note = "fired during the cooldown; notified once it ended"
        if rule.kind == "stale" and (offline := self._offline_note(key[1])):
            note = f"{note}; {offline}"
        return [self._transition(rule, key, state, FIRING, now, notify=True, detail=note)]

    def _offline_note(self, sensor: str) -> str:
        since = self._offline.get(sensor)
        if since is None:
            return ""
        return f"the sensor reports itself offline since {since.isoformat()}"

    def _advance(
        self,
        rule: AlertRule,
        key: Key,
        on: bool,
        now: datetime,
        value: float | None,
        threshold: float | None,
        *,
        side: str | None = None,
        since: datetime | None = None,
        detail: str = "",
    ) -> list[Transition]:
        """Move a key by whether its condition holds now; the transitions that makes."""
        state = self._states.get(key)
        if state is None:
            if not on:
                return []
            state = self._states[key] = KeyState(rule.kind)
        # A held-back episode whose cooldown ended since the last tick: notified first (with
        # the last value that kept it firing), so a resolution cannot slip in and drop it.
        out = self._late_firing(rule, key, state, now) if _held_back(state, now) else []
        state.value, state.threshold = value, threshold
        if on:
            if side is not None and state.side != side:
                state.side = side
                self._dirty.add(key)
            if state.phase == OK:
                start = since or now
                state.phase, state.since = PENDING, start
                state.episode = episode_id(*key, start)
                if state.quiet_until is not None and state.quiet_until <= start:
                    state.quiet_until = None
                self._dirty.add(key)
                if rule.for_:
                    out.append(self._transition(rule, key, state, PENDING, now, detail=detail))
            assert state.since is not None
            if state.phase == PENDING and now - state.since >= rule.for_:
                quiet = state.quiet_until is not None and now < state.quiet_until
                state.phase, state.notified = FIRING, not quiet
                self._dirty.add(key)
                out.append(
                    self._transition(rule, key, state, FIRING, now, notify=not quiet, detail=detail)
                )
        elif state.active():
            if state.phase == PENDING:
                out.append(self._transition(rule, key, state, CANCELLED, now, detail=detail))
            else:
                notify = state.notified
                out.append(self._transition(rule, key, state, RESOLVED, now, notify, detail))
                if notify:
                    state.quiet_until = now + rule.cooldown
            state.phase, state.since, state.episode, state.notified = OK, None, None, False
            state.side, state.normal_run = None, 0
            self._dirty.add(key)
        if not state.active() and (state.quiet_until is None or state.quiet_until <= now):
            del self._states[key]
            self._dirty.add(key)
        return out

    def _transition(
        self,
        rule: AlertRule,
        key: Key,
        state: KeyState,
        event: str,
        now: datetime,
        notify: bool = False,
        detail: str = "",
    ) -> Transition:
        assert state.since is not None
        assert state.episode is not None
        return Transition(
            rule=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            sensor=key[1],
            metric=key[2],
            state=event,
            id=state.episode,
            value=state.value,
            threshold=state.threshold,
            since=state.since,
            at=now,
            notify=notify,
            suppressed=event in (FIRING, RESOLVED) and not state.notified,
            detail=detail,
        )


def _held_back(state: KeyState, now: datetime) -> bool:
    """Whether a key fires unnotified (the cooldown held it back) and the cooldown is over."""
    return (
        state.phase == FIRING
        and not state.notified
        and (state.quiet_until is None or state.quiet_until <= now)
    )


def _us(ts: datetime | None) -> int | None:
    return None if ts is None else to_epoch_us(ts)


def _time(us: Any) -> datetime | None:
    return None if us is None else from_epoch_us(int(us))
