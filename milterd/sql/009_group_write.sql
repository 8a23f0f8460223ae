-- 009_group_write.sql — a group of verifications written by set statements
-- (record_group) instead of one record() call per row.
--
-- milterd writes the verifications of concurrent workers in one transaction
-- (store_record.c). Until now that was record() once per row, each call running
-- its five to seven statements (address lock, holders, guarded UPDATE, renewal,
-- evidence INSERT), each with its own executor start-up. record_group runs them
-- once for the whole group: the address locks in one statement, then one
-- statement that counts holders, verifies, renews and inserts the evidence of
-- every row. Measured with a pgbench script on a durable PostgreSQL (not
-- milterd's traffic: groups of 5, the size milterd's groups reach at 32
-- connections, each followed by its durable transaction): 2.66 ms of PostgreSQL
-- CPU per group before, 2.15 ms after. In make bench: 5-10% less PostgreSQL CPU
-- per first verification at 32 connections, nothing measurable at 8
-- (tests/bench/README.md).
--
-- One statement sees one snapshot, so a row cannot see what another row of the
-- same statement wrote. Rows are independent when their addresses, requests and
-- accounts are all distinct: holders count other accounts of the same address,
-- the guard reads the row's own request, the renewal touches the row's own
-- account. Otherwise (two accounts replying from one address in one group, a
-- reply delivered twice at once) the group goes row by row through record(), in
-- order, each seeing what the rows before it wrote, as before. Either way the
-- same rows come out, in the group's order.
--
-- The locks are taken in a statement of their own, before the one that counts:
-- that statement's snapshot is taken once every lock is held, so it sees every
-- verification committed under them (READ COMMITTED), as record() does. Locks
-- go in address order (COLLATE "C"), the order milterd sorts a group in, so
-- that two groups never wait for each other in a deadlock.
--
-- The holders count is address_holders() (008) written out, the same query:
-- called once per row instead, a group of 5 cost 2.43-2.73 ms of PostgreSQL
-- CPU against 1.91-2.27 ms written out (the pgbench script above, 4 clients,
-- alternating runs). A change to what makes a certification live goes to both;
-- tests/integration/group.sh checks that the two give the same rows.
--
-- plan_cache_mode: PL/pgSQL would otherwise keep planning the group statement
-- afresh (a custom plan looks cheaper than the generic one for array
-- arguments): about 1 ms per call, more than the statement itself.
CREATE FUNCTION milterd.record_group(
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
	RETURN QUERY
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
	-- A row the guard refused: its request as it is now, as record() returns it.
	SELECT v.id IS NOT NULL, v.id IS NOT NULL,
	       CASE WHEN v.id IS NOT NULL THEN 'verified'
		    ELSE milterd.state_now(r.state, r.expires_at, r.valid_until) END,
	       coalesce(v.attempts, r.attempts), b.holders
	  FROM b
	  LEFT JOIN v ON v.n = b.n
	  LEFT JOIN milterd.requests r ON v.id IS NULL AND r.id = b.id AND r.token_hash = b.hash
	 ORDER BY b.n;
END $$;
