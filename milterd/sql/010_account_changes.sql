-- 010_account_changes.sql — the backend's changes to one account happen in
-- turn, and an address change ends what a reply racing it verified.
--
-- request_verification(), report_address() and revoke() of one account now
-- wait for each other (a transaction lock on the account). Each revoked the
-- account's pending requests without seeing one that another call had
-- written but not yet committed: two requests at once left two pending
-- tokens; a request for the old address at the moment of an address change
-- stayed pending, a way back in for the old address; a revocation at the
-- moment of a request left the new request pending.
--
-- report_address() now revokes the old address's pending requests before it
-- ends the live certification. A reply from the old address verifying at
-- that moment either waits for the revocation (row lock) and finds its
-- request revoked, or commits first and is ended by the second statement,
-- which sees it. In the old order such a verification outlived the change,
-- and record() (pending row, then the verified one it renews) and
-- report_address() (verified, then pending) could deadlock.

-- The account's lock, held until the transaction ends: the one key every call
-- that changes an account takes.
CREATE FUNCTION milterd.lock_account(p_account text) RETURNS void
LANGUAGE sql VOLATILE AS $$
	SELECT pg_advisory_xact_lock(hashtext('milterd.account'), hashtext(p_account))
$$;

CREATE OR REPLACE FUNCTION milterd.request_verification(p_account text, p_email text,
    p_ttl interval DEFAULT interval '7 days', p_lang text DEFAULT 'fr',
    p_accounts_per_address integer DEFAULT 1) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	tok text := milterd.base32(gen_random_bytes(16));
	addr text := lower(btrim(p_email));
BEGIN
	IF p_account IS NULL OR btrim(p_account) = '' THEN
		RAISE EXCEPTION 'milterd: account must not be empty' USING ERRCODE = '22023';
	END IF;
	IF addr !~ '^[^@[:space:]]+@[^@[:space:]]+$' OR length(addr) > 320 THEN
		RAISE EXCEPTION 'milterd: % is not an email address', p_email USING ERRCODE = '22023';
	END IF;
	IF p_ttl IS NULL OR p_ttl <= interval '0' THEN
		RAISE EXCEPTION 'milterd: ttl must be positive' USING ERRCODE = '22023';
	END IF;
	IF coalesce(p_lang, '') NOT IN ('fr', 'en') THEN
		RAISE EXCEPTION 'milterd: language must be fr or en' USING ERRCODE = '22023';
	END IF;
	PERFORM milterd.lock_account(p_account);
	IF coalesce(p_accounts_per_address, 0) > 0
	   AND milterd.address_holders(addr, p_account) >= p_accounts_per_address THEN
		RAISE EXCEPTION 'milterd: % already certifies another account', addr
		      USING ERRCODE = '23505',
			    HINT = 'One address certifies one account: the other account must end its certification first.';
	END IF;
	UPDATE milterd.requests SET state = 'revoked', revoked_at = now()
	 WHERE account = p_account AND state = 'pending';
	INSERT INTO milterd.requests (account, email, token_hash, expires_at, lang)
	VALUES (p_account, addr, sha256(convert_to(tok, 'UTF8')), now() + p_ttl, p_lang);
	RETURN tok;
END $$;

CREATE OR REPLACE FUNCTION milterd.report_address(p_account text, p_email text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	addr text := lower(btrim(p_email));
	n integer;
BEGIN
	IF addr !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'milterd: % is not an email address', p_email USING ERRCODE = '22023';
	END IF;
	PERFORM milterd.lock_account(p_account);
	UPDATE milterd.requests SET state = 'revoked', revoked_at = now()
	 WHERE account = p_account AND state = 'pending' AND email <> addr;
	UPDATE milterd.requests SET state = 'address_changed', ended_at = now()
	 WHERE account = p_account AND state = 'verified' AND email <> addr;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN CASE WHEN n > 0 THEN 'ended' ELSE 'unchanged' END;
END $$;

CREATE OR REPLACE FUNCTION milterd.revoke(p_account text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	n integer;
BEGIN
	PERFORM milterd.lock_account(p_account);
	UPDATE milterd.requests SET state = 'revoked', revoked_at = now(),
	       ended_at = CASE WHEN state = 'verified' THEN now() END
	 WHERE account = p_account AND state IN ('pending', 'verified');
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;
