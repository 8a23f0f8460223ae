-- 011_renewal_checked.sql — a re-certification challenge goes only to a
-- certification still live when it is asked; retention keeps the evidence that
-- verified a live certification.
--
-- milterctl recertify reads the live certifications once, then asks each in
-- turn (a challenge mail takes a while to hand over). An address change or a
-- revocation committed in between was not seen: the run asked the old address
-- again, and its request revoked the one report_address() had just made for the
-- new address; a revoked account was asked too, and its reply certified it
-- again. request_renewal() takes the account's lock, the one report_address()
-- and revoke() take, reads the certification again, and asks only if it is
-- still the account's live one with nothing newer.
CREATE FUNCTION milterd.request_renewal(p_id bigint, p_ttl interval,
    p_accounts_per_address integer DEFAULT 1) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	acct text;
	addr text;
	lng text;
BEGIN
	SELECT account INTO acct FROM milterd.requests WHERE id = p_id;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	PERFORM milterd.lock_account(acct);
	-- A statement after the lock: it sees what committed before the lock came.
	SELECT c.email, c.lang INTO addr, lng FROM milterd.requests c
	 WHERE c.id = p_id AND c.state = 'verified'
	   AND (c.valid_until IS NULL OR c.valid_until > now())
	   AND NOT EXISTS (SELECT 1 FROM milterd.requests n
			    WHERE n.account = c.account AND n.id > c.id AND n.state <> 'revoked');
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	RETURN milterd.request_verification(acct, addr, p_ttl, lng, p_accounts_per_address);
END $$;

-- Evidence older than p_keep, except, for a live request, its latest row and
-- the row that verified it (007 kept the latest only: a later copy of the reply,
-- already_verified, left the verification itself to be pruned while it stood).
CREATE OR REPLACE FUNCTION milterd.prune_evidence(p_keep interval, p_batch integer) RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH old AS (
		SELECT e.id FROM milterd.evidence e
		 WHERE e.decided_at < now() - p_keep
		   AND NOT EXISTS (
			SELECT 1 FROM milterd.requests r
			 WHERE r.id = e.request_id
			   AND milterd.state_now(r.state, r.expires_at, r.valid_until)
			       IN ('pending', 'verified')
			   AND (e.reason = 'verified'
				OR e.id = (SELECT max(l.id) FROM milterd.evidence l
					    WHERE l.request_id = r.id)))
		 ORDER BY e.id LIMIT p_batch),
	gone AS (DELETE FROM milterd.evidence WHERE id IN (SELECT id FROM old) RETURNING 1)
	SELECT count(*)::integer FROM gone
$$;
