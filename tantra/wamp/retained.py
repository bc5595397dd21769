"""Sending a subscription's retained events a chunk per reactor turn, while the client reads.

Owns: :class:`RetainedFeed`, the retained events one SUBSCRIBE with
``get_retained`` still has to send (an iterator over the publications, which
builds each event only when its turn comes, and the topics that were sent
live since, whose retained event is stale and skipped); and
:class:`RetainedPacer`, one per session with feeds under way, which sends at
most ``retained_chunk`` of them per reactor turn and only while the client's
outbox is not paused.

Why: with 100 000 cached sensors, ``prefix tantra.reading.`` retains 100 000
events. Sent inline, one SUBSCRIBE held the reactor for seconds (every
device and client waited) and filled the client's outbox past its backlog
bound however fast it read. Dashboards' snapshots have the same size and are
paced the same way (``tantra.outbox.Outbox.send_snapshot``).

Ordering: SUBSCRIBED goes out first (the broker sends it before the feed
starts); live events are not held back, so they may come between the
retained ones; a topic sent live first has its retained event dropped (the
client has a newer one), so a retained event never follows a live event of
its topic. Each topic's newest reading reaches the client, once retained or
live, never older after newer.

Does not own: which publications are retained (``tantra.wamp.broker``),
holding or conflating while the client is slow (``tantra.wamp.outbox``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tantra.wamp.events import EventGroup, RawEvent

if TYPE_CHECKING:  # the broker imports this module
    from tantra.wamp.broker import Publication
    from tantra.wamp.peer import IWampPeer


class RetainedFeed:
    """What one subscription still owes one session of its retained events."""

    __slots__ = ("_publications", "_stale", "policy", "subscription")

    def __init__(self, subscription: int, policy: str, publications: Iterator[Publication]):
        self.subscription = subscription
        self.policy = policy
        #: References only: events are built a chunk at a time, when sent.
        self._publications: Iterator[Publication] | None = publications
        #: Topics sent live on this subscription since it was made.
        self._stale: set[str] = set()

    @property
    def done(self) -> bool:
        return self._publications is None

    def sent_live(self, topic: str) -> None:
        """An event of ``topic`` went out live: its retained one would be older."""
        if self._publications is not None:
            self._stale.add(topic)

    def take(self, peer: IWampPeer, count: int) -> tuple[int, list[tuple[RawEvent, Hashable]]]:
        """Look at the next ``count`` publications (or up to the end, which counts as one):
        how many were looked at, and the events among them ``peer`` is to get."""
        publications = self._publications
        if publications is None:
            return 0, []
        items = []
        stale = self._stale
        looked = 0
        while looked < count:
            looked += 1
            publication = next(publications, None)
            if publication is None:
                self.stop()
                break
            if publication.topic in stale or not publication.reaches(peer):
                continue
            items.append(publication.event_item(self.subscription, self.policy, retained=True))
        return looked, items

    def stop(self) -> None:
        """Forget what is left (done, unsubscribed or the session left)."""
        self._publications = None
        self._stale = set()


class RetainedPacer:
    """One session's feeds, sent a chunk per reactor turn while its outbox has room.

    Feeds go in the order of their SUBSCRIBEs; a chunk is ``chunk`` publications
    looked at, written as one :class:`EventGroup` (one write). Paused (the
    client's send buffer is full), nothing is sent until the outbox says it
    drained (``IWampPeer.when_writable``): what waits is the iterators, never
    encoded events, so a client that reads slowly costs a transport buffer,
    and one that stops reading is given up by its outbox's stall timer as usual.
    """

    def __init__(
        self,
        peer: IWampPeer,
        clock: IReactorTime,
        chunk: int,
        send: Callable[[IWampPeer, EventGroup], None],
        finished: Callable[[IWampPeer, RetainedFeed], None],
        on_idle: Callable[[RetainedPacer], None],
    ):
        """``send`` writes a chunk; ``finished`` hears of every feed that ends
        (sent, replaced, cancelled), ``on_idle`` that none is left."""
        self.peer = peer
        self._clock = clock
        self._chunk = chunk
        self._send = send
        self._finished = finished
        self._on_idle = on_idle
        self.feeds: dict[int, RetainedFeed] = {}  # by subscription id, in SUBSCRIBE order
        self._call: IDelayedCall | None = None
        peer.when_writable(self._writable)

    def add(self, feed: RetainedFeed) -> None:
        """Send ``feed`` after the others (a repeated SUBSCRIBE starts its feed again)."""
        self._end(self.feeds.pop(feed.subscription, None))
        self.feeds[feed.subscription] = feed
        self._schedule()

    def cancel(self, subscription: int) -> None:
        self._end(self.feeds.pop(subscription, None))
        if not self.feeds:
            self.stop()

    def _end(self, feed: RetainedFeed | None) -> None:
        if feed is not None:
            feed.stop()
            self._finished(self.peer, feed)

    def stop(self) -> None:
        """Drop every feed and the scheduled turn (the session left, or nothing is left)."""
        feeds = list(self.feeds.values())
        self.feeds.clear()
        for feed in feeds:
            self._end(feed)
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        self._on_idle(self)

    def _schedule(self) -> None:
        if self._call is None and self.feeds:
            self._call = self._clock.callLater(0, self._turn)

    def _writable(self) -> None:
        """The outbox drained: carry on next turn (nothing was scheduled while paused)."""
        self._schedule()

    def _turn(self) -> None:
        self._call = None
        peer, left = self.peer, self._chunk
        while self.feeds and left > 0 and peer.writable():
            feed = next(iter(self.feeds.values()))
            looked, items = feed.take(peer, left)
            left -= looked
            if items:
                self._send(peer, EventGroup(items))
            if feed.done:
                self._end(self.feeds.pop(feed.subscription, None))  # None: stopped while sending
        if not self.feeds:
            self.stop()
        elif peer.writable():
            self._schedule()  # yield to the reactor: ingest and other clients run between
        # else: paused; _writable schedules the next turn
