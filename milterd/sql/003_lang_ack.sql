-- 003_lang_ack.sql — the agent's language on each request (challenge mail and
-- SMTP replies), and acknowledgement by the backend once it acted on a
-- verification.

ALTER TABLE milterd.requests
	ADD COLUMN lang text NOT NULL DEFAULT 'fr' CHECK (lang IN ('fr', 'en'));

CREATE OR REPLACE VIEW milterd.verifications AS
	SELECT id, account, email,
	       CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired'
		    ELSE state END AS state,
	       created_at, expires_at, verified_at, revoked_at, attempts, acknowledged_at, lang
	FROM milterd.requests;

-- One signature with an optional language; the two-argument and three-argument
-- calls keep working.
DROP FUNCTION milterd.request_verification(text, text, interval);
CREATE FUNCTION milterd.request_verification(p_account text, p_email text,
    p_ttl interval DEFAULT interval '7 days', p_lang text DEFAULT 'fr') RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	tok text := milterd.base32(gen_random_bytes(16));
	addr text := lower(btrim(p_email));
BEGIN
	IF p_account IS NULL OR btrim(p_account) = '' THEN
		RAISE EXCEPTION 'milterd: account must not be empty' USING ERRCODE = '22023';
	END IF;
	IF addr !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'milterd: % is not an email address', p_email USING ERRCODE = '22023';
	END IF;
	IF p_ttl IS NULL OR p_ttl <= interval '0' THEN
		RAISE EXCEPTION 'milterd: ttl must be positive' USING ERRCODE = '22023';
	END IF;
	IF coalesce(p_lang, '') NOT IN ('fr', 'en') THEN
		RAISE EXCEPTION 'milterd: language must be fr or en' USING ERRCODE = '22023';
	END IF;
	UPDATE milterd.requests SET state = 'revoked', revoked_at = now()
	 WHERE account = p_account AND state = 'pending';
	INSERT INTO milterd.requests (account, email, token_hash, expires_at, lang)
	VALUES (p_account, addr, sha256(convert_to(tok, 'UTF8')), now() + p_ttl, p_lang);
	RETURN tok;
END $$;

-- The backend acted on the account's verification (e.g. approved the user):
-- returns how many verified requests were marked.
CREATE FUNCTION milterd.acknowledge(p_account text) RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH a AS (UPDATE milterd.requests SET acknowledged_at = now()
		    WHERE account = p_account AND state = 'verified' AND acknowledged_at IS NULL
		    RETURNING 1)
	SELECT count(*)::integer FROM a
$$;
