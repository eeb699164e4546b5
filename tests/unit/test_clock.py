"""Clock sanity: no reading is stamped before the clock can be trusted."""

from __future__ import annotations

import logging
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from officesensor.sensor import clock
from officesensor.sensor.clock import CLOCK_FLOOR, ClockGate, timedatectl_synchronised
from officesensor.sensor.sources import SIMULATED_LIMITS, Measurement, Sampler, SkipReason

SET = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
NEVER_SET = datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)


class Answers:
    """A fake NTPSynchronized check answering from a script, counting the questions."""

    def __init__(self, *answers: bool | None) -> None:
        self.answers = list(answers)
        self.asked = 0

    def __call__(self) -> bool | None:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_auto_waits_for_ntp_then_stays_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="officesensor")
    check = Answers(False, False, False, True, False)
    gate = ClockGate("auto", synchronised=check)
    assert [gate.ready(SET) for _ in range(6)] == [False, False, False, True, True, True]
    assert check.asked == 4  # once synchronised, never asked again
    assert gate.closed_count == 3
    warnings = [r for r in caplog.records if "not synchronised yet" in r.getMessage()]
    assert len(warnings) == 1  # logged once, counted every time
    assert "the clock is synchronised" in caplog.text


def test_a_clock_before_the_floor_is_never_trusted_even_if_ntp_says_yes() -> None:
    gate = ClockGate("auto", synchronised=Answers(True))
    assert not gate.ready(NEVER_SET)
    assert not gate.ready(CLOCK_FLOOR - timedelta(seconds=1))
    assert gate.ready(CLOCK_FLOOR)


def test_without_timedatectl_the_floor_decides() -> None:
    gate = ClockGate("auto", synchronised=Answers(None))
    assert not gate.ready(NEVER_SET)
    assert gate.ready(SET)


def test_floor_ignores_ntp_and_off_trusts_anything() -> None:
    floor_only = ClockGate("floor", synchronised=Answers(False))
    assert floor_only.ready(SET)
    assert not floor_only.ready(NEVER_SET)
    assert ClockGate("off", synchronised=Answers(False)).ready(NEVER_SET)
    with pytest.raises(ValueError, match="auto, floor or off"):
        ClockGate("sometimes")


def test_the_floor_is_before_today_and_after_the_pi_epoch() -> None:
    assert datetime(2025, 1, 1, tzinfo=UTC) < CLOCK_FLOOR <= datetime.now(UTC)


def fake_run(stdout: str, returncode: int = 0) -> Any:
    calls: list[list[str]] = []

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode, stdout, "")

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("stdout", "returncode", "expected"),
    [("yes\n", 0, True), ("no\n", 0, False), ("", 1, None), ("maybe\n", 0, None)],
)
def test_timedatectl_answers(
    monkeypatch: pytest.MonkeyPatch, stdout: str, returncode: int, expected: bool | None
) -> None:
    monkeypatch.setattr(clock.shutil, "which", lambda _: "/usr/bin/timedatectl")
    run = fake_run(stdout, returncode)
    assert timedatectl_synchronised(run) is expected
    assert run.calls == [["/usr/bin/timedatectl", "show", "-p", "NTPSynchronized", "--value"]]


def test_timedatectl_missing_or_hanging_means_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock.shutil, "which", lambda _: None)
    assert timedatectl_synchronised(fake_run("yes\n")) is None
    monkeypatch.setattr(clock.shutil, "which", lambda _: "/usr/bin/timedatectl")

    def hangs(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(command, 5)

    assert timedatectl_synchronised(hangs) is None


class Device:
    name = "fake"
    limits = SIMULATED_LIMITS

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> Measurement:
        self.reads += 1
        return Measurement(21.0, 40.0, 1000.0)

    def close(self) -> None:
        pass


def test_no_reading_is_taken_or_stamped_while_the_clock_is_unsynchronised() -> None:
    device = Device()
    sampler = Sampler(
        device, interval_s=15.0, gate=ClockGate("auto", synchronised=Answers(False, False, True))
    )
    assert sampler.take(NEVER_SET) is None  # 1970: below the floor
    assert sampler.take(SET) is None  # NTP: no
    assert sampler.take(SET) is None  # NTP: no
    sample = sampler.take(SET)
    assert sample is not None
    assert sample.ts == SET
    assert device.reads == 1
    assert sampler.skipped.by_reason == {SkipReason.CLOCK_UNSYNCHRONISED: 3}
