-- Tantra history, schema 3: integers exactly, whatever their size.
-- reading.value holds a number for ranges, rollups and aggregates, and a
-- double rounds integers beyond 2^53. For an integer reading (kind 1)
-- outside [-2^53, 2^53] this table holds its decimal digits, and reads
-- return those. A side table, not a column: only such rows pay for it
-- (a seventh column slowed every COPY on PostgreSQL by about 7 %). Rows
-- stored before this schema have none: their value was already rounded.
CREATE TABLE reading_exact (
    id      BIGINT PRIMARY KEY,
    digits  TEXT NOT NULL
);
