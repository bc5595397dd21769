"""Retained readings under back-pressure: the newest payload per topic, sent as there is room.

Owns the out side of ``<prefix>/reading/<device>/<sensor>`` when the broker
connection cannot take more. A reading topic is retained: what a subscriber
(Home Assistant, ``mosquitto_sub``) sees as the live value, and gets on
subscribe, is the *last* message the broker received on it. Dropping the
newest message of a topic when the publish queue is full leaves that topic on
a stale value until the sensor's next reading; sending every older value
first only delays the newest one. So, like a stalled dashboard's outbox
(``tantra.outbox``), this conflates:

- while the connection has room (:meth:`Publisher.capacity`: free places in
  the QoS 1 in-flight window, none while disconnected) and nothing is held,
  a reading is handed to the client at once, as before;
- otherwise its payload is *held*, at most one per topic: a newer reading of
  a held topic replaces the held payload (counted in
  ``readings_conflated``) and keeps the topic's place in line;
- :meth:`drain` (the client calls it whenever the window may have freed:
  after PUBACKs, after a connect, after a write) publishes held topics
  oldest-held first, as many as there is room for. A topic that was just
  sent and gets a new value goes to the back of the line, so a hot sensor
  cannot starve the others (round robin by topic).

Replies (acks, errors) share the window but are never conflated: every ack
matters. :meth:`reply` sends one at once when nothing waits and there is
room, else queues it in order (at most ``max_replies``, the client's old
queue bound; one more is refused and the caller counts it dropped, as
before). The drain alternates a reply and a held reading topic, so a flood
of device messages (each owing an ack) cannot freeze the retained live
values, nor the readings the acks. Discovery configs and cluster messages
go to the client directly (its own queue, which the window counts first).

The messages sent for one topic are therefore in order, and the last one is
always the newest reading the hub accepted for it: once the backlog drains
every retained topic ends on its newest value.

Memory is bounded: at most ``max_topics`` topics are held (the hub's
last-value cache size); one more evicts the topic held longest, its payload
lost and counted in ``publish_dropped["reading"]`` (a client inventing 10^5
sensor names costs this bound, not more). Payloads are the readings' own
``json`` bytes, shared with the hub's cache, not copies.

Does not own: which topic a reply goes to (``tantra.bus.bridge``), the
connection (``tantra.bus.client``), the cluster stream (``tantra.bus.cluster``).
Pure: no reactor, no sockets.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tantra.counters import MqttStats

if TYPE_CHECKING:
    from .bridge import Publisher  # bridge imports this module


class LatestOut:
    """Retained messages of many topics, conflated per topic while the connection is full."""

    def __init__(
        self,
        publisher: Publisher,
        stats: MqttStats,
        *,
        qos: int,
        max_topics: int,
        max_replies: int = 10_000,
        reply_properties: Any = None,
    ):
        if max_topics < 1:
            raise ValueError("max_topics must be at least 1")
        self._publisher = publisher
        self._stats = stats
        self._qos = qos
        self._max_topics = max_topics
        self._held: OrderedDict[str, bytes] = OrderedDict()
        self._max_replies = max_replies
        self._reply_properties = reply_properties
        self._replies: deque[tuple[str, bytes]] = deque()

    @property
    def held(self) -> int:
        """Topics whose newest payload waits for room."""
        return len(self._held)

    @property
    def waiting(self) -> int:
        """Held reading topics and queued replies: what still has to go out."""
        return len(self._held) + len(self._replies)

    def reply(self, topic: str, payload: bytes) -> bool:
        """Send a reply now, or queue it in order; False when the queue is full (lost)."""
        replies = self._replies
        publisher = self._publisher
        if (
            not replies
            and publisher.capacity() > 0
            and publisher.publish(topic, payload, qos=self._qos, properties=self._reply_properties)
        ):
            return True
        if len(replies) >= self._max_replies:
            return False
        replies.append((topic, payload))
        return True

    def send(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Publish each ``(topic, payload)`` retained now if there is room, else hold it."""
        held = self._held
        publish = self._publisher.publish
        qos = self._qos
        capacity = 0 if held else self._publisher.capacity()
        sent = 0
        for topic, payload in messages:
            if capacity > 0:
                if publish(topic, payload, qos=qos, retain=True):
                    sent += 1
                    capacity -= 1
                    continue
                capacity = 0  # the client's queue is full (replies, discovery): hold
            self._hold(topic, payload)
        self._stats.readings_published += sent
        if held or self._replies:
            self.drain()
        else:
            self._stats.readings_held = 0

    def _hold(self, topic: str, payload: bytes) -> None:
        held = self._held
        stats = self._stats
        if topic in held:
            held[topic] = payload  # keeps its place in line
            stats.readings_conflated += 1
            return
        held[topic] = payload
        if len(held) > self._max_topics:
            held.popitem(last=False)
            stats.publish_dropped["reading"] += 1

    def drain(self) -> int:
        """Send what waits while there is room, a reply and a held topic in turn; return the rest.

        Held topics go oldest-held first; a publish the client refuses (its
        own queue is full) stays first in line for the next drain.
        """
        held = self._held
        replies = self._replies
        if not held and not replies:
            return 0
        publisher = self._publisher
        capacity = publisher.capacity()
        publish = publisher.publish
        qos = self._qos
        sent = 0
        while capacity > 0 and (held or replies):
            if replies:
                topic, payload = replies[0]
                if not publish(topic, payload, qos=qos, properties=self._reply_properties):
                    break
                replies.popleft()
                capacity -= 1
                if capacity <= 0:
                    break
            if held:
                topic, payload = held.popitem(last=False)
                if not publish(topic, payload, qos=qos, retain=True):
                    held[topic] = payload
                    held.move_to_end(topic, last=False)  # first again next time
                    break
                sent += 1
                capacity -= 1
        self._stats.readings_published += sent
        self._stats.readings_held = len(held)
        return len(held) + len(replies)
