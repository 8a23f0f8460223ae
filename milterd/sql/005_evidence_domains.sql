-- 005_evidence_domains.sql — the reason and stage of an evidence row are checked
-- by domains instead of table CHECK constraints: the same values are allowed and
-- a wrong one is still refused. PostgreSQL keeps a domain's check compiled for the
-- session, but reads a table CHECK back from its stored text for every INSERT;
-- that was about 10 µs of each decision (pgbench on decide(), tests/bench).
-- The evidence table is rewritten once, under a lock: decisions wait meanwhile
-- (or get a 451 after db_timeout): about 3 s per million rows on the bench machine.
CREATE DOMAIN milterd.reason_code AS text
	CHECK (VALUE IN ('verified', 'already_verified', 'unknown_token', 'expired',
		'from_mismatch', 'domain_not_allowed', 'not_authenticated',
		'token_not_signed', 'malformed', 'temporary'));
CREATE DOMAIN milterd.decision_stage AS text
	CHECK (VALUE IN ('rcpt', 'eom'));

ALTER TABLE milterd.evidence
	DROP CONSTRAINT evidence_reason_check,
	DROP CONSTRAINT evidence_stage_check,
	ALTER COLUMN reason TYPE milterd.reason_code,
	ALTER COLUMN stage TYPE milterd.decision_stage;
