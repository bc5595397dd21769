"""The MQTT part of a running hub: one connection, its bridge, maybe its cluster, as a service.

Owns: :class:`MqttBus`, a child service of the hub's top service and one
:class:`~tantra.hub.ISink` of the hub (filter: everything). It starts the
connection when the hub starts (the hub serves dashboards whether or not the
broker answers), routes each incoming message by topic to the bridge
(``in/``) or the cluster (``cluster/``, retained ``reading/``), hands each
hub turn's local readings to the bridge and the cluster, and on stop sends
what is queued (a few seconds at most) before it disconnects.

Does not own: topics and payloads (``tantra.bus.topics``), what the bridge
and the cluster do with them, the socket and reconnects (``tantra.bus.client``).
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.subscribeoptions import SubscribeOptions
from twisted.application import service
from twisted.internet import defer
from zope.interface import implementer

from tantra.hub import Batch, Hub, ISink, Subscription

from .bridge import MqttBridge, user_properties_of
from .client import MqttClient
from .cluster import Cluster

#: Seconds a stopping hub waits for the broker to acknowledge what it published.
STOP_DRAIN_SECONDS = 3.0


@implementer(ISink)
class MqttBus(service.Service):
    """Connects one hub to one broker: device topics, readings out, and the cluster."""

    def __init__(self, hub: Hub, client: MqttClient, bridge: MqttBridge, cluster: Cluster | None):
        self._hub = hub
        self.client = client
        self.bridge = bridge
        self.cluster = cluster
        self._subscription: Subscription | None = None
        topics = bridge.topics
        self._in_head = f"{topics.prefix}/in/"
        self._cluster_head = f"{topics.prefix}/cluster/"
        self._reading_head = f"{topics.prefix}/reading/"
        if cluster is None:
            client.subscribe(topics.ingest_filter, SubscribeOptions(qos=1))
        else:
            for topic, options in cluster.subscriptions():
                client.subscribe(topic, options)

    @classmethod
    def build(
        cls,
        hub: Hub,
        reactor: Any,
        client_factory: Any,
        bridge_factory: Any,
        cluster_name: str | None,
    ) -> MqttBus:
        """Wire the parts around ``client_factory(on_message, on_connected, on_room)``."""
        bus: MqttBus | None = None

        def on_message(message: Any) -> None:
            assert bus is not None
            bus.route(message)

        def on_connected(session_present: bool) -> None:
            # After a reconnect, a session the broker kept brings every cluster
            # message queued while this hub was away; taking retained readings
            # (they carry no seq) on top of them would show readings twice. The
            # first connect of this process fills its empty cache either way.
            if bus is None or bus.cluster is None:
                return
            if not session_present or not bus.cluster.filled:
                bus.cluster.start_fill()

        def on_room() -> int:
            # The window may have freed: the bridge sends the readings it holds.
            return 0 if bus is None else bus.bridge.drain()

        client = client_factory(on_message, on_connected, on_room)
        bridge = bridge_factory(client)
        cluster = None
        if cluster_name:
            cluster = Cluster(
                hub,
                client,
                bridge.topics,
                hub.counters.mqtt,
                reactor,
                name=cluster_name,
                member=client.client_id,
                subscribe=client.subscribe,
                unsubscribe=client.unsubscribe,
            )
        bus = cls(hub, client, bridge, cluster)
        return bus

    # -- broker -> hub ----------------------------------------------------------------

    def route(self, message: Any) -> None:
        topic = message.topic
        if topic.startswith(self._in_head):
            self.bridge.ingest(topic, message.payload, user_properties_of(message))
        elif self.cluster is not None:
            if topic.startswith(self._cluster_head):
                self.cluster.receive(topic, message.payload)
            elif topic.startswith(self._reading_head):
                self.cluster.retained(topic, message.payload, bool(message.retain))

    # -- hub -> broker ----------------------------------------------------------------

    def deliver(self, batch: Batch) -> None:
        readings = batch.local()
        if not readings:
            return
        self.bridge.publish(readings)
        if self.cluster is None:
            return
        if batch.committed is None:  # no store: at once
            self.cluster.publish(readings)
        else:  # with a store: once stored, so what another hub has seen is stored
            self.cluster.publish_once_stored(readings, batch.committed())

    # -- service ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._subscription, _ = self._hub.subscribe(self)
        self.client.start()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._subscription is not None:
            self._hub.unsubscribe(self._subscription)
            self._subscription = None
        if self.cluster is not None:
            self.cluster.end_fill()
        return self.client.stop(STOP_DRAIN_SECONDS)
