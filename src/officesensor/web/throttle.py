"""Failed sign-ins per client address, in memory: after a few, that address waits.

Pure and thread-safe; the caller passes ``now`` (monotonic seconds). Each address keeps the
times of its failures within the window; a success forgets them. At most ``max_clients``
addresses are tracked (the oldest is dropped beyond that), so a flood of addresses costs
bounded memory. Memory is per process: several instances each count on their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

MAX_FAILURES = 5
WINDOW_S = 300.0
MAX_CLIENTS = 10_000


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before trying again; 0 when it may try now."""
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[-self.max_failures] + self.window_s - now)

    def failure(self, client: str, now: float) -> None:
        with self._lock:
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.max_failures)
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            self._failures.move_to_end(client)
            times.append(now)

    def success(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times
