-- 001_schema.sql — milterd's schema: verification requests, evidence, the SQL API.
-- Applied by `milterctl db migrate` inside one transaction; never edit a
-- released migration, add the next number instead.

CREATE EXTENSION IF NOT EXISTS pgcrypto;	-- gen_random_bytes()
CREATE SCHEMA IF NOT EXISTS milterd;

-- One row per request. Only the SHA-256 of the token is stored.
CREATE TABLE milterd.requests (
	id		bigserial PRIMARY KEY,
	account		text NOT NULL CHECK (account <> ''),
	email		text NOT NULL CHECK (email = lower(btrim(email)) AND email LIKE '_%@_%'),
	token_hash	bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
	state		text NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'verified', 'expired', 'revoked')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	verified_at	timestamptz,
	revoked_at	timestamptz,
	attempts	integer NOT NULL DEFAULT 0,
	acknowledged_at	timestamptz		-- set by the backend once it acted
);
CREATE INDEX requests_account ON milterd.requests (account, created_at DESC);
CREATE INDEX requests_pending ON milterd.requests (expires_at) WHERE state = 'pending';

-- What backends read: the state with expiry applied at read time, so a
-- request is never "pending" past its deadline even if nothing swept it.
CREATE VIEW milterd.verifications AS
	SELECT id, account, email,
	       CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired'
		    ELSE state END AS state,
	       created_at, expires_at, verified_at, revoked_at, attempts, acknowledged_at
	FROM milterd.requests;

-- Every decision milterd takes on a verification mail, pass or fail.
CREATE TABLE milterd.evidence (
	id		bigserial PRIMARY KEY,
	request_id	bigint REFERENCES milterd.requests (id) ON DELETE SET NULL,
	decided_at	timestamptz NOT NULL DEFAULT now(),
	reason		text NOT NULL CHECK (reason IN ('verified', 'already_verified',
			'unknown_token', 'expired', 'from_mismatch', 'domain_not_allowed',
			'not_authenticated', 'token_not_signed', 'malformed', 'temporary')),
	stage		text NOT NULL CHECK (stage IN ('rcpt', 'eom')),
	token_hash_prefix text,
	client_addr	text,
	helo		text,
	mail_from	text,
	header_from	text,
	message_id	text,
	queue_id	text,
	dkim_domain	text,
	dkim_selector	text,
	dkim_algorithm	text,
	dkim_key_bits	integer,
	dnssec		text,
	spf_result	text,
	detail		text,
	mta_host	text DEFAULT inet_server_addr()::text
);
CREATE INDEX evidence_request ON milterd.evidence (request_id);

-- RFC 4648 base32, lowercase, no padding.
CREATE FUNCTION milterd.base32(data bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	alphabet constant text := 'abcdefghijklmnopqrstuvwxyz234567';
	bits bigint := 0;
	nbits int := 0;
	out text := '';
BEGIN
	FOR i IN 0 .. length(data) - 1 LOOP
		bits := (bits << 8) | get_byte(data, i);
		nbits := nbits + 8;
		WHILE nbits >= 5 LOOP
			nbits := nbits - 5;
			out := out || substr(alphabet, ((bits >> nbits) & 31)::int + 1, 1);
		END LOOP;
		bits := bits & ((1::bigint << nbits) - 1);
	END LOOP;
	IF nbits > 0 THEN
		out := out || substr(alphabet, ((bits << (5 - nbits)) & 31)::int + 1, 1);
	END IF;
	RETURN out;
END $$;

-- Creates a request and returns its token, once. A pending request for the
-- same account is superseded (revoked).
CREATE FUNCTION milterd.request_verification(p_account text, p_email text,
    p_ttl interval DEFAULT interval '7 days') RETURNS text
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
	UPDATE milterd.requests SET state = 'revoked', revoked_at = now()
	 WHERE account = p_account AND state = 'pending';
	INSERT INTO milterd.requests (account, email, token_hash, expires_at)
	VALUES (p_account, addr, sha256(convert_to(tok, 'UTF8')), now() + p_ttl);
	RETURN tok;
END $$;

-- The latest request of an account, as backends see it.
CREATE FUNCTION milterd.verification_status(p_account text)
RETURNS TABLE (account text, email text, state text, created_at timestamptz,
	       expires_at timestamptz, verified_at timestamptz)
LANGUAGE sql STABLE AS $$
	SELECT v.account, v.email, v.state, v.created_at, v.expires_at, v.verified_at
	  FROM milterd.verifications v
	 WHERE v.account = p_account
	 ORDER BY v.created_at DESC, v.id DESC
	 LIMIT 1
$$;

-- Revokes the pending request of an account; returns how many were revoked.
CREATE FUNCTION milterd.revoke(p_account text) RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH r AS (UPDATE milterd.requests SET state = 'revoked', revoked_at = now()
		    WHERE account = p_account AND state = 'pending' RETURNING 1)
	SELECT count(*)::integer FROM r
$$;

-- Backends LISTEN milterd_verified; the payload is the account.
CREATE FUNCTION milterd.notify_verified() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('milterd_verified', NEW.account);
	RETURN NEW;
END $$;

CREATE TRIGGER requests_verified AFTER UPDATE OF state ON milterd.requests
	FOR EACH ROW WHEN (NEW.state = 'verified' AND OLD.state <> 'verified')
	EXECUTE FUNCTION milterd.notify_verified();
