# mastodon.sh — the Mastodon kit against PostgreSQL tables with Mastodon's column
# names: run twice, it requests once and approves once; tootctl is replaced by a
# script that records its arguments, sendmail by one that records the challenges.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
KIT="$TOP/milterd/sql/mastodon/mastodon-sync"

db_reset || { not_ok "database reset"; exit 1; }
pg_psql "CREATE TABLE accounts (id bigserial PRIMARY KEY, username text NOT NULL, domain text);
	CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL DEFAULT '',
		approved boolean NOT NULL DEFAULT true, confirmed_at timestamp,
		account_id bigint NOT NULL REFERENCES accounts (id), created_at timestamp DEFAULT now());
	INSERT INTO accounts (username, domain) VALUES
		('alice', NULL), ('bob', NULL), ('carol', NULL), ('dave', NULL), ('alice', 'remote.example');
	INSERT INTO users (email, approved, account_id) VALUES
		('alice@agri.gouv.fr', false, 1), ('bob@interieur.gouv.fr', false, 2),
		('carol@gmail.com', false, 3), ('dave@agri.gouv.fr', true, 4)"
mkdir -p "$WORK/mail"
cat >"$WORK/sendmail" <<SH
#!/bin/sh
cat >"$WORK/mail/\$(date +%s%N)"
SH
cat >"$WORK/tootctl" <<SH
#!/bin/sh
echo "\$*" >>"$WORK/tootctl.log"
SH
chmod +x "$WORK/sendmail" "$WORK/tootctl"
: >"$WORK/tootctl.log"
write_config "$WORK/milterd.conf" "sendmail_path = $WORK/sendmail"
export MILTERCTL="$BUILD/milterctl" MILTERD_CONF="$WORK/milterd.conf" TOOTCTL="$WORK/tootctl" \
	MASTODON_SYNC_LOCK="$WORK/sync.lock" MASTODON_DATABASE="$MILTERD_DATABASE"

"$KIT" >"$WORK/run1" 2>&1; rc=$?
expect_eq "first run: exit 0" 0 "$rc"
expect_eq "first run: requests for the two unapproved .gouv.fr users only" "alice bob" \
	"$(pg_psql "SELECT string_agg(account, ' ' ORDER BY account) FROM milterd.requests")"
expect_eq "first run: two challenges sent" 2 "$(ls "$WORK/mail" | wc -l)"
expect_grep "first run: gmail user skipped with the policy's reason" "carol: skipped: .*domain not allowed" "$WORK/run1"
expect_eq "first run: nobody approved yet" "" "$(cat "$WORK/tootctl.log")"

# Alice replies; milterd verifies her (the state change milterd makes).
pg_psql "UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account = 'alice'"
"$KIT" >"$WORK/run2" 2>&1; rc=$?
expect_eq "second run: exit 0" 0 "$rc"
expect_eq "second run: tootctl accounts approve alice, once" "accounts approve alice" "$(cat "$WORK/tootctl.log")"
expect_eq "second run: no new request, no new challenge" "2 2" \
	"$(pg_psql "SELECT count(*) FROM milterd.requests") $(ls "$WORK/mail" | wc -l)"
expect_eq "second run: alice acknowledged" "alice" \
	"$(pg_psql "SELECT account FROM milterd.verifications WHERE acknowledged_at IS NOT NULL")"

"$KIT" >"$WORK/run3" 2>&1
expect_eq "third run: nothing more (approve once, request once)" "accounts approve alice|2|2" \
	"$(cat "$WORK/tootctl.log")|$(pg_psql "SELECT count(*) FROM milterd.requests")|$(ls "$WORK/mail" | wc -l)"

# A failing tootctl leaves the verification unacknowledged, to be retried.
pg_psql "UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account = 'bob'"
printf '#!/bin/sh\nexit 1\n' >"$WORK/tootctl"
"$KIT" >"$WORK/run4" 2>&1; rc=$?
expect_eq "failing tootctl: exit 1, bob left for the next run" "1|" \
	"$rc|$(pg_psql "SELECT acknowledged_at FROM milterd.verifications WHERE account = 'bob'")"
