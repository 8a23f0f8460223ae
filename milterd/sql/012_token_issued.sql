-- 012_token_issued.sql — every token written to requests is announced on
-- NOTIFY milterd_token_issued, so that milterd keeps the set of issued tokens
-- and refuses a token never issued without a lookup (store_tokens.c).
--
-- The payload is the first 6 bytes of the token's SHA-256 in hex: what logs and
-- evidence rows show already (token_hash_prefix), never the token. milterd
-- also sends its own pings on this channel ('ping <nonce> <n>') to know that
-- its set is current; a listener that is not milterd ignores them.
CREATE FUNCTION milterd.notify_token_issued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('milterd_token_issued', encode(substr(NEW.token_hash, 1, 6), 'hex'));
	RETURN NEW;
END $$;
CREATE TRIGGER requests_token_issued AFTER INSERT OR UPDATE OF token_hash ON milterd.requests
	FOR EACH ROW EXECUTE FUNCTION milterd.notify_token_issued();
