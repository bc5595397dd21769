-- Tantra history, schema 1 (PostgreSQL). Applied once, in one transaction, by
-- tantra.store.migrate; never edit a released file: add 002.sql instead.

CREATE TABLE series (
    id      BIGSERIAL PRIMARY KEY,
    device  TEXT NOT NULL,
    sensor  TEXT NOT NULL,
    unit    TEXT NOT NULL DEFAULT '',
    UNIQUE (device, sensor, unit)
);

-- id comes from reading_id (taken in blocks by the hub's single writer, in
-- the order the hub accepted readings). kind: 0 float, 1 integer, 2 boolean.
CREATE SEQUENCE reading_id;
CREATE TABLE reading (
    id      BIGINT PRIMARY KEY,
    series  BIGINT NOT NULL REFERENCES series (id),
    ts      BIGINT NOT NULL,
    value   DOUBLE PRECISION NOT NULL,
    kind    SMALLINT NOT NULL,
    seq     BIGINT
);
CREATE INDEX reading_series_ts ON reading (series, ts, id);
CREATE INDEX reading_ts ON reading (ts, id);

CREATE TABLE rollup_1m (
    series    BIGINT NOT NULL,
    t         BIGINT NOT NULL,
    n         BIGINT NOT NULL,
    total     DOUBLE PRECISION NOT NULL,
    lo        DOUBLE PRECISION NOT NULL,
    hi        DOUBLE PRECISION NOT NULL,
    first_ts  BIGINT NOT NULL,
    first_v   DOUBLE PRECISION NOT NULL,
    last_ts   BIGINT NOT NULL,
    last_v    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series, t)
);

CREATE TABLE rollup_1h (LIKE rollup_1m INCLUDING ALL);
