"""Failed sign-ins per key, in memory: after a few, that key waits.

Pure and thread-safe; the caller passes ``now`` (monotonic seconds). Each key keeps the
times of its failures within the window; a success forgets them. At most ``max_clients``
keys are tracked (the oldest is dropped beyond that), so a flood of keys costs bounded
memory. Memory is per process: several instances each count on their own.

What a key is, is the caller's choice (web/auth.py): a password sign-in counts against the
client address *and* the name it tried (``PASSWORD_MAX_FAILURES``), so behind a proxy or a
NAT that many people share, one person's typos, or someone guessing Bob's password, never
lock Alice out. Token attempts (the sign-in form without a name, bearer headers) count
against the address alone, with the higher ``TOKEN_MAX_FAILURES``: there is one token, so
there is no name to tell attempts apart by.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: Failed password sign-ins per (client address, user name) within ``WINDOW_S``.
PASSWORD_MAX_FAILURES = 5
#: Failed token attempts (form or bearer header) per client address within ``WINDOW_S``.
TOKEN_MAX_FAILURES = 30
WINDOW_S = 300.0
MAX_CLIENTS = 10_000


class LoginThrottle(Generic[K]):
    def __init__(
        self,
        max_failures: int = PASSWORD_MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[K, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: K, now: float) -> float:
        """Seconds ``key`` must wait before trying again; 0 when it may try now."""
        with self._lock:
            times = self._recent(key, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[-self.max_failures] + self.window_s - now)

    def failure(self, key: K, now: float) -> None:
        with self._lock:
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.max_failures)
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            self._failures.move_to_end(key)
            times.append(now)

    def success(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: K, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
