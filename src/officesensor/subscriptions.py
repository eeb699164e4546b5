"""Pure rules about ingest's MQTT subscriptions: which ones it makes, which deliveries it
stores, and how to recognise a client id that another connection uses too.

Several instances (``mqtt.share_group``): each message must be *stored* by one instance, but
*shown live* by all. So ingest subscribes twice (MQTT 5):

- ``$share/<group>/<topic>`` at QoS 1, subscription identifier ``STORE_ID``: the broker hands
  each message to one member of the group; that instance stores it, then acknowledges it;
- ``<topic>`` at QoS 0, identifier ``LIVE_ID``: every instance gets every message for its
  live analytics and dashboard. QoS 0: nothing is queued for an instance that is away, and
  nothing needs acknowledging.

A message can arrive on both (once with both identifiers, or twice); live analytics skip a
reading they have seen (``LiveAnalytics`` feeds a series only readings newer than its last),
so nothing is counted twice. Without subscription identifiers (MQTT 3.1.1, or a broker that
says it sends none, such as AWS IoT Core) the two deliveries cannot be told apart: ingest then
makes only the shared subscription on its main connection, so storing stays shared and exact,
and opens a second connection (``<client id>-live``, no session) with the plain QoS 0
subscription for live updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Subscription identifiers (MQTT 5) of the two subscriptions when sharing.
STORE_ID = 1
LIVE_ID = 2
#: AWS IoT Core supports QoS 0 and 1 only; nothing here asks for more.
MAX_QOS = 1


@dataclass(frozen=True, slots=True)
class Subscription:
    topic_filter: str
    qos: int
    identifier: int | None = None  # MQTT 5 subscription identifier


def shared_filter(group: str, topic_filter: str) -> str:
    return f"$share/{group}/{topic_filter}"


def ingest_subscriptions(
    topic_filter: str, status_filter: str, share_group: str, *, identifiers: bool
) -> list[list[Subscription]]:
    """The SUBSCRIBE packets ingest sends (one identifier per packet, as MQTT 5 requires)."""
    if not share_group:
        return [[Subscription(topic_filter, MAX_QOS), Subscription(status_filter, MAX_QOS)]]
    shared = shared_filter(share_group, topic_filter)
    if not identifiers:
        return [[Subscription(shared, MAX_QOS), Subscription(status_filter, MAX_QOS)]]
    return [
        [Subscription(shared, MAX_QOS, STORE_ID)],
        [Subscription(topic_filter, 0, LIVE_ID), Subscription(status_filter, MAX_QOS, LIVE_ID)],
    ]


def is_stored(identifiers: Sequence[int]) -> bool:
    """Whether a delivery is this instance's to store: unless it came only through the live
    subscription. A delivery without identifiers is stored (storing twice is harmless)."""
    return not identifiers or STORE_ID in identifiers


#: Reason code of an MQTT 5 DISCONNECT sent because another connection took the session.
SESSION_TAKEN_OVER = 142


class ClientIdWatch:
    """Recognises a client id in use by two connections at once.

    The broker keeps one connection per client id: a second one takes the session over and
    the first is disconnected, reconnects, and takes it back, over and over, while the two
    instances steal each other's messages. MQTT 5 says so (reason 142, Session taken over);
    MQTT 3.1.1 just closes the connection, so ``QUICK_DROPS`` drops each within ``QUICK_S``
    of connecting are read as the same thing.
    """

    QUICK_S = 10.0
    QUICK_DROPS = 3

    def __init__(self, client_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client_id = client_id
        self._clock = clock
        self._connected_at: float | None = None
        self._quick_drops = 0

    def connected(self) -> None:
        self._connected_at = self._clock()

    def disconnected(self, *, taken_over: bool, lost: bool) -> str | None:
        """An error naming the setting, when the id seems to be in use elsewhere."""
        connected_at, self._connected_at = self._connected_at, None
        if taken_over:
            return self._message("the broker handed this client's session to another connection")
        quick = connected_at is not None and self._clock() - connected_at < self.QUICK_S
        self._quick_drops = self._quick_drops + 1 if lost and quick else 0
        if self._quick_drops >= self.QUICK_DROPS:
            self._quick_drops = 0
            return self._message(
                f"the connection dropped {self.QUICK_DROPS} times in a row within "
                f"{self.QUICK_S:.0f} s of connecting; another client probably uses the same id"
            )
        return None

    def _message(self, what: str) -> str:
        return (
            f"{what} (client id {self._client_id!r}): every instance needs its own "
            "mqtt.client_id (OFFICESENSOR_MQTT_CLIENT_ID)"
        )
