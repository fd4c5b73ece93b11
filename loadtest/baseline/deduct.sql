-- pgbench script: one textbook double-entry deduction of 100, in one transaction.
-- Run with: pgbench -n -M prepared -D unit_years=<n> -f deduct.sql
-- Postings: +100 on the unit-year's deducted account (debit),
--           -100 on the grant account (credit); each entry sums to 0.
\set uy random(1, :unit_years)
\set rnd random(1, 9000000000000)
BEGIN;
-- 1. lock the unit-year row (serialises deductions on the same unit-year)
SELECT deducted_account, grant_account FROM bl_unit_years WHERE id = :uy FOR UPDATE \gset
-- 2. journal entry
INSERT INTO bl_entries (unit_year_id, created_at, request_id)
  VALUES (:uy, now(), :client_id::text || '-' || :rnd::text) RETURNING id AS entry_id \gset
-- 3. its two postings
INSERT INTO bl_postings (entry_id, account_id, amount)
  VALUES (:entry_id, :deducted_account, 100), (:entry_id, :grant_account, -100);
-- 4. balances; the grant update is guarded so it never goes negative
WITH u AS (UPDATE bl_accounts SET balance = balance - 100
           WHERE id = :grant_account AND balance >= 100 RETURNING 1)
SELECT count(*) AS grant_ok FROM u \gset
\if :grant_ok = 0
  -- insufficient grant balance: the textbook design rejects the deduction
  ROLLBACK;
\else
  UPDATE bl_accounts SET balance = balance + 100 WHERE id = :deducted_account;
  -- 5. idempotency record (unique request id)
  INSERT INTO bl_idempotency (request_id, response)
    VALUES (:client_id::text || '-' || :rnd::text, convert_to(:entry_id::text, 'UTF8'));
  COMMIT;
\endif
