-- Tantra history, schema 2 (SQLite): the signed-UDP replay marks.
-- Per device, the highest seq among its signed readings stored so far
-- (tantra.security.replay). Written by the history writer in the same
-- transaction as the readings it covers, so it is never ahead of or behind
-- what is stored; read at start-up as the exact replay floor.
CREATE TABLE replay_mark (
    device  TEXT PRIMARY KEY,
    mark    INTEGER NOT NULL
);
