-- Write shape a (today's): one batch of 30 deductions as the ledger writes them: deduction, journal entry, two
-- postings, request-id record, both balances. Run once with pgbench against a scratch copy of a migrated ledger
-- database holding grant 1 and accounts 1 and 2, with synchronous_commit off so only the statements' work is timed:
--   PGOPTIONS='-c synchronous_commit=off' pgbench -n -f loadtest/writeshapes/a.sql <scratch database>
-- (per-deduction time = pgbench's average latency / 30). See docs/benchmarks.md, 'Cutting the writes'.
BEGIN;
WITH d AS (INSERT INTO deductions (id, grant_id, provider_uscc, invoice_no, invoice_amount_fen, invoice_date, requested_fen, applied_fen, created_at)
           SELECT nextval('deductions_id_seq'), 1, '91510100MA61R1234W', md5(random()::text), 200, '2026-06-01', 100, 100, now() FROM generate_series(1, 30) RETURNING id),
     e AS (INSERT INTO journal_entries (id, kind, created_at, year, unit_uscc, provider_uscc, grant_id, deduction_id, request_id, caller, memo, chain_key, prev_hash, hash)
           SELECT nextval('journal_entries_id_seq'), 3, now(), 2026, '91510100MA61R5678X', '91510100MA61R1234W', 1, d.id, md5(random()::text), 'provider:91510100MA61R1234W', 'invoice x', '91510100MA61R5678X:2026', sha256('a'), sha256('b') FROM d RETURNING id)
INSERT INTO postings (entry_id, account_id, amount_fen) SELECT e.id, a.acc, a.amt FROM e CROSS JOIN (VALUES (1, 100), (2, -100)) AS a(acc, amt);
INSERT INTO idempotency_records (caller, request_id, method, request_hash, outcome, message, response, created_at)
  SELECT 'provider:91510100MA61R1234W', md5(random()::text), 'Deduct', sha256('h'), 'OK', NULL, '\x0102030405060708090a'::bytea, now() FROM generate_series(1, 30);
UPDATE accounts SET balance_fen = balance_fen + 3000 WHERE id = 1;
UPDATE accounts SET balance_fen = balance_fen - 3000 WHERE id = 2;
COMMIT;
