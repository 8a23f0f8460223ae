-- mastodon-schema.sql — Mastodon's `accounts` and `users` tables as Mastodon defines them, for the Mastodon kit's tests.
--
-- Source: repository mastodon/mastodon, file db/schema.rb, read at commit
-- 0070a2071a1d836cc6005ddb79d92ecbef998aed, whose header is
-- `ActiveRecord::Schema[8.0].define(version: 2025_12_17_091936)`.
-- The `create_table "accounts"` and `create_table "users"` blocks are translated
-- column by column, index by index, in the order schema.rb lists them, into the
-- DDL Rails' PostgreSQL adapter produces for `db:schema:load`:
--   t.string                    -> character varying (no length limit)
--   t.datetime, precision: nil  -> timestamp without time zone
--   t.datetime (no precision)   -> timestamp(6) without time zone (Rails 7+ default)
--   array: true                 -> <type>[]; default: [] -> '{}'
--   null: false                 -> NOT NULL; default: "" -> ''
--   create_table (no id option) -> id bigserial PRIMARY KEY
--   add_foreign_key without name: -> Rails' generated name fk_rails_<10 hex of SHA-256>
--
-- What differs from Mastodon, and why:
--   * accounts.id: Mastodon declares `id: :bigint, default: -> { "timestamp_id('accounts'::text) }"`.
--     timestamp_id() is a plpgsql function Mastodon installs outside schema.rb
--     (lib/mastodon/snowflake.rb, run by its db tasks); it yields snowflake-style ids
--     around 1e17 drawn from accounts_id_seq. Here the default is a plain bigserial
--     (which also creates accounts_id_seq), so ids are small. Code under test must
--     still treat account ids as 64-bit.
--   * Foreign keys: only those between these two tables are kept:
--     users.account_id -> accounts (fk_50500f500d, ON DELETE CASCADE) and
--     accounts.moved_to_account_id -> accounts (ON DELETE SET NULL). Left out because
--     their tables are not created here: users.invite_id -> invites,
--     users.created_by_application_id -> oauth_applications, users.role_id -> user_roles.
--   * No index is skipped: every index of the two tables, including the gin full-text
--     `search_index` and the text_pattern_ops ones, uses only stock PostgreSQL
--     (schema.rb enables no extension besides plpgsql).
--   * Nothing else of schema.rb (other tables, views such as user_ips that read users).
--
-- Columns that are NOT NULL without a default, which every INSERT must fill (Rails
-- sets them itself): accounts.created_at, accounts.updated_at; users.created_at,
-- users.updated_at, users.account_id. Rails stores these timestamps in UTC.

CREATE TABLE accounts (
	id				bigserial PRIMARY KEY,	-- Mastodon: DEFAULT timestamp_id('accounts'::text), see above
	username			character varying DEFAULT ''::character varying NOT NULL,
	domain				character varying,
	private_key			text,
	public_key			text DEFAULT ''::text NOT NULL,
	created_at			timestamp without time zone NOT NULL,
	updated_at			timestamp without time zone NOT NULL,
	note				text DEFAULT ''::text NOT NULL,
	display_name			character varying DEFAULT ''::character varying NOT NULL,
	uri				character varying DEFAULT ''::character varying NOT NULL,
	url				character varying,
	avatar_file_name		character varying,
	avatar_content_type		character varying,
	avatar_file_size		integer,
	avatar_updated_at		timestamp without time zone,
	header_file_name		character varying,
	header_content_type		character varying,
	header_file_size		integer,
	header_updated_at		timestamp without time zone,
	avatar_remote_url		character varying,
	locked				boolean DEFAULT false NOT NULL,
	header_remote_url		character varying DEFAULT ''::character varying NOT NULL,
	last_webfingered_at		timestamp without time zone,
	inbox_url			character varying DEFAULT ''::character varying NOT NULL,
	outbox_url			character varying DEFAULT ''::character varying NOT NULL,
	shared_inbox_url		character varying DEFAULT ''::character varying NOT NULL,
	followers_url			character varying DEFAULT ''::character varying NOT NULL,
	protocol			integer DEFAULT 0 NOT NULL,
	memorial			boolean DEFAULT false NOT NULL,
	moved_to_account_id		bigint,
	featured_collection_url		character varying,
	fields				jsonb,
	actor_type			character varying,
	discoverable			boolean,
	also_known_as			character varying[],
	silenced_at			timestamp without time zone,
	suspended_at			timestamp without time zone,
	hide_collections		boolean,
	avatar_storage_schema_version	integer,
	header_storage_schema_version	integer,
	sensitized_at			timestamp without time zone,
	suspension_origin		integer,
	trendable			boolean,
	reviewed_at			timestamp without time zone,
	requested_review_at		timestamp without time zone,
	indexable			boolean DEFAULT false NOT NULL,
	attribution_domains		character varying[] DEFAULT '{}'::character varying[],
	following_url			character varying DEFAULT ''::character varying NOT NULL,
	id_scheme			integer DEFAULT 1,
	feature_approval_policy		integer DEFAULT 0 NOT NULL
);

CREATE INDEX search_index ON accounts USING gin ((((setweight(to_tsvector('simple'::regconfig, (display_name)::text), 'A'::"char") || setweight(to_tsvector('simple'::regconfig, (username)::text), 'B'::"char")) || setweight(to_tsvector('simple'::regconfig, (COALESCE(domain, ''::character varying))::text), 'C'::"char"))));
-- One local account (domain NULL) per username regardless of case; one remote
-- account per username and domain regardless of case.
CREATE UNIQUE INDEX index_accounts_on_username_and_domain_lower ON accounts USING btree (lower((username)::text), COALESCE(lower((domain)::text), ''::text));
CREATE INDEX index_accounts_on_domain_and_id ON accounts USING btree (domain, id);
CREATE INDEX index_accounts_on_moved_to_account_id ON accounts USING btree (moved_to_account_id) WHERE (moved_to_account_id IS NOT NULL);
CREATE INDEX index_accounts_on_uri ON accounts USING btree (uri);
CREATE INDEX index_accounts_on_url ON accounts USING btree (url text_pattern_ops) WHERE (url IS NOT NULL);

CREATE TABLE users (
	id				bigserial PRIMARY KEY,
	email				character varying DEFAULT ''::character varying NOT NULL,
	created_at			timestamp without time zone NOT NULL,
	updated_at			timestamp without time zone NOT NULL,
	encrypted_password		character varying DEFAULT ''::character varying NOT NULL,
	reset_password_token		character varying,
	reset_password_sent_at		timestamp without time zone,
	sign_in_count			integer DEFAULT 0 NOT NULL,
	current_sign_in_at		timestamp without time zone,
	last_sign_in_at			timestamp without time zone,
	confirmation_token		character varying,
	confirmed_at			timestamp without time zone,
	confirmation_sent_at		timestamp without time zone,
	unconfirmed_email		character varying,
	locale				character varying,
	consumed_timestep		integer,
	otp_required_for_login		boolean DEFAULT false NOT NULL,
	last_emailed_at			timestamp without time zone,
	otp_backup_codes		character varying[],
	account_id			bigint NOT NULL,
	disabled			boolean DEFAULT false NOT NULL,
	invite_id			bigint,
	chosen_languages		character varying[],
	created_by_application_id	bigint,
	approved			boolean DEFAULT true NOT NULL,
	sign_in_token			character varying,
	sign_in_token_sent_at		timestamp without time zone,
	webauthn_id			character varying,
	sign_up_ip			inet,
	skip_sign_in_token		boolean,
	role_id				bigint,
	settings			text,
	time_zone			character varying,
	otp_secret			character varying,
	age_verified_at			timestamp(6) without time zone,
	require_tos_interstitial	boolean DEFAULT false NOT NULL
);

CREATE INDEX index_users_on_account_id ON users USING btree (account_id);
CREATE UNIQUE INDEX index_users_on_confirmation_token ON users USING btree (confirmation_token);
CREATE INDEX index_users_on_created_by_application_id ON users USING btree (created_by_application_id) WHERE (created_by_application_id IS NOT NULL);
-- Case-sensitive at the database level; Mastodon (Devise case_insensitive_keys)
-- lowercases email before saving.
CREATE UNIQUE INDEX index_users_on_email ON users USING btree (email);
CREATE UNIQUE INDEX index_users_on_reset_password_token ON users USING btree (reset_password_token text_pattern_ops) WHERE (reset_password_token IS NOT NULL);
CREATE INDEX index_users_on_role_id ON users USING btree (role_id) WHERE (role_id IS NOT NULL);
CREATE INDEX index_users_on_unconfirmed_email ON users USING btree (unconfirmed_email) WHERE (unconfirmed_email IS NOT NULL);

ALTER TABLE accounts ADD CONSTRAINT fk_rails_2320833084
	FOREIGN KEY (moved_to_account_id) REFERENCES accounts (id) ON DELETE SET NULL;
ALTER TABLE users ADD CONSTRAINT fk_50500f500d
	FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE;
