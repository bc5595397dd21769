"""Retained events of a ``get_retained`` SUBSCRIBE go out a chunk per reactor turn, while the
client reads (``tantra.wamp.retained``), without sockets: the sessions, real outboxes and
the task.Clock of ``tests.test_wamp_limits``.

What is pinned: SUBSCRIBED first, then every retained reading once, over several turns with
ingest and other clients served in between; a client whose buffer is full is paused (nothing
held for it), not dropped, and resumes; unsubscribing or leaving mid-way leaves nothing
behind; a topic sent live first never gets an (older) retained event after it.
"""

from __future__ import annotations

from tantra.wamp.limits import WampLimits
from tests.test_wamp_limits import (
    EVENT,
    SUBSCRIBED,
    OutboxConnection,
    Realm,
    one_turn,
    turns_until_idle,
    well_behaved_pair,
)

SENSORS = 1000
CHUNK = 100
UNSUBSCRIBE, UNSUBSCRIBED = 34, 35


def filled() -> Realm:
    realm = Realm(WampLimits(retained_chunk=CHUNK))
    realm.fill(SENSORS)
    return realm


def subscribe_everything(realm: Realm, connection_name="joiner"):
    session, connection = realm.join(connection_name)
    raw = [32, realm.request(), {"match": "prefix", "get_retained": True}, "tantra.reading."]
    realm.send(session, connection, raw)
    return session, connection


def sensors_of(events: list[list]) -> list[str]:
    return [e[4][0]["sensor"] for e in events]


def pacing_left(realm: Realm) -> bool:
    broker = realm.router.broker
    return bool(broker._pacers or broker._feeding)


def run_out(realm: Realm, connection: OutboxConnection) -> list[list]:
    """Turn until nothing is scheduled; everything the connection got meanwhile."""
    return turns_until_idle(realm.clock, connection, limit=1000)[1]


def test_retained_events_take_several_turns_and_other_work_runs_between():
    realm = filled()
    _, good, subscription = well_behaved_pair(realm)
    _, joiner = subscribe_everything(realm)
    assert [m[0] for m in joiner.take()] == [SUBSCRIBED]  # nothing retained inline
    one_turn(realm.clock)
    first = joiner.take(EVENT)
    assert 0 < len(first) <= CHUNK
    realm.reading("farm-9", "probe", 7.0)  # a device's reading while the feed runs
    one_turn(realm.clock)
    assert [r.sensor for r in realm.dashboard.readings[-1:]] == ["probe"]
    live = [e for e in good.take(EVENT) if e[1] == subscription]
    assert sensors_of(live) == ["probe"]  # another client is served meanwhile
    assert pacing_left(realm)
    got = first + joiner.take()
    more_turns, later = turns_until_idle(realm.clock, joiner)
    turns, got = 2 + more_turns, got + later
    assert turns >= SENSORS // CHUNK
    assert not pacing_left(realm)
    retained = [m for m in got if m[0] == EVENT and m[3].get("retained")]
    assert len(retained) == SENSORS


def test_every_retained_reading_arrives_once_after_subscribed_to_a_reading_client():
    """The sweep's case: a client that reads steadily, but whose buffer fills at each write,
    gets all of a retained set larger than the outbox's backlog bound, and is not dropped."""
    realm = filled()
    session, joiner = realm.join("joiner")
    joiner.outbox._max_held_bytes = 20_000  # well under the retained set (~130 KB)
    write = joiner.outbox._write

    def filling(payload: bytes, is_binary: bool) -> None:
        write(payload, is_binary)
        joiner.outbox.pauseProducing()

    joiner.outbox._write = filling
    raw = [32, realm.request(), {"match": "prefix", "get_retained": True}, "tantra.reading."]
    realm.send(session, joiner, raw)
    got = joiner.take()
    for _ in range(10 * SENSORS // CHUNK):
        joiner.outbox.resumeProducing()  # the client read what was written
        one_turn(realm.clock)
        got += joiner.take()
    assert not joiner.outbox._closed  # open: not given up for its backlog
    assert got[0][0] == SUBSCRIBED
    events = got[1:]
    assert all(m[0] == EVENT and m[1] == got[0][2] and m[3]["retained"] for m in events)
    assert sorted(sensors_of(events)) == sorted(f"s{n}" for n in range(SENSORS))
    assert {m[3]["topic"] for m in events} == {
        f"tantra.reading.d{n % 100}.s{n}" for n in range(SENSORS)
    }
    assert not pacing_left(realm)


def test_a_client_that_stops_reading_is_paused_not_dropped_and_resumes():
    realm = filled()
    _, joiner = subscribe_everything(realm)
    got = joiner.take()
    one_turn(realm.clock)
    got += joiner.take()
    joiner.outbox.pauseProducing()  # its send buffer is full
    for _ in range(20):
        realm.clock.advance(0.5)  # well inside stall_timeout (30 s)
    assert joiner.take() == []
    assert joiner.outbox.backlog == 0  # nothing was built or held for it meanwhile
    assert pacing_left(realm)
    joiner.outbox.resumeProducing()  # it read: the feed carries on
    got += joiner.take() + run_out(realm, joiner)
    assert joiner.outbox.writable  # not given up
    assert len([m for m in got if m[0] == EVENT]) == SENSORS
    assert not pacing_left(realm)


def test_a_buffer_that_fills_during_a_chunk_stops_the_next_one():
    """A chunk is one write (at most one chunk beyond the transport's buffer); the outbox
    pausing during it stops the feed until it drains, with nothing held."""
    realm = filled()
    _, joiner = subscribe_everything(realm)
    joiner.take()
    write = joiner.outbox._write

    def filling(payload: bytes, is_binary: bool) -> None:
        write(payload, is_binary)
        joiner.outbox.pauseProducing()  # Twisted pauses the producer inside write()

    joiner.outbox._write = filling
    one_turn(realm.clock)
    assert len(joiner.take(EVENT)) == CHUNK
    for _ in range(5):
        one_turn(realm.clock)
    assert joiner.take() == [] and joiner.outbox.backlog == 0
    joiner.outbox._write = write
    joiner.outbox.resumeProducing()
    assert len(run_out(realm, joiner)) == SENSORS - CHUNK


def test_unsubscribing_mid_way_stops_the_feed_and_leaves_nothing_scheduled():
    realm = filled()
    session, joiner = subscribe_everything(realm)
    [[_, _, subscription]] = joiner.take(SUBSCRIBED)
    one_turn(realm.clock)
    assert joiner.take(EVENT)
    realm.send(session, joiner, [UNSUBSCRIBE, realm.request(), subscription])
    assert [m[0] for m in joiner.take()] == [UNSUBSCRIBED]
    assert not pacing_left(realm)
    assert realm.clock.getDelayedCalls() == []
    assert run_out(realm, joiner) == []


def test_leaving_mid_way_stops_the_feed_and_leaves_nothing_scheduled():
    realm = filled()
    session, joiner = subscribe_everything(realm)
    one_turn(realm.clock)
    joiner.take()
    session.connection_lost()
    assert not pacing_left(realm)
    assert realm.clock.getDelayedCalls() == []
    assert joiner.outbox.on_writable is not None  # a stale callback does nothing:
    joiner.outbox.on_writable()
    assert realm.clock.getDelayedCalls() == []


def test_a_live_event_is_never_followed_by_an_older_retained_one_of_its_topic():
    realm = filled()
    _, joiner = subscribe_everything(realm)
    joiner.take()
    one_turn(realm.clock)
    sent_early = sensors_of(joiner.take(EVENT))
    early = int(sent_early[0][1:])
    late = next(n for n in range(SENSORS - 1, -1, -1) if f"s{n}" not in sent_early)
    for n in (early, late):  # one already sent retained, one not yet
        realm.reading(f"d{n % 100}", f"s{n}", 10_000.0 + n)
    got = run_out(realm, joiner)
    for n in (early, late):
        seen = [(bool(m[3].get("retained")), m[4][0]["value"]) for m in got if m[0] == EVENT
                and m[4][0]["sensor"] == f"s{n}"]  # fmt: skip
        assert seen[-1] == (False, 10_000.0 + n)  # the newest comes last, live
        assert (True, float(n)) not in seen  # never the older retained after it
    # Every sensor once, but the one sent retained before its live reading: twice.
    everything = sorted(sensors_of([m for m in got if m[0] == EVENT]) + sent_early)
    assert everything == sorted([f"s{n}" for n in range(SENSORS)] + [f"s{early}"])


def test_a_session_holds_the_matching_set_of_one_feed_at_a_time():
    """Many get_retained SUBSCRIBEs in one session: each feed's publications are
    gathered only when its turn comes (a lazy iterator), so a client cannot pin
    a copy of the cache per subscription while it keeps its buffer full."""
    realm = filled()
    namespace = realm.router.broker._namespaces[0]
    gathered: list[str] = []
    real_retained = namespace.retained

    def counting(pattern, policy):
        gathered.append(pattern)
        return real_retained(pattern, policy)

    namespace.retained = counting
    session, connection = realm.join("many")
    for prefix in ("tantra.reading.", "tantra.reading", "tantra.read", "tantra.", "tantra"):
        raw = [32, realm.request(), {"match": "prefix", "get_retained": True}, prefix]
        realm.send(session, connection, raw)
    assert gathered == [], "nothing gathered at SUBSCRIBE time"
    one_turn(realm.clock)
    assert len(gathered) == 1, "only the first feed has started"
    events = connection.take(EVENT) + run_out(realm, connection)
    assert len(gathered) == 5 and len([e for e in events if e[0] == EVENT]) == 5 * SENSORS
