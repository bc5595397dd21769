"""Hubs clustered over the broker (``--cluster NAME``): one logical hub, loops impossible.

Owns the hub-to-hub side of SPEC "MQTT (v2)", Cluster:

- **out**: what this hub accepted itself (:meth:`Batch.local`: never what it
  received from the bus) is published, one JSON array per hub turn (at most
  :data:`MAX_READINGS_PER_MESSAGE` readings), QoS 1, on
  ``<prefix>/cluster/<NAME>/<client-id>``; with a history store only once
  the turn is committed (:meth:`Cluster.publish_once_stored`), and never if
  the store shed it: another hub marks every ``(device, seq)`` it receives as
  seen and acks a device's re-send as a duplicate, so it must only ever see
  readings that are stored (an acked reading is never lost in a failover);
- **in**: each hub subscribes to ``<prefix>/cluster/<NAME>/+`` with **No
  Local**, so the broker never sends a hub its own messages; what arrives is
  accepted with ``Hub.accept(origin=cluster, remote=True)``: it reaches local
  dashboards, WAMP subscribers and the last-value cache, and (being
  ``Remote``) never a store and never the bus again. Loops are impossible by
  construction: nothing received is re-published;
- **devices on MQTT**: the bus takes ``<prefix>/in/#`` through the MQTT 5
  shared subscription ``$share/<NAME>/<prefix>/in/#`` (see
  :meth:`Topics.shared_ingest_filter`), so exactly one hub ingests, stores and
  acks each device message (No Local is not set there: on a shared
  subscription it is a protocol error);
- **a new hub's cache**: on its first connect, and on every reconnect where
  the broker kept no session for it (a kept session brings the cluster
  messages queued meanwhile, with their seqs), the hub subscribes to the retained
  ``<prefix>/reading/+/+`` and takes a retained reading it does not know (or
  one newer than what it has) as remote; the fill subscription ends after
  :data:`FILL_QUIET_SECONDS` without a retained message (retained messages
  come in one burst after SUBSCRIBE) or :data:`FILL_MAX_SECONDS`, whichever
  comes first. Live messages on that filter are ignored (the cluster topic
  carries them).

Does not own: the connection, device topics (``tantra.bus.bridge``), or the
store (the hub hands its store only readings that are not ``Remote``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tantra.commits import NotCommitted
from tantra.counters import MqttStats
from tantra.hub import Hub
from tantra.model import ParsedPayload, Reading

from .bridge import Publisher
from .topics import Topics, encode_cluster_batch, parse_cluster_payload, parse_retained_reading

_log = Logger()

#: Readings per cluster message (a turn with more is split; each message stays small).
MAX_READINGS_PER_MESSAGE = 1000
#: Seconds a cluster message may wait in the broker: a stale reading is no use to dashboards.
CLUSTER_EXPIRY_SECONDS = 60
FILL_QUIET_SECONDS = 1.0
FILL_MAX_SECONDS = 30.0


class Cluster:
    """One hub's membership in a named cluster on the broker."""

    def __init__(
        self,
        hub: Hub,
        client: Publisher,
        topics: Topics,
        stats: MqttStats,
        clock: Any,
        *,
        name: str,
        member: str,
        subscribe: Any,
        unsubscribe: Any,
    ):
        self._hub = hub
        self._client = client
        self.topics = topics
        self._stats = stats
        self._clock = clock
        self.name = name
        self.member = member
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._topic = topics.cluster(name, member)
        self._properties = Properties(PacketTypes.PUBLISH)
        self._properties.MessageExpiryInterval = CLUSTER_EXPIRY_SECONDS
        self._fill_quiet: Any = None
        self._fill_end: Any = None
        self.filling = False
        #: A fill was started once (the first connect of this process).
        self.filled = False

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]]:
        """The cluster feed (No Local) and the shared device-ingest subscription."""
        return [
            (self.topics.cluster_filter(self.name), SubscribeOptions(qos=1, noLocal=True)),
            (self.topics.shared_ingest_filter(self.name), SubscribeOptions(qos=1)),
        ]

    # -- out ------------------------------------------------------------------------

    def publish(self, readings: Sequence[Reading]) -> None:
        for start in range(0, len(readings), MAX_READINGS_PER_MESSAGE):
            chunk = readings[start : start + MAX_READINGS_PER_MESSAGE]
            if self._client.publish(
                self._topic, encode_cluster_batch(chunk), qos=1, properties=self._properties
            ):
                self._stats.cluster_published += len(chunk)
            else:
                self._stats.publish_dropped["cluster"] += len(chunk)

    def publish_once_stored(self, readings: Sequence[Reading], committed: Deferred) -> None:
        """Publish a turn once ``committed`` fires; drop it (counted) if the store shed it.

        Turns commit in order, so cluster messages keep the turns' order. The
        cost is the commit's latency (up to ``--commit-interval`` plus the
        write) on the cluster hop, docs/cluster.md.
        """
        committed.addCallbacks(
            self._stored, self._not_stored, callbackArgs=(readings,), errbackArgs=(readings,)
        )

    def _stored(self, _: object, readings: Sequence[Reading]) -> None:
        self.publish(readings)

    def _not_stored(self, reason: Failure, readings: Sequence[Reading]) -> None:
        reason.trap(NotCommitted)
        self._stats.cluster_unstored += len(readings)

    # -- in ------------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes) -> None:
        """Readings another hub accepted: to dashboards, WAMP and the cache, never back out."""
        readings, bad = parse_cluster_payload(payload, now_ms=self._hub.now_ms())
        if bad:
            self._stats.cluster_rejected += bad
            self._hub.reject("invalid_cluster_message", bad, source=f"MQTT {topic[:120]}")
        if readings:
            self._stats.cluster_received += len(readings)
            self._hub.accept(
                ParsedPayload(tuple(readings), (), True), origin=self, remote=True, source=topic
            )

    # -- a new hub's cache ------------------------------------------------------------

    def start_fill(self) -> None:
        """Subscribe to the retained readings (on every connect)."""
        self._cancel_fill_timers()
        self.filling = self.filled = True
        self._subscribe(self.topics.readings_filter, SubscribeOptions(qos=1, noLocal=True))
        self._fill_quiet = self._clock.callLater(FILL_QUIET_SECONDS * 3, self.end_fill)
        self._fill_end = self._clock.callLater(FILL_MAX_SECONDS, self.end_fill)

    def retained(self, topic: str, payload: bytes, retain: bool) -> None:
        if not retain or not self.filling:
            return  # a live reading: the cluster topic brings those
        if self._fill_quiet is not None and self._fill_quiet.active():
            self._fill_quiet.reset(FILL_QUIET_SECONDS)
        reading = parse_retained_reading(self.topics, topic, payload, now_ms=self._hub.now_ms())
        if reading is None:
            self._stats.cluster_rejected += 1
            return
        cached = self._hub.reading_of(reading.device, reading.sensor)
        if cached is not None and (cached.ts >= reading.ts or cached.value == reading.value):
            return
        self._stats.retained_filled += 1
        self._hub.accept(ParsedPayload((reading,), ()), origin=self, remote=True, source=topic)

    def end_fill(self) -> None:
        if not self.filling:
            return
        self.filling = False
        self._cancel_fill_timers()
        self._unsubscribe(self.topics.readings_filter)

    def _cancel_fill_timers(self) -> None:
        for call in (self._fill_quiet, self._fill_end):
            if call is not None and call.active():
                call.cancel()
        self._fill_quiet = self._fill_end = None
