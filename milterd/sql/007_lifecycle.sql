-- 007_lifecycle.sql — a certification that stays true: one address, one live
-- certification (policy accounts_per_address); an address change or the end of
-- a validity period (re-certification) ends it; events a follower acknowledges;
-- retention. And the verification write returns the request's state, not a
-- reason: milterd's policy.c is the one place that maps states to reasons.
--
-- Existing rows keep their meaning: pending, verified, expired (a pending row
-- past its deadline) and revoked stay as they are; verified rows get no end
-- date (valid_until NULL) until `milterctl recertify` gives them one from the
-- policy, never sooner than recertify_notice from its first run.

-- States a certification can end in: lapsed (its validity ended without a new
-- reply), address_changed (the backend reported another address), renewed (a
-- re-certification replaced it).
ALTER TABLE milterd.requests DROP CONSTRAINT requests_state_check;
ALTER TABLE milterd.requests ADD CONSTRAINT requests_state_check
	CHECK (state IN ('pending', 'verified', 'expired', 'revoked', 'lapsed',
		'address_changed', 'renewed'));
ALTER TABLE milterd.requests
	ADD COLUMN valid_until timestamptz,		-- end of a verification; NULL: none
	ADD COLUMN ended_at timestamptz,		-- when a certification ended
	ADD COLUMN end_acknowledged_at timestamptz;	-- the backend acted on the end
-- Live certifications of an address, and events not yet acknowledged.
CREATE INDEX requests_verified_email ON milterd.requests (email) WHERE state = 'verified';
CREATE INDEX requests_unacknowledged ON milterd.requests (id)
	WHERE (verified_at IS NOT NULL AND acknowledged_at IS NULL)
	   OR (ended_at IS NOT NULL AND end_acknowledged_at IS NULL);

-- The one place where time turns a stored state into what it means now.
CREATE FUNCTION milterd.state_now(p_state text, p_expires_at timestamptz,
    p_valid_until timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT CASE WHEN p_state = 'pending' AND p_expires_at <= now() THEN 'expired'
		    WHEN p_state = 'verified' AND p_valid_until <= now() THEN 'lapsed'
		    ELSE p_state END
$$;

-- Other accounts an address certifies now (live certifications).
CREATE FUNCTION milterd.address_holders(p_email text, p_account text) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT count(DISTINCT account)::integer FROM milterd.requests
	 WHERE email = p_email AND state = 'verified' AND account <> p_account
	   AND (valid_until IS NULL OR valid_until > now())
$$;

CREATE OR REPLACE VIEW milterd.verifications AS
	SELECT id, account, email, milterd.state_now(state, expires_at, valid_until) AS state,
	       created_at, expires_at, verified_at, revoked_at, attempts, acknowledged_at, lang,
	       valid_until, ended_at, end_acknowledged_at
	FROM milterd.requests;

-- An account's certification as backends see it: its live verified request
-- if it has one (a re-certification may be pending beside it), else its
-- latest request. valid_until: when a verified one ends.
DROP FUNCTION milterd.verification_status(text);
CREATE FUNCTION milterd.verification_status(p_account text)
RETURNS TABLE (account text, email text, state text, created_at timestamptz,
	       expires_at timestamptz, verified_at timestamptz, valid_until timestamptz)
LANGUAGE sql STABLE AS $$
	SELECT v.account, v.email, v.state, v.created_at, v.expires_at, v.verified_at,
	       v.valid_until
	  FROM milterd.verifications v
	 WHERE v.account = p_account
	 ORDER BY v.state = 'verified' DESC, v.created_at DESC, v.id DESC
	 LIMIT 1
$$;

-- One address, one live certification: a request for an address that already
-- certifies p_accounts_per_address other accounts is refused at once (SQLSTATE
-- 23505, unique_violation) so the backend can tell the user at sign-up; the
-- decision checks again under a lock (record()). 0: no limit.
DROP FUNCTION milterd.request_verification(text, text, interval, text);
CREATE FUNCTION milterd.request_verification(p_account text, p_email text,
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

-- The verification write of a decision, guarded, in one call. For 'verified'
-- the request turns verified only if it is still pending, unexpired, with this
-- token hash and address, below the attempt limit, and the address certifies
-- fewer than p_accounts_per_address other accounts (checked under a lock on the
-- address, so that two MX hosts racing for one address verify one account);
-- the account's previous certification is then renewed. Otherwise nothing is
-- written and the request's state is returned (recorded = false): milterd
-- settles the reason from it and records the evidence with record_evidence().
-- Any other decision records its evidence (and counts a failed attempt); it
-- changes no state that matters, so it does not wait for a synchronous commit.
CREATE FUNCTION milterd.record(
	p_request_id bigint, p_token_hash bytea, p_from text, p_reason text, p_stage text,
	p_max_attempts integer, p_accounts_per_address integer, p_valid_for integer,
	p_client_addr text, p_helo text, p_mail_from text, p_message_id text,
	p_queue_id text, p_dkim_domain text, p_dkim_selector text, p_dkim_algorithm text,
	p_dkim_key_bits integer, p_dnssec text, p_spf_result text, p_detail text,
	p_token_prefix text,
	OUT recorded boolean, OUT verified boolean, OUT state text, OUT attempts integer,
	OUT holders integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
	acct text;
BEGIN
	recorded := true;
	verified := false;
	holders := 0;
	IF p_reason = 'verified' THEN
		IF coalesce(p_accounts_per_address, 0) > 0 THEN
			PERFORM pg_advisory_xact_lock(hashtext('milterd.address'), hashtext(p_from));
			holders := milterd.address_holders(p_from,
				(SELECT r.account FROM milterd.requests r WHERE r.id = p_request_id));
		END IF;
		IF coalesce(p_accounts_per_address, 0) = 0 OR holders < p_accounts_per_address THEN
			UPDATE milterd.requests r
			   SET state = 'verified', verified_at = now(), attempts = r.attempts + 1,
			       valid_until = CASE WHEN p_valid_for > 0
					     THEN now() + p_valid_for * interval '1 second' END
			 WHERE r.id = p_request_id AND r.token_hash = p_token_hash
			   AND r.email = p_from AND r.state = 'pending' AND r.expires_at > now()
			   AND (coalesce(p_max_attempts, 0) = 0 OR r.attempts < p_max_attempts)
			RETURNING r.account, r.attempts INTO acct, attempts;
			verified := FOUND;
		END IF;
		IF NOT verified THEN
			recorded := false;
			SELECT milterd.state_now(r.state, r.expires_at, r.valid_until), r.attempts
			  INTO state, attempts
			  FROM milterd.requests r
			 WHERE r.id = p_request_id AND r.token_hash = p_token_hash;
			RETURN;
		END IF;
		state := 'verified';
		UPDATE milterd.requests SET state = 'renewed', ended_at = now()
		 WHERE account = acct AND requests.state = 'verified' AND id <> p_request_id;
	ELSE
		IF p_request_id IS NOT NULL AND p_reason NOT IN ('temporary', 'already_verified') THEN
			UPDATE milterd.requests r SET attempts = r.attempts + 1
			 WHERE r.id = p_request_id AND r.state = 'pending';
		END IF;
		-- Lost in a crash, this row loses no verification.
		PERFORM set_config('synchronous_commit', 'off', true);
	END IF;
	INSERT INTO milterd.evidence (request_id, reason, stage, token_hash_prefix,
		client_addr, helo, mail_from, header_from, message_id, queue_id, dkim_domain,
		dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail)
	VALUES (p_request_id, p_reason, p_stage, p_token_prefix, p_client_addr, p_helo,
		p_mail_from, p_from, p_message_id, p_queue_id, p_dkim_domain, p_dkim_selector,
		p_dkim_algorithm, p_dkim_key_bits, p_dnssec, p_spf_result, p_detail);
END $$;

-- The evidence of a decision whose verification write did not happen (a
-- concurrent reply, expiry, the address taken meanwhile): the reason milterd
-- settled from the state record() returned. Nothing else changes.
CREATE FUNCTION milterd.record_evidence(
	p_request_id bigint, p_from text, p_reason text, p_stage text,
	p_client_addr text, p_helo text, p_mail_from text, p_message_id text,
	p_queue_id text, p_dkim_domain text, p_dkim_selector text, p_dkim_algorithm text,
	p_dkim_key_bits integer, p_dnssec text, p_spf_result text, p_detail text,
	p_token_prefix text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM set_config('synchronous_commit', 'off', true);
	INSERT INTO milterd.evidence (request_id, reason, stage, token_hash_prefix,
		client_addr, helo, mail_from, header_from, message_id, queue_id, dkim_domain,
		dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail)
	VALUES ((SELECT id FROM milterd.requests WHERE id = p_request_id), p_reason, p_stage,
		p_token_prefix, p_client_addr, p_helo, p_mail_from, p_from, p_message_id,
		p_queue_id, p_dkim_domain, p_dkim_selector, p_dkim_algorithm, p_dkim_key_bits,
		p_dnssec, p_spf_result, p_detail);
END $$;

-- The new reason code.
ALTER DOMAIN milterd.reason_code DROP CONSTRAINT reason_code_check;
ALTER DOMAIN milterd.reason_code ADD CONSTRAINT reason_code_check
	CHECK (VALUE IN ('verified', 'already_verified', 'unknown_token', 'expired',
		'from_mismatch', 'domain_not_allowed', 'not_authenticated',
		'token_not_signed', 'address_in_use', 'malformed', 'temporary')) NOT VALID;

-- The backend reports an account's current address. A live certification of
-- another address ends (address_changed, NOTIFY milterd_address_changed), and
-- pending requests for another address are revoked; the account is verified
-- again only by a reply from the new address. Returns 'ended' when a
-- certification ended, 'unchanged' otherwise.
CREATE FUNCTION milterd.report_address(p_account text, p_email text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	addr text := lower(btrim(p_email));
	n integer;
BEGIN
	IF addr !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'milterd: % is not an email address', p_email USING ERRCODE = '22023';
	END IF;
	UPDATE milterd.requests SET state = 'address_changed', ended_at = now()
	 WHERE account = p_account AND state = 'verified' AND email <> addr;
	GET DIAGNOSTICS n = ROW_COUNT;
	UPDATE milterd.requests SET state = 'revoked', revoked_at = now()
	 WHERE account = p_account AND state = 'pending' AND email <> addr;
	RETURN CASE WHEN n > 0 THEN 'ended' ELSE 'unchanged' END;
END $$;

-- An administrator (or a backend whose account is gone) ends what an account
-- has: its pending request is revoked and its live certification ends
-- (revoked, NOTIFY milterd_revoked). Returns how many requests changed.
CREATE OR REPLACE FUNCTION milterd.revoke(p_account text) RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH r AS (UPDATE milterd.requests SET state = 'revoked', revoked_at = now(),
			  ended_at = CASE WHEN state = 'verified' THEN now() END
		    WHERE account = p_account AND state IN ('pending', 'verified') RETURNING 1)
	SELECT count(*)::integer FROM r
$$;

-- Certifications past their end become lapsed (NOTIFY milterd_lapsed, once
-- each). Returns how many.
CREATE FUNCTION milterd.lapse() RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH l AS (UPDATE milterd.requests SET state = 'lapsed', ended_at = now()
		    WHERE state = 'verified' AND valid_until <= now() RETURNING 1)
	SELECT count(*)::integer FROM l
$$;

-- Backends LISTEN milterd_verified, milterd_lapsed, milterd_address_changed,
-- milterd_revoked (a certification an administrator ended); the payload is
-- the account.
CREATE OR REPLACE FUNCTION milterd.notify_verified() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('milterd_' || NEW.state, NEW.account);
	RETURN NEW;
END $$;
DROP TRIGGER requests_verified ON milterd.requests;
CREATE TRIGGER requests_changed AFTER UPDATE OF state ON milterd.requests
	FOR EACH ROW WHEN ((NEW.state IN ('verified', 'lapsed', 'address_changed')
			    OR (NEW.state = 'revoked' AND OLD.state = 'verified'))
			   AND OLD.state <> NEW.state)
	EXECUTE FUNCTION milterd.notify_verified();

-- What a backend has yet to act on, oldest first: a verification, and the end
-- of one (lapsed, address_changed, revoked). `milterctl follow` runs the backend's
-- program on each and acknowledges it with ack_event().
CREATE VIEW milterd.events AS
	SELECT id AS request_id, 'verified'::text AS event, account, email, verified_at AS at
	  FROM milterd.requests
	 WHERE verified_at IS NOT NULL AND acknowledged_at IS NULL
	UNION ALL
	SELECT id, state, account, email, ended_at
	  FROM milterd.requests
	 WHERE state IN ('lapsed', 'address_changed', 'revoked') AND ended_at IS NOT NULL
	   AND end_acknowledged_at IS NULL;

CREATE FUNCTION milterd.ack_event(p_request_id bigint, p_event text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF p_event = 'verified' THEN
		UPDATE milterd.requests SET acknowledged_at = now()
		 WHERE id = p_request_id AND verified_at IS NOT NULL AND acknowledged_at IS NULL;
	ELSE
		UPDATE milterd.requests SET end_acknowledged_at = now()
		 WHERE id = p_request_id AND state = p_event AND end_acknowledged_at IS NULL;
	END IF;
	RETURN FOUND;
END $$;

-- Accounts a backend suspended because their certification ended, so that it
-- lifts only its own suspensions when they verify again (the Mastodon kit).
CREATE TABLE milterd.suspensions (
	account		text PRIMARY KEY,
	event		text NOT NULL,
	suspended_at	timestamptz NOT NULL DEFAULT now()
);

-- Retention, one batch per call (milterctl db prune loops, a transaction
-- each, so that no lock is held long on a busy database).
-- Evidence older than p_keep, except the latest row of a live request.
CREATE FUNCTION milterd.prune_evidence(p_keep interval, p_batch integer) RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH old AS (
		SELECT e.id FROM milterd.evidence e
		 WHERE e.decided_at < now() - p_keep
		   AND NOT EXISTS (
			SELECT 1 FROM milterd.requests r
			 WHERE r.id = e.request_id
			   AND milterd.state_now(r.state, r.expires_at, r.valid_until)
			       IN ('pending', 'verified')
			   AND e.id = (SELECT max(l.id) FROM milterd.evidence l
					WHERE l.request_id = r.id))
		 ORDER BY e.id LIMIT p_batch),
	gone AS (DELETE FROM milterd.evidence WHERE id IN (SELECT id FROM old) RETURNING 1)
	SELECT count(*)::integer FROM gone
$$;

-- Requests finished longer than p_keep ago (expired, revoked, ended), whose
-- events were acknowledged; never a live one.
CREATE FUNCTION milterd.prune_requests(p_keep interval, p_batch integer) RETURNS integer
LANGUAGE sql VOLATILE AS $$
	WITH old AS (
		SELECT r.id FROM milterd.requests r
		 WHERE milterd.state_now(r.state, r.expires_at, r.valid_until)
		       IN ('expired', 'revoked', 'lapsed', 'address_changed', 'renewed')
		   AND r.state <> 'verified'
		   AND coalesce(r.ended_at, r.revoked_at, r.expires_at) < now() - p_keep
		   AND (r.verified_at IS NULL OR r.acknowledged_at IS NOT NULL)
		   AND (r.ended_at IS NULL OR r.end_acknowledged_at IS NOT NULL
			OR r.state = 'renewed')
		 ORDER BY r.id LIMIT p_batch),
	gone AS (DELETE FROM milterd.requests WHERE id IN (SELECT id FROM old) RETURNING 1)
	SELECT count(*)::integer FROM gone
$$;
