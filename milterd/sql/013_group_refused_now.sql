-- 013_group_refused_now.sql — record_group answers for a refused row with its
-- request as it is now, as record() does, not as its set statement saw it.
--
-- A reply that raced a revoke(), a new request or an address change of its
-- account was answered 451 "the request changed while deciding" instead of
-- that change's own answer (a revoked request: 550 unknown_token) when it was
-- written in a group. The set statement's UPDATE waits for the row the
-- change holds, then checks the row as committed and leaves it; but its
-- final SELECT still read the request under the statement's snapshot,
-- taken before that commit: pending, with no reason to refuse. record()
-- reads it in a statement of its own, after the UPDATE. Now record_group
-- does the same, only for a refused row: a group whose rows all verified
-- runs no more statements than before (its results come from the set
-- statement, through arrays). tests/integration/group.sh races a group's
-- row with a revoke().
--
-- Tried first: a row lock in the final SELECT (FOR KEY SHARE in a lateral
-- subquery), which should make PostgreSQL read the row as committed. On
-- PostgreSQL 15 that row still came out pending.

CREATE OR REPLACE FUNCTION milterd.record_group(
	p_id text[], p_hash bytea[], p_from text[], p_reason text[], p_stage text[],
	p_max_attempts text[], p_accounts_per_address text[], p_valid_for text[],
	p_client_addr text[], p_helo text[], p_mail_from text[], p_message_id text[],
	p_queue_id text[], p_dkim_domain text[], p_dkim_selector text[], p_dkim_algorithm text[],
	p_dkim_key_bits text[], p_dnssec text[], p_spf_result text[], p_detail text[],
	p_token_prefix text[])
RETURNS TABLE (recorded boolean, verified boolean, state text, attempts integer,
	holders integer)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
	independent boolean;
	done boolean[];		-- row n verified by the set statement
	tries integer[];	-- its attempts after it
	held integer[];		-- the other accounts its address certifies
BEGIN
	SELECT bool_and(b.reason = 'verified') AND count(DISTINCT b.hfrom) = count(*)
	       AND count(DISTINCT b.id) = count(*)
	       AND count(DISTINCT r.account) = count(r.account)
	  INTO independent
	  FROM unnest(p_id, p_from, p_reason) AS b(id, hfrom, reason)
	  LEFT JOIN milterd.requests r ON r.id = b.id::bigint;
	IF NOT coalesce(independent, false) THEN
		RETURN QUERY
		SELECT r.recorded, r.verified, r.state, r.attempts, r.holders
		  FROM unnest(p_id, p_hash, p_from, p_reason, p_stage, p_max_attempts,
			p_accounts_per_address, p_valid_for, p_client_addr, p_helo, p_mail_from,
			p_message_id, p_queue_id, p_dkim_domain, p_dkim_selector, p_dkim_algorithm,
			p_dkim_key_bits, p_dnssec, p_spf_result, p_detail, p_token_prefix)
			WITH ORDINALITY AS b(id, hash, hfrom, reason, stage, max_attempts, apa,
			valid_for, client_addr, helo, mail_from, message_id, queue_id, dkim_domain,
			dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail,
			token_prefix, n)
		 CROSS JOIN LATERAL milterd.record(b.id::bigint, b.hash, b.hfrom, b.reason, b.stage,
			b.max_attempts::integer, b.apa::integer, b.valid_for::integer, b.client_addr,
			b.helo, b.mail_from, b.message_id, b.queue_id, b.dkim_domain, b.dkim_selector,
			b.dkim_algorithm, b.dkim_key_bits::integer, b.dnssec, b.spf_result, b.detail,
			b.token_prefix) r
		 ORDER BY b.n;
		RETURN;
	END IF;
	PERFORM pg_advisory_xact_lock(hashtext('milterd.address'), hashtext(a.hfrom))
	   FROM (SELECT b.hfrom FROM unnest(p_from, p_accounts_per_address) AS b(hfrom, apa)
		  WHERE coalesce(b.apa::integer, 0) > 0 ORDER BY b.hfrom COLLATE "C") a;
	WITH b AS (	-- the rows, and the other accounts each address certifies now
		SELECT b.id::bigint AS id, b.hash, b.hfrom, b.stage,
		       coalesce(b.max_attempts::integer, 0) AS max_attempts,
		       coalesce(b.apa::integer, 0) AS apa, b.valid_for::integer AS valid_for,
		       b.client_addr, b.helo, b.mail_from, b.message_id, b.queue_id, b.dkim_domain,
		       b.dkim_selector, b.dkim_algorithm, b.dkim_key_bits::integer AS dkim_key_bits,
		       b.dnssec, b.spf_result, b.detail, b.token_prefix, b.n,
		       CASE WHEN coalesce(b.apa::integer, 0) > 0 THEN	-- address_holders(), as the header says
			(SELECT count(DISTINCT o.account)::integer FROM milterd.requests o
			  WHERE o.email = b.hfrom AND o.state = 'verified'
			    AND (o.valid_until IS NULL OR o.valid_until > now())
			    AND o.account <> (SELECT r.account FROM milterd.requests r
					       WHERE r.id = b.id::bigint))
			ELSE 0 END AS holders
		  FROM unnest(p_id, p_hash, p_from, p_stage, p_max_attempts,
			p_accounts_per_address, p_valid_for, p_client_addr, p_helo, p_mail_from,
			p_message_id, p_queue_id, p_dkim_domain, p_dkim_selector, p_dkim_algorithm,
			p_dkim_key_bits, p_dnssec, p_spf_result, p_detail, p_token_prefix)
			WITH ORDINALITY AS b(id, hash, hfrom, stage, max_attempts, apa, valid_for,
			client_addr, helo, mail_from, message_id, queue_id, dkim_domain,
			dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail,
			token_prefix, n)),
	v AS (	-- record()'s guarded UPDATE, for every row at once
		UPDATE milterd.requests r
		   SET state = 'verified', verified_at = now(), attempts = r.attempts + 1,
		       valid_until = CASE WHEN b.valid_for > 0
				     THEN now() + b.valid_for * interval '1 second' END
		  FROM b
		 WHERE r.id = b.id AND r.token_hash = b.hash AND r.email = b.hfrom
		   AND r.state = 'pending' AND r.expires_at > now()
		   AND (b.max_attempts = 0 OR r.attempts < b.max_attempts)
		   AND (b.apa = 0 OR b.holders < b.apa)
		RETURNING r.id, r.account, r.attempts, b.n),
	renewed AS (	-- the account's previous certification, if any
		UPDATE milterd.requests o SET state = 'renewed', ended_at = now()
		  FROM v WHERE o.account = v.account AND o.state = 'verified' AND o.id <> v.id),
	ev AS (
		INSERT INTO milterd.evidence (request_id, reason, stage, token_hash_prefix,
			client_addr, helo, mail_from, header_from, message_id, queue_id, dkim_domain,
			dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail)
		SELECT v.id, 'verified', b.stage, b.token_prefix, b.client_addr, b.helo,
		       b.mail_from, b.hfrom, b.message_id, b.queue_id, b.dkim_domain,
		       b.dkim_selector, b.dkim_algorithm, b.dkim_key_bits, b.dnssec, b.spf_result,
		       b.detail
		  FROM v JOIN b ON b.n = v.n ORDER BY v.n)
	SELECT array_agg(v.id IS NOT NULL ORDER BY b.n), array_agg(v.attempts ORDER BY b.n),
	       array_agg(b.holders ORDER BY b.n)
	  INTO done, tries, held
	  FROM b LEFT JOIN v ON v.n = b.n;
	-- A row the guard refused: its request as it is now, as record() returns
	-- it, read by a statement of its own. The set statement's snapshot may
	-- predate what refused it: a revoke() or a new request committed while
	-- its UPDATE waited for the row (it then checks the row as committed,
	-- but the rest of the statement still sees it pending).
	FOR i IN 1 .. coalesce(array_length(done, 1), 0) LOOP
		recorded := done[i];
		verified := done[i];
		holders := held[i];
		IF done[i] THEN
			state := 'verified';
			attempts := tries[i];
		ELSE
			SELECT milterd.state_now(r.state, r.expires_at, r.valid_until), r.attempts
			  INTO state, attempts
			  FROM milterd.requests r
			 WHERE r.id = p_id[i]::bigint AND r.token_hash = p_hash[i];
		END IF;
		RETURN NEXT;
	END LOOP;
END $$;
