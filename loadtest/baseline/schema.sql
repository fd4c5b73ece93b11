-- Textbook double-entry deduction baseline: schema + seed.
-- Usage: psql -v ON_ERROR_STOP=1 -v unit_years=1000 -f schema.sql
-- Creates the bl_* tables in the current database (dropping any previous ones)
-- and seeds :unit_years unit-years, each with two accounts:
--   deducted account id = 2*i - 1, balance 0
--   grant account    id = 2*i,     balance 10^15

\if :{?unit_years}
\else
  \echo 'schema.sql: set the unit_years variable, e.g. psql -v unit_years=1000 -f schema.sql'
  \quit
\endif

SET client_min_messages = warning;

DROP TABLE IF EXISTS bl_idempotency;
DROP TABLE IF EXISTS bl_postings;
DROP TABLE IF EXISTS bl_entries;
DROP TABLE IF EXISTS bl_accounts;
DROP TABLE IF EXISTS bl_unit_years;

CREATE TABLE bl_unit_years (
    id               bigint PRIMARY KEY,
    deducted_account bigint NOT NULL,
    grant_account    bigint NOT NULL
);

CREATE TABLE bl_accounts (
    id      bigint PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);

CREATE TABLE bl_entries (
    id           bigserial PRIMARY KEY,
    unit_year_id bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    request_id   text NOT NULL
);

CREATE TABLE bl_postings (
    id         bigserial PRIMARY KEY,
    entry_id   bigint NOT NULL REFERENCES bl_entries,
    account_id bigint NOT NULL REFERENCES bl_accounts,
    amount     bigint NOT NULL
);

CREATE TABLE bl_idempotency (
    request_id text PRIMARY KEY,
    response   bytea
);

-- Secondary indexes a real ledger would have.
CREATE INDEX bl_postings_account_id_idx   ON bl_postings (account_id);
CREATE INDEX bl_postings_entry_id_idx     ON bl_postings (entry_id);
CREATE INDEX bl_entries_unit_year_id_idx  ON bl_entries (unit_year_id);

INSERT INTO bl_accounts (id, balance)
SELECT a.id, a.balance
FROM generate_series(1, :unit_years) AS g(i)
CROSS JOIN LATERAL (VALUES (2 * g.i - 1, 0::bigint),
                           (2 * g.i,     1000000000000000::bigint)) AS a(id, balance);

INSERT INTO bl_unit_years (id, deducted_account, grant_account)
SELECT g.i, 2 * g.i - 1, 2 * g.i
FROM generate_series(1, :unit_years) AS g(i);

ANALYZE bl_unit_years;
ANALYZE bl_accounts;
ANALYZE bl_entries;
ANALYZE bl_postings;
ANALYZE bl_idempotency;
