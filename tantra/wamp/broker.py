"""The WAMP broker: subscriptions, publications, events, retained events.

Owns: SUBSCRIBE / UNSUBSCRIBE / PUBLISH handling for one realm; which
sessions an event reaches (match policies, ``exclude_me``, ``exclude`` /
``eligible`` and their ``_authid`` / ``_authrole`` forms); publisher
disclosure; the retained event of each plain topic and handing retained
events to new subscriptions, *pattern* subscriptions included; and topic
namespaces owned by someone else (:class:`ITopicNamespace`, e.g. the hub
bridge for ``tantra.reading.``), whose publications it hands over and whose
retained events it asks them for.

Does not own: sessions or transports (it talks to :class:`IWampPeer`), topic
indexing (``tantra.wamp.match``), readings (``tantra.wamp.bridge``). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import attrs
from autobahn.wamp import message
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface

from tantra.wamp.events import EventGroup, RawEvent, event_message
from tantra.wamp.limits import LIMIT_EXCEEDED, WampLimits
from tantra.wamp.match import EXACT, Observation, ObservationMap, matches
from tantra.wamp.options import disclose_requested
from tantra.wamp.peer import (
    INVALID_URI,
    NO_SUCH_SUBSCRIPTION,
    NOT_AUTHORIZED,
    IWampPeer,
    PayloadTooLarge,
    WampStats,
    error_reply,
)
from tantra.wamp.retained import RetainedFeed, RetainedPacer

_log = Logger()

#: Plain topics whose last retained event is kept; past it the oldest is forgotten.
DEFAULT_MAX_RETAINED = 10_000

FEATURES = {
    "pattern_based_subscription": True,
    "publisher_identification": True,
    "publisher_exclusion": True,
    "subscriber_blackwhite_listing": True,
    "event_retention": True,
}


class ITopicNamespace(Interface):
    """Topics under ``prefix`` belong to someone other than plain pub/sub."""

    def owns(topic: str) -> bool:
        """Is a PUBLISH to ``topic`` this namespace's to handle?"""

    def publish(peer: IWampPeer, msg: message.Publish, publication_id: int) -> None:
        """Handle a client's PUBLISH (ack or error included); events go out via
        :meth:`Broker.dispatch` when the namespace decides."""

    def retained(pattern: str, policy: str) -> Iterable[tuple[str, list[Any], Hashable]]:
        """Retained events matching a subscription: (topic, args, conflation key)."""


@attrs.frozen
class Publication:
    """One event to fan out, with who may and may not receive it."""

    id: int
    topic: str
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    publisher: int | None = None
    publisher_authid: str | None = None
    publisher_authrole: str | None = None
    exclude: frozenset[int] = frozenset()
    exclude_authid: frozenset[str] = frozenset()
    exclude_authrole: frozenset[str] = frozenset()
    eligible: frozenset[int] | None = None
    eligible_authid: frozenset[str] | None = None
    eligible_authrole: frozenset[str] | None = None
    #: Events with the same key (per subscription) may replace each other for a slow client.
    conflation_key: Hashable | None = None

    @classmethod
    def from_publish(
        cls,
        msg: message.Publish,
        peer: IWampPeer,
        publication_id: int,
        *,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        conflation_key: Hashable | None = None,
    ) -> Publication:
        """The publication a client asked for; ``exclude_me`` defaults to true (WAMP)."""
        exclude = set(msg.exclude or ())
        if msg.exclude_me is not False:
            exclude.add(peer.session_id)
        disclose = disclose_requested(msg)

        def optional(values: list[Any] | None) -> frozenset[Any] | None:
            return None if values is None else frozenset(values)

        return cls(
            id=publication_id,
            topic=msg.topic,
            args=args,
            kwargs=kwargs,
            publisher=peer.session_id if disclose else None,
            publisher_authid=peer.authid if disclose else None,
            publisher_authrole=peer.authrole if disclose else None,
            exclude=frozenset(exclude),
            exclude_authid=frozenset(msg.exclude_authid or ()),
            exclude_authrole=frozenset(msg.exclude_authrole or ()),
            eligible=optional(msg.eligible),
            eligible_authid=optional(msg.eligible_authid),
            eligible_authrole=optional(msg.eligible_authrole),
            conflation_key=conflation_key,
        )

    @property
    def restricted(self) -> bool:
        """Does any black- or whitelist apply (so subscribers of one subscription may differ)?"""
        return bool(
            self.exclude
            or self.exclude_authid
            or self.exclude_authrole
            or self.eligible is not None
            or self.eligible_authid is not None
            or self.eligible_authrole is not None
        )

    def reaches(self, peer: IWampPeer) -> bool:
        """Black- and whitelisting: excluded wins over eligible, as in the WAMP spec."""
        if peer.session_id in self.exclude:
            return False
        if peer.authid in self.exclude_authid or peer.authrole in self.exclude_authrole:
            return False
        if self.eligible is not None and peer.session_id not in self.eligible:
            return False
        if self.eligible_authid is not None and peer.authid not in self.eligible_authid:
            return False
        return self.eligible_authrole is None or peer.authrole in self.eligible_authrole

    def _event_fields(self, policy: str) -> dict[str, Any]:
        """The EVENT's fields after subscription and publication ids, for either form."""
        return {
            "args": self.args,
            "kwargs": self.kwargs,
            "publisher": self.publisher,
            "publisher_authid": self.publisher_authid,
            "publisher_authrole": self.publisher_authrole,
            # Pattern subscribers must learn which topic the event was for.
            "topic": None if policy == EXACT else self.topic,
        }

    def event_item(
        self, subscription: int, policy: str, *, retained: bool = False
    ) -> tuple[RawEvent, Hashable | None]:
        """The grouped path's event (a list, as ``Event.marshal`` makes) and its conflation key."""
        key = self.conflation_key
        return (
            event_message(
                subscription,
                self.id,
                retained=True if retained else None,
                **self._event_fields(policy),
            ),
            None if key is None else (subscription, key),
        )

    def event(self, subscription: int, policy: str, *, retained: bool = False) -> message.Event:
        return message.Event(
            subscription,
            self.id,
            retained=True if retained else None,
            **self._event_fields(policy),
        )


#: A subscriber's ``IWampPeer.send_events``.
SendEvents = Callable[[EventGroup], int]
#: How a group reaches subscribers: ``function(target, group)`` for each target.
Senders = tuple[Callable[[Any, EventGroup], int], Sequence[Any]]


def _call(send_events: SendEvents, group: EventGroup) -> int:
    return send_events(group)


def senders_of(functions: Sequence[SendEvents]) -> Senders:
    """``send_events`` functions as one function and the objects to call it on.

    Every WAMP connection's ``send_events`` is the same method of another
    outbox, so the broker calls that method on each outbox: the per-turn
    loop then touches each subscriber's outbox and nothing else (a bound
    method object per subscriber is one more cache miss each, and with
    1000 subscribers at one reading a turn, memory, not Python, is most of
    the loop's time). Anything else is called as it is.
    """
    methods = {getattr(function, "__func__", None) for function in functions}
    if len(methods) == 1:
        (method,) = methods
        if method is not None:
            return method, tuple(getattr(function, "__self__") for function in functions)  # noqa: B009
    return _call, tuple(functions)


def _senders(subscription: Observation[IWampPeer]) -> Senders:
    """Every subscriber's ``send_events`` (:func:`senders_of`), kept until the
    subscription's observers change.

    Per turn the broker then walks one tuple: no copy of the observers, no
    look-up on each session. A session's ``send_events`` stays the same while
    it is subscribed (leaving the realm unsubscribes it first), so keeping
    what it was is safe.
    """
    senders = subscription.derived
    if senders is None:
        senders = subscription.derived = senders_of(
            [peer.send_events for peer in subscription.observers]
        )
    return senders


class Broker:
    """Pub/sub for one realm."""

    def __init__(
        self,
        *,
        new_subscription_id: Callable[[], int],
        new_publication_id: Callable[[], int],
        stats: WampStats,
        max_retained: int = DEFAULT_MAX_RETAINED,
        limits: WampLimits | None = None,
        clock: IReactorTime | None = None,
    ):
        """``clock`` paces retained events (:mod:`tantra.wamp.retained`); without
        one (pure tests) a SUBSCRIBE sends all of them at once."""
        self._limits = limits if limits is not None else WampLimits()
        self._clock = clock
        self.subscriptions: ObservationMap[IWampPeer] = ObservationMap(new_subscription_id)
        self._new_publication_id = new_publication_id
        self._stats = stats
        self._max_retained = max_retained
        self._retained: dict[str, Publication] = {}
        self._namespaces: list[ITopicNamespace] = []
        #: Sessions with retained events still to send, and their feeds by subscription id.
        self._pacers: dict[IWampPeer, RetainedPacer] = {}
        self._feeding: dict[int, dict[IWampPeer, RetainedFeed]] = {}

    def add_namespace(self, namespace: ITopicNamespace) -> None:
        self._namespaces.append(namespace)

    def new_publication_id(self) -> int:
        return self._new_publication_id()

    # -- client requests ------------------------------------------------------

    def subscribe(self, peer: IWampPeer, msg: message.Subscribe) -> None:
        if msg.match == EXACT and "" in msg.topic.split("."):
            self._refuse(
                peer,
                msg,
                INVALID_URI,
                f"{msg.topic!r} has an empty component; use match='wildcard' for patterns",
            )
            return
        existing = self.subscriptions.find(msg.topic, msg.match)
        if existing is None or peer not in existing.observers:
            held = self.subscriptions.count_of(peer)
            if held >= self._limits.max_subscriptions:
                self._stats.limits_hit["subscriptions"] += 1
                self._refuse(
                    peer,
                    msg,
                    LIMIT_EXCEEDED,
                    f"a session may hold {self._limits.max_subscriptions} subscriptions",
                )
                return
        subscription, _, _ = self.subscriptions.add(msg.topic, msg.match, peer)
        peer.send(message.Subscribed(msg.request, subscription.id))
        if msg.get_retained:
            self._send_retained(peer, subscription.id, msg.topic, msg.match)

    def unsubscribe(self, peer: IWampPeer, msg: message.Unsubscribe) -> None:
        subscription = self.subscriptions.get(msg.subscription)
        if subscription is None or peer not in subscription.observers:
            self._refuse(peer, msg, NO_SUCH_SUBSCRIPTION, f"no subscription {msg.subscription}")
            return
        self.subscriptions.remove(subscription, peer)
        pacer = self._pacers.get(peer)
        if pacer is not None:
            pacer.cancel(subscription.id)
        peer.send(message.Unsubscribed(msg.request))

    def publish(self, peer: IWampPeer, msg: message.Publish) -> None:
        publication_id = self._new_publication_id()
        for namespace in self._namespaces:
            if namespace.owns(msg.topic):
                namespace.publish(peer, msg, publication_id)
                return
        if msg.payload is not None:
            # Payload transparency (end-to-end encrypted payloads) is not offered.
            self._refuse(
                peer,
                msg,
                NOT_AUTHORIZED,
                "payload transparency is not supported",
                only_if_acknowledged=True,
            )
            return
        publication = Publication.from_publish(
            msg, peer, publication_id, args=msg.args, kwargs=msg.kwargs
        )
        if msg.retain:
            self._retain(publication)
        self.dispatch(publication)
        if msg.acknowledge:
            peer.send(message.Published(msg.request, publication_id))

    def detach(self, peer: IWampPeer) -> None:
        """Forget every subscription of a session that left, and its retained events to send."""
        self.subscriptions.remove_observer(peer)
        pacer = self._pacers.pop(peer, None)
        if pacer is not None:
            pacer.stop()

    # -- fan-out ------------------------------------------------------------

    def dispatch(self, publication: Publication) -> int:
        """Send one publication to every matching, eligible subscriber; returns events sent."""
        self._stats.publications += 1
        sent = 0
        feeding = self._feeding
        for subscription in self.subscriptions.matching(publication.topic):
            event: message.Event | None = None  # built once, serialized once per serializer
            feeds = feeding.get(subscription.id) if feeding else None
            for peer in list(subscription.observers):
                if not publication.reaches(peer):
                    continue
                if feeds:
                    feed = feeds.get(peer)
                    if feed is not None:
                        feed.sent_live(publication.topic)
                if event is None:
                    event = publication.event(subscription.id, subscription.policy)
                self._send(peer, event, subscription.id, publication)
                sent += 1
        self._stats.events_sent += sent
        return sent

    def dispatch_batch(self, publications: Sequence[Publication]) -> int:
        """Fan out one hub turn's publications, in order; returns events sent.

        Subscribers that hold the same matching subscriptions get the same
        events, so each such group gets one :class:`EventGroup`, encoded once
        per serializer and written once per subscriber (not once per event).
        A publication with a black- or whitelist goes out on its own through
        :meth:`dispatch`; the runs before and after it are grouped, so every
        subscriber still sees the publications in order (WAMP's ordering
        guarantee holds across topics of one publisher).
        """
        sent = 0
        run: list[Publication] = []
        for publication in publications:
            if publication.restricted:
                if run:
                    sent += self._dispatch_grouped(run)
                    run = []
                sent += self.dispatch(publication)
            else:
                run.append(publication)
        if run:
            sent += self._dispatch_grouped(run)
        return sent

    def _dispatch_grouped(self, publications: list[Publication]) -> int:
        """Unrestricted publications, one :class:`EventGroup` per set of held subscriptions.

        Ordered for latency: with one reading a turn, whatever runs before
        the first subscriber's write delays all of them, so a group's events
        are built as plain lists (:meth:`Publication.event_message`) and
        nothing is built per subscriber: each gets one call, which writes
        the group's shared bytes.
        """
        stats = self._stats
        stats.publications += len(publications)
        matching = self.subscriptions.matching
        if self._feeding:
            self._sent_live(publications)
        if len(publications) == 1:
            (publication,) = publications
            subscriptions = matching(publication.topic)
            if len(subscriptions) == 1:  # the usual case: everyone on one subscription
                (only,) = subscriptions
                group = EventGroup([publication.event_item(only.id, only.policy)])
                return self._send_group(group, _senders(only))
            matched = [(publication, subscriptions)]
        else:
            matched = [(publication, matching(publication.topic)) for publication in publications]
        touched: dict[int, Observation[IWampPeer]] = {}
        for _, subscriptions in matched:
            for subscription in subscriptions:
                touched[subscription.id] = subscription
        if not touched:
            return 0
        if len(touched) == 1:
            (only,) = touched.values()
            sid, policy = only.id, only.policy
            group = EventGroup(
                [publication.event_item(sid, policy) for publication, found in matched if found]
            )
            return self._send_group(group, _senders(only))
        held: dict[IWampPeer, list[int]] = {}
        for subscription in touched.values():
            for peer in subscription.observers:
                found = held.get(peer)
                if found is None:
                    held[peer] = [subscription.id]
                else:
                    found.append(subscription.id)
        groups: dict[tuple[int, ...], list[SendEvents]] = {}
        for peer, held_ids in held.items():
            groups.setdefault(tuple(held_ids), []).append(peer.send_events)
        # One raw event per publication x subscription, shared by the groups holding it.
        items: dict[tuple[int, int], tuple[RawEvent, Hashable | None]] = {}
        sent = 0
        for ids, peers in groups.items():
            wanted = set(ids)
            raw: list[tuple[RawEvent, Hashable | None]] = []
            for index, (publication, subscriptions) in enumerate(matched):
                for subscription in subscriptions:
                    sid = subscription.id
                    if sid not in wanted:
                        continue
                    item = items.get((index, sid))
                    if item is None:
                        item = items[(index, sid)] = publication.event_item(
                            sid, subscription.policy
                        )
                    raw.append(item)
            if raw:
                sent += self._send_group(EventGroup(raw), senders_of(peers))
        return sent

    def _sent_live(self, publications: Sequence[Publication]) -> None:
        """Tell the retained feeds of the subscriptions these (unrestricted) publications
        reach that their topics went out live. Only while some feed is under way."""
        feeding, matching = self._feeding, self.subscriptions.matching
        for publication in publications:
            for subscription in matching(publication.topic):
                feeds = feeding.get(subscription.id)
                if feeds:
                    for feed in feeds.values():
                        feed.sent_live(publication.topic)

    def _send_group(self, group: EventGroup, senders: Senders) -> int:
        """A group's events to each of its subscribers, one call each; returns events sent.

        ``senders`` (:func:`senders_of`) hold a sequence of their own: a
        subscriber given up while written to leaves the subscription during
        the loop (its outbox, closed, then sends nothing).
        """
        send_events, targets = senders
        too_large = 0
        for target in targets:
            too_large += send_events(target, group)
        stats = self._stats
        if too_large:
            stats.too_large["event"] += too_large
            _log.debug("{count} event(s) over the outgoing limit not sent", count=too_large)
        sent = len(group.raw) * len(targets) - too_large
        stats.events_sent += sent
        return sent

    def _send(
        self, peer: IWampPeer, event: message.Event, subscription_id: int, pub: Publication
    ) -> None:
        key = None if pub.conflation_key is None else (subscription_id, pub.conflation_key)
        try:
            peer.send(event, key)
        except PayloadTooLarge as error:
            # An event has no request to answer: it is dropped for this client and counted.
            self._stats.too_large["event"] += 1
            _log.debug(
                "event on {topic} not sent to session {session}: {error}",
                topic=pub.topic,
                session=peer.session_id,
                error=error,
            )

    # -- retained events ------------------------------------------------------------

    def _retain(self, publication: Publication) -> None:
        retained = self._retained
        retained.pop(publication.topic, None)  # re-insert: the dict stays oldest-first
        retained[publication.topic] = publication
        if len(retained) > self._max_retained:
            forgotten = next(iter(retained))
            del retained[forgotten]
            self._stats.retained_evicted += 1
            if self._stats.retained_evicted % 1000 == 1:  # the first, then a sample
                _log.warn(
                    "retained events full ({limit} topics): forgot {topic}"
                    " ({count} forgotten so far)",
                    limit=self._max_retained,
                    topic=forgotten,
                    count=self._stats.retained_evicted,
                )

    def _send_retained(self, peer: IWampPeer, subscription: int, pattern: str, policy: str) -> None:
        """A new subscription's retained events: paced by the session's :class:`RetainedPacer`
        from the next reactor turn on, or all at once without a clock."""
        publications = self._retained_for(pattern, policy)
        clock = self._clock
        if clock is None:
            for publication in publications:
                if publication.reaches(peer):
                    event = publication.event(subscription, policy, retained=True)
                    self._send(peer, event, subscription, publication)
            return
        feed = RetainedFeed(subscription, policy, publications)
        self._feeding.setdefault(subscription, {})[peer] = feed
        pacer = self._pacers.get(peer)
        if pacer is None:
            pacer = self._pacers[peer] = RetainedPacer(
                peer,
                clock,
                self._limits.retained_chunk,
                send=self._send_retained_chunk,
                finished=self._feed_finished,
                on_idle=self._pacer_idle,
            )
        pacer.add(feed)

    def _send_retained_chunk(self, peer: IWampPeer, group: EventGroup) -> None:
        too_large = peer.send_events(group)
        if too_large:
            self._stats.too_large["event"] += too_large
            _log.debug(
                "{count} retained event(s) over the outgoing limit not sent", count=too_large
            )

    def _feed_finished(self, peer: IWampPeer, feed: RetainedFeed) -> None:
        feeds = self._feeding.get(feed.subscription)
        if feeds is not None and feeds.get(peer) is feed:
            del feeds[peer]
            if not feeds:
                del self._feeding[feed.subscription]

    def _pacer_idle(self, pacer: RetainedPacer) -> None:
        if self._pacers.get(pacer.peer) is pacer:
            del self._pacers[pacer.peer]

    def _retained_for(self, pattern: str, policy: str) -> Iterator[Publication]:
        """Retained events of every topic the subscription matches (not only its exact topic),
        made as they are taken: a feed holds this iterator, not the events.

        An exact topic is one lookup; a pattern scans the plain retained topics
        (at most ``max_retained``, references copied first: they may change
        between turns); namespaces find theirs by their own index.
        """
        if policy == EXACT:
            one = self._retained.get(pattern)
            plain = [] if one is None else [one]
        else:
            plain = list(self._retained.values())
        for publication in plain:
            if policy == EXACT or matches(pattern, policy, publication.topic):
                yield publication
        for namespace in self._namespaces:
            for topic, args, key in namespace.retained(pattern, policy):
                yield Publication(self._new_publication_id(), topic, args=args, conflation_key=key)

    # -- errors ------------------------------------------------------------

    def _refuse(
        self,
        peer: IWampPeer,
        msg: Any,
        uri: str,
        text: str,
        *,
        only_if_acknowledged: bool = False,
    ) -> None:
        """Count and log a refused request once; answer unless an unacknowledged PUBLISH."""
        self._stats.errors_sent[uri] += 1
        _log.debug(
            "refused {kind} from session {session}: {uri} {text}",
            kind=type(msg).__name__.upper(),
            session=peer.session_id,
            uri=uri,
            text=text,
        )
        if only_if_acknowledged and not msg.acknowledge:
            return
        peer.send(error_reply(msg.MESSAGE_TYPE, msg.request, uri, text))
