-- 008_holders_plan.sql — the count of an address's other certifications
-- (address_holders) without planning its query at every call.
--
-- 007 wrote it in SQL. PostgreSQL inlines an SQL function only when its body is
-- a single expression; this one holds an aggregate, so each call went through
-- the SQL-function executor, which plans its query afresh for every statement
-- that calls it: the RCPT lookup and record() each paid a plan, some 0.14 ms of
-- PostgreSQL CPU (pg_stat_statements, track_planning: 6,000 plans for 3,000
-- verifications, 838 ms planning against 165 ms executing), a quarter of all
-- the database's work for a verification. In PL/pgSQL the plan is cached per
-- session. Same arguments, result and meaning.
CREATE OR REPLACE FUNCTION milterd.address_holders(p_email text, p_account text)
RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT count(DISTINCT account)::integer FROM milterd.requests
		 WHERE email = p_email AND state = 'verified' AND account <> p_account
		   AND (valid_until IS NULL OR valid_until > now()));
END $$;
