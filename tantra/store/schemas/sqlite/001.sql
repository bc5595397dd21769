-- Tantra history, schema 1 (SQLite). Applied once, in one transaction, by
-- tantra.store.migrate; never edit a released file: add 002.sql instead.

-- One row per (device, sensor, unit): readings point here instead of
-- repeating the names. unit is '' when the reading had none.
CREATE TABLE series (
    id      INTEGER PRIMARY KEY,
    device  TEXT NOT NULL,
    sensor  TEXT NOT NULL,
    unit    TEXT NOT NULL DEFAULT '',
    UNIQUE (device, sensor, unit)
);

-- Raw readings. id is the hub's cursor: assigned by the single writer in the
-- order the hub accepted readings. kind: 0 float, 1 integer, 2 boolean
-- (value holds 0/1), so the JSON value comes back exactly as it went in.
CREATE TABLE reading (
    id      INTEGER PRIMARY KEY,
    series  INTEGER NOT NULL REFERENCES series (id),
    ts      INTEGER NOT NULL,
    value   REAL NOT NULL,
    kind    INTEGER NOT NULL,
    seq     INTEGER
);
CREATE INDEX reading_series_ts ON reading (series, ts);
CREATE INDEX reading_ts ON reading (ts);

-- Rollups, maintained in the same transaction as the readings they cover.
-- t is the bucket start (ms, aligned to the epoch); first/last by ts.
CREATE TABLE rollup_1m (
    series    INTEGER NOT NULL,
    t         INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    total     REAL NOT NULL,
    lo        REAL NOT NULL,
    hi        REAL NOT NULL,
    first_ts  INTEGER NOT NULL,
    first_v   REAL NOT NULL,
    last_ts   INTEGER NOT NULL,
    last_v    REAL NOT NULL,
    PRIMARY KEY (series, t)
) WITHOUT ROWID;

CREATE TABLE rollup_1h (
    series    INTEGER NOT NULL,
    t         INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    total     REAL NOT NULL,
    lo        REAL NOT NULL,
    hi        REAL NOT NULL,
    first_ts  INTEGER NOT NULL,
    first_v   REAL NOT NULL,
    last_ts   INTEGER NOT NULL,
    last_v    REAL NOT NULL,
    PRIMARY KEY (series, t)
) WITHOUT ROWID;
