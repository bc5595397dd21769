"""Devices and plain MQTT clients through the broker: readings in, replies and readings out.

Owns the device side of SPEC "MQTT (v2)":

- **in**: a message on ``<prefix>/in/<device>`` (JSON reading or batch) or
  ``<prefix>/in/<device>/<sensor>`` (bare number or boolean) is parsed
  (``tantra.bus.topics``) and handed to :meth:`Hub.accept` like any
  device's payload: validated, de-duplicated, cached, fanned out. The
  replies ``tantra.replies`` says it owes go to ``<prefix>/ack/<device>``
  and ``<prefix>/error/<device>``; with a history store they wait for the
  commit of the readings they name, like every transport's (none is sent
  for readings the store could not keep: the device re-sends); a message
  whose topic names no valid device is counted and logged, not answered
  (there is no topic to answer on);
- **out**: every reading this hub accepted (:meth:`Batch.local`, so never
  one another hub of the cluster accepted) is published retained on
  ``<prefix>/reading/<device>/<sensor>``, so ``mosquitto_sub`` or Home
  Assistant shows the live value and the last one on subscribe; while the
  broker connection is full or down they are conflated per topic
  (``tantra.bus.latest``), so each topic still ends on its newest value;
- **discovery** (``--mqtt-discovery``): the first reading of a sensor also
  publishes its Home Assistant config. "Already announced" is a bounded LRU
  of the hub's cache size, so 10^5 distinct names cost what the hub's own
  cache costs, not more; a sensor forgotten and seen again is announced
  again (the config is retained and the same, so that is harmless).

Keeps no state per device beyond that LRU. Does not own: the connection
(``tantra.bus.client``), the cluster (``tantra.bus.cluster``), validation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.logger import Logger
from twisted.python.failure import Failure

from tantra.commits import NotCommitted
from tantra.counters import MqttStats
from tantra.hub import Hub, IngestOutcome
from tantra.model import Reading
from tantra.replies import encode, for_outcome

from .latest import LatestOut
from .topics import Topics, discovery, parse_in_message

_log = Logger()

#: Seconds a reply waits in the broker for a device that is away (MQTT 5 message expiry).
REPLY_EXPIRY_SECONDS = 300


class Publisher:
    """What the bridge and the cluster need of the client (a fake in unit tests)."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> bool:
        raise NotImplementedError

    def capacity(self) -> int:
        """Messages the connection takes now without queueing (0 while disconnected)."""
        raise NotImplementedError


def _expiring(seconds: int) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = seconds
    return properties


class MqttBridge:
    """The in and out topics of one hub on one broker connection."""

    def __init__(
        self,
        hub: Hub,
        client: Publisher,
        topics: Topics,
        stats: MqttStats,
        *,
        qos: int = 1,
        discovery: bool = False,
        discovery_node: str = "tantra",
        max_announced: int = 100_000,
    ):
        self._hub = hub
        self._client = client
        self.topics = topics
        self._stats = stats
        self._qos = qos
        self._discovery = discovery
        self._node = discovery_node
        self._max_announced = max_announced
        self._announced: OrderedDict[tuple[str, str, bool, str | None], None] = OrderedDict()
        self._reply_properties = _expiring(REPLY_EXPIRY_SECONDS)
        #: Retained readings, conflated per topic while the connection is full:
        #: at most one per topic, at most the hub's cache size of topics.
        #: Replies share its window in turn with readings, in order, never conflated.
        self._latest = LatestOut(
            client,
            stats,
            qos=qos,
            max_topics=max_announced,
            reply_properties=self._reply_properties,
        )

    # -- in ------------------------------------------------------------------------

    def ingest(
        self, topic: str, payload: bytes, user_properties: Sequence[tuple[str, str]]
    ) -> None:
        """One message from ``<prefix>/in/...``: into the hub, replies back to the device."""
        self._stats.received += 1
        device, parsed = parse_in_message(
            self.topics, topic, payload, user_properties=user_properties, now_ms=self._hub.now_ms()
        )
        for error in parsed.errors:
            self._stats.rejected[error.code] += 1
        source = f"MQTT {topic[:120]}"
        outcome = self._hub.accept(parsed, source=source)
        if device is None:
            return  # no device in the topic: nowhere to answer (counted and logged)
        if outcome.settled is None:
            self._reply(device, for_outcome(outcome))
            return
        # The ack waits for the commit, or without a store for the broadcast
        # (tantra.commits), as on UDP; what was not stored gets errors, no ack.
        outcome.settled.addCallbacks(
            self._committed,
            self._not_committed,
            callbackArgs=(device, outcome),
            errbackArgs=(device, outcome),
        )

    def _committed(self, _: object, device: str, outcome: IngestOutcome) -> None:
        self._reply(device, for_outcome(outcome))

    def _not_committed(self, reason: Failure, device: str, outcome: IngestOutcome) -> None:
        reason.trap(NotCommitted)
        self._reply(device, for_outcome(outcome._replace(acks=())))

    def _reply(self, device: str, replies: Sequence[dict[str, Any]]) -> None:
        """Publish a payload's replies on ``ack/<device>`` and ``error/<device>``."""
        for reply in replies:
            if "ack" in reply:
                where, counter = self.topics.ack(device), "acks_sent"
            else:
                where, counter = self.topics.error(device), "errors_sent"
            if self._latest.reply(where, encode(reply)):
                setattr(self._stats, counter, getattr(self._stats, counter) + 1)
            else:
                self._stats.publish_dropped["reply"] += 1

    # -- out ------------------------------------------------------------------------

    def publish(self, readings: Sequence[Reading]) -> None:
        """Publish what this hub accepted, retained (conflated while the broker is full)."""
        reading_topic = self.topics.reading
        self._latest.send((reading_topic(reading), reading.json) for reading in readings)
        if self._discovery:
            for reading in readings:
                self._announce(reading)

    def drain(self) -> int:
        """The window may have room: send queued replies and held readings; return the rest."""
        return self._latest.drain()

    def _announce(self, reading: Reading) -> None:
        key = (reading.device, reading.sensor, type(reading.value) is bool, reading.unit)
        announced = self._announced
        if key in announced:
            announced.move_to_end(key)
            return
        topic, config = discovery(reading, self.topics, self._node)
        if not self._client.publish(topic, config, qos=1, retain=True):
            self._stats.publish_dropped["discovery"] += 1
            return  # not remembered: the next reading tries again
        self._stats.discovery_published += 1
        announced[key] = None
        if len(announced) > self._max_announced:
            announced.popitem(last=False)

    @property
    def held_count(self) -> int:
        """Reading topics whose newest value waits for room."""
        return self._latest.held

    @property
    def waiting_count(self) -> int:
        """Held reading topics and queued replies."""
        return self._latest.waiting

    @property
    def announced_count(self) -> int:
        return len(self._announced)


def user_properties_of(message: Any) -> Sequence[tuple[str, str]]:
    """The MQTT 5 user properties of a paho message (empty when none)."""
    properties = getattr(message, "properties", None)
    found = getattr(properties, "UserProperty", None) if properties is not None else None
    return found or ()
