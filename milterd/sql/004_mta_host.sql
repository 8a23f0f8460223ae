-- 004_mta_host.sql — evidence rows name the MX host that decided: milterd
-- connects with application_name "milterd@HOST" (inet_server_addr() was the
-- database's own address).
ALTER TABLE milterd.evidence
	ALTER COLUMN mta_host SET DEFAULT nullif(current_setting('application_name', true), '');
