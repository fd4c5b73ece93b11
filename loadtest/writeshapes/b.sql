-- Write shape b: the same batch with the two legs inline on the journal entry (debit_account_id,
-- credit_account_id, amount_fen added to journal_entries in the scratch copy, its balance trigger dropped) and no
-- postings rows. Shapes c and d are b after dropping, in the scratch copy, the foreign keys deductions -> grants,
-- journal_entries -> deductions and journal_entries -> grants (c), then also the journal's created_at and year
-- indexes (d). Run as a.sql is.
BEGIN;
WITH d AS (INSERT INTO deductions (id, grant_id, provider_uscc, invoice_no, invoice_amount_fen, invoice_date, requested_fen, applied_fen, created_at)
           SELECT nextval('deductions_id_seq'), 1, '91510100MA61R1234W', md5(random()::text), 200, '2026-06-01', 100, 100, now() FROM generate_series(1, 30) RETURNING id),
     e AS (INSERT INTO journal_entries (id, kind, created_at, year, unit_uscc, provider_uscc, grant_id, deduction_id, request_id, caller, memo, chain_key, prev_hash, hash, debit_account_id, credit_account_id, amount_fen)
           SELECT nextval('journal_entries_id_seq'), 3, now(), 2026, '91510100MA61R5678X', '91510100MA61R1234W', 1, d.id, md5(random()::text), 'provider:91510100MA61R1234W', 'invoice x', '91510100MA61R5678X:2026', sha256('a'), sha256('b'), 1, 2, 100 FROM d RETURNING id)
SELECT count(*) FROM e;
INSERT INTO idempotency_records (caller, request_id, method, request_hash, outcome, message, response, created_at)
  SELECT 'provider:91510100MA61R1234W', md5(random()::text), 'Deduct', sha256('h'), 'OK', NULL, '\x0102030405060708090a'::bytea, now() FROM generate_series(1, 30);
UPDATE accounts SET balance_fen = balance_fen + 3000 WHERE id = 1;
UPDATE accounts SET balance_fen = balance_fen - 3000 WHERE id = 2;
COMMIT;
