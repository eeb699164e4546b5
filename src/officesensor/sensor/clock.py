"""Clock sanity: never stamp a reading with a time the sensor's clock cannot vouch for.

A Raspberry Pi has no real-time clock. It boots with the time it saved at its last shutdown
(``fake-hwclock``) or 1 January 1970, and only NTP puts it right, seconds or hours later
(no network, no NTP). Readings stamped before that carry wrong times that no server can fix.

``ClockGate.ready(now)`` says whether readings may be stamped now:

- never while ``now`` is before ``CLOCK_FLOOR`` (a clock that was never set);
- with ``check="auto"``, also not until the system says NTP has synchronised the clock
  (``timedatectl show -p NTPSynchronized --value``). Where that cannot be asked (no systemd,
  a container) the floor alone decides. Once synchronised, the gate stays open: a later loss
  of NTP leaves a clock that was right and drifts slowly;
- ``check="floor"``: the floor alone; ``check="off"``: always ready.

The sampler asks before every reading and skips (and counts) readings while it is closed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)

#: Earlier than any time this package can run at (it was written in 2026): a clock showing a
#: time before it was never set, or restored from a stale saved time long ago.
CLOCK_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)

#: A check answers True (synchronised), False (not yet) or None (cannot tell).
SyncCheck = Callable[[], bool | None]


def timedatectl_synchronised(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> bool | None:
    """What systemd-timesyncd (or chrony, via timedated) says; None when it cannot be asked."""
    command = shutil.which("timedatectl")
    if command is None:
        return None
    try:
        result = run(
            [command, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    answer = result.stdout.strip()
    if result.returncode != 0 or answer not in ("yes", "no"):
        return None  # no systemd as PID 1, no D-Bus: cannot tell
    return answer == "yes"


class ClockGate:
    """Whether the clock may stamp readings; see the module docstring."""

    def __init__(
        self,
        check: str = "auto",
        *,
        synchronised: SyncCheck = timedatectl_synchronised,
        floor: datetime = CLOCK_FLOOR,
    ) -> None:
        if check not in ("auto", "floor", "off"):
            raise ValueError(f"check must be auto, floor or off, not {check!r}")
        self.check = check
        self.floor = floor
        self._synchronised = synchronised
        self._ntp_confirmed = check != "auto"
        self.closed_count = 0  # how many times ready() said no
        self._waiting = False

    def ready(self, now: datetime) -> bool:
        ok = self._decide(now)
        if ok:
            if self._waiting:
                log.info("sensor: the clock is synchronised (%s); taking readings", now.isoformat())
            self._waiting = False
            return True
        self.closed_count += 1
        if not self._waiting:
            self._waiting = True
            log.warning(
                "sensor: the clock (%s) is not synchronised yet; no readings until it is",
                now.isoformat(),
            )
        return False

    def _decide(self, now: datetime) -> bool:
        if self.check == "off":
            return True
        if now < self.floor:
            return False
        if not self._ntp_confirmed:
            answer = self._synchronised()
            if answer is False:
                return False
            self._ntp_confirmed = True  # True, or None: nobody to ask, the floor decides
        return True
