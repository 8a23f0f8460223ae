-- 002_decide.sql — the verification transaction: one atomic state change and one
-- evidence row per decision, in a single call from milterd.

-- p_reason is milterd's decision on the mail. For 'verified' the request turns
-- verified only if it is still pending, unexpired, below the attempt limit, with
-- the same token hash and email; otherwise the reason becomes what the row says
-- (already_verified, expired, unknown_token). Returns the final reason.
CREATE FUNCTION milterd.decide(
	p_request_id bigint, p_token_hash bytea, p_from text, p_reason text, p_stage text,
	p_max_attempts integer, p_client_addr text, p_helo text, p_mail_from text,
	p_message_id text, p_queue_id text, p_dkim_domain text, p_dkim_selector text,
	p_dkim_algorithm text, p_dkim_key_bits integer, p_dnssec text, p_spf_result text,
	p_detail text, p_token_prefix text)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	final text := p_reason;
	cur text;
	n integer;
	detail text := p_detail;
BEGIN
	IF p_reason = 'verified' THEN
		UPDATE milterd.requests
		   SET state = 'verified', verified_at = now(), attempts = attempts + 1
		 WHERE id = p_request_id AND token_hash = p_token_hash AND email = p_from
		   AND state = 'pending' AND expires_at > now()
		   AND (coalesce(p_max_attempts, 0) = 0 OR attempts < p_max_attempts);
		IF NOT FOUND THEN
			SELECT CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired'
				    ELSE state END, attempts
			  INTO cur, n
			  FROM milterd.requests WHERE id = p_request_id AND token_hash = p_token_hash;
			final := CASE
				WHEN cur IS NULL THEN 'unknown_token'
				WHEN cur = 'verified' THEN 'already_verified'
				WHEN cur = 'expired' THEN 'expired'
				WHEN cur = 'revoked' THEN 'unknown_token'
				WHEN coalesce(p_max_attempts, 0) > 0 AND n >= p_max_attempts THEN 'expired'
				ELSE 'from_mismatch' END;
			IF final = 'expired' AND cur = 'pending' THEN
				detail := 'too many failed attempts';
			END IF;
		END IF;
	ELSIF p_request_id IS NOT NULL AND p_reason NOT IN ('temporary', 'already_verified') THEN
		UPDATE milterd.requests SET attempts = attempts + 1
		 WHERE id = p_request_id AND state = 'pending';
	END IF;
	INSERT INTO milterd.evidence (request_id, reason, stage, token_hash_prefix,
		client_addr, helo, mail_from, header_from, message_id, queue_id, dkim_domain,
		dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail)
	VALUES ((SELECT id FROM milterd.requests WHERE id = p_request_id), final, p_stage,
		p_token_prefix, p_client_addr, p_helo, p_mail_from, p_from, p_message_id,
		p_queue_id, p_dkim_domain, p_dkim_selector, p_dkim_algorithm, p_dkim_key_bits,
		p_dnssec, p_spf_result, detail);
	RETURN final;
END $$;
