# mastodon.sh — the Mastodon kit (mastodon-sync from cron, mastodon-event run by
# `milterctl follow`) against Mastodon's own users and accounts tables
# (mastodon-schema.sql, from Mastodon's db/schema.rb), with replies signed by dkimpy
# going through milterd. tootctl is replaced by a script that records its arguments
# and changes users.approved / users.disabled as Mastodon's would; sendmail by one
# that keeps the challenges.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
KIT_DIR="$TOP/milterd/sql/mastodon"
KIT="$KIT_DIR/mastodon-sync"
C="$BUILD/milterctl"
FOLLOW_PID="" LISTEN_PID=""

cleanup() {
	[ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null && wait "$FOLLOW_PID" 2>/dev/null
	[ -n "$LISTEN_PID" ] && touch "$WORK/listen.stop" && wait "$LISTEN_PID" 2>/dev/null
	milterd_stop
}
trap cleanup EXIT

db_reset || { not_ok "database reset"; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -f "$TOP/tests/integration/mastodon-schema.sql" >"$WORK/schema.log" 2>&1 ||
	{ not_ok "Mastodon's tables: $(tail -n 3 "$WORK/schema.log" | tr '\n' ' ')"; exit 1; }

# Users as Mastodon creates them (username's case kept, address lowercased,
# timestamps in UTC, approved false while registrations need approval).
pg_psql "INSERT INTO accounts (username, domain, created_at, updated_at) VALUES
		('Alice', NULL, now(), now()), ('BobDupont', NULL, now(), now()),
		('carol', NULL, now(), now()), ('Dave', NULL, now(), now()),
		('Erin', NULL, now(), now()), ('Frank', NULL, now(), now()),
		('Grace', NULL, now(), now()), ('alice', 'remote.example', now(), now());
	INSERT INTO users (email, approved, disabled, confirmed_at, account_id, created_at, updated_at)
	SELECT v.email, v.approved, v.disabled, CASE WHEN v.confirmed THEN now() AT TIME ZONE 'UTC' END,
	       a.id, now() AT TIME ZONE 'UTC' - v.age * interval '1 minute', now() AT TIME ZONE 'UTC'
	  FROM (VALUES ('Alice', 'alice@agri.gouv.fr', false, false, true, 7),
		       ('BobDupont', 'bob.dupont@interieur.gouv.fr', false, false, true, 6),
		       ('carol', 'carol@gmail.com', false, false, true, 5),
		       ('Dave', 'dave@agri.gouv.fr', true, false, true, 4),
		       ('Erin', 'erin@agri.gouv.fr', false, true, true, 3),
		       ('Frank', 'frank@agri.gouv.fr', false, false, false, 2),
		       ('Grace', 'grace@agri.gouv.fr', false, false, true, 1))
	       AS v (username, email, approved, disabled, confirmed, age)
	  JOIN accounts a ON a.username = v.username AND a.domain IS NULL" >/dev/null ||
	{ not_ok "Mastodon's users inserted"; exit 1; }

# sendmail keeps each challenge; tootctl acts as Mastodon's on the tables and
# fails while $WORK/tootctl.fail exists.
mkdir -p "$WORK/mail"
cat >"$WORK/sendmail" <<SH
#!/bin/sh
cat >"\$(mktemp "$WORK/mail/XXXXXXXX")"
SH
cat >"$WORK/tootctl" <<SH
#!/bin/bash
if [ -e "$WORK/tootctl.fail" ]; then echo "FAIL \$*" >>"$WORK/tootctl.log"; echo "simulated failure" >&2; exit 1; fi
case "\$1 \$2 \${4:-}" in
"accounts approve ") set_sql="approved = true" ;;
"accounts modify --disable") set_sql="disabled = true" ;;
"accounts modify --enable") set_sql="disabled = false" ;;
*) echo "tootctl: unexpected: \$*" >&2; exit 1 ;;
esac
n=\$(psql "$MILTERD_DATABASE" -X -Atq -v ON_ERROR_STOP=1 -v u="\$3" <<SQL
WITH t AS (UPDATE users SET \$set_sql, updated_at = now() AT TIME ZONE 'UTC' FROM accounts a
	WHERE a.id = users.account_id AND lower(a.username) = lower(:'u') AND a.domain IS NULL RETURNING 1)
SELECT count(*) FROM t
SQL
)
[ "\$n" = 1 ] || { echo "No such account" >&2; exit 1; }
echo "\$*" >>"$WORK/tootctl.log"
echo OK
SH
chmod +x "$WORK/sendmail" "$WORK/tootctl"
: >"$WORK/tootctl.log"
write_config "$WORK/milterd.conf" "sendmail_path = $WORK/sendmail"

# The kit's configuration file; the environment only says where it is, where the
# runtime directory is, and, where a check needs it, overrides a key.
cat >"$WORK/mastodon.conf" <<CONF
# mastodon.conf for mastodon.sh
MASTODON_DATABASE="$MILTERD_DATABASE"
MILTERCTL=$C
MILTERD_CONF='$WORK/milterd.conf'
TOOTCTL="$WORK/tootctl"
MASTODON_LANG=en
MASTODON_ON_END=disable
CONF
export MASTODON_KIT_CONF="$WORK/mastodon.conf" RUNTIME_DIRECTORY="$WORK/run"
unset MILTERD_DATABASE

tootctl_count() { grep -cxF -- "$1" "$WORK/tootctl.log"; }
mails() { ls "$WORK/mail" | wc -l; }
# token_for EMAIL: the token of the newest challenge sent to EMAIL.
token_for() {
	local f
	f=$(grep -lx "To: <$1>" "$WORK/mail"/* 2>/dev/null | xargs -r ls -t | head -n 1)
	[ -n "$f" ] && sed -n 's/^Reply-To: <verify+\([a-z2-7]*\)@certify.test>$/\1/p' "$f"
}
# reply NAME EMAIL DOMAIN: the agent answers the newest challenge to EMAIL, signed
# by DOMAIN's key, through milterd.
reply() {
	local tok
	tok=$(token_for "$2")
	[ -n "$tok" ] || { not_ok "$1: no challenge to $2"; return 1; }
	make_reply "$WORK/reply" "$2" "$tok" --subject "Re: Verify your account [$tok]" \
		--message-id "<$RANDOM.$RANDOM@$3>" --header "MIME-Version: 1.0" \
		--header "Content-Type: text/plain; charset=us-ascii" --body "Here is my reply."
	"$TOP/tests/lib/dkim-sign" --domain "$3" --selector rsa2048 --key "$DNS_KEYS/$3.rsa2048.key" \
		<"$WORK/reply" >"$WORK/reply.signed" &&
	deliver "$1" "$WORK/reply.signed" "$tok" accept verified "mailfrom=<$2>"
}
state_of() { "$C" -c "$WORK/milterd.conf" --json status "$1" | grep -o '"state":"[a-z_]*"' | cut -d'"' -f4; }
user() { pg_psql "SELECT u.approved, u.disabled FROM users u JOIN accounts a ON a.id = u.account_id
	WHERE a.username = '$1' AND a.domain IS NULL" | tr '|' ' '; }
unacked() { pg_psql "SELECT count(*) FROM milterd.events WHERE account = '$1'"; }
# moves USERNAME ADDRESS: the user's confirmed address in Mastodon changes.
moves() { pg_psql "UPDATE users SET email = '$2' FROM accounts a
	WHERE a.id = users.account_id AND a.username = '$1' AND a.domain IS NULL" >/dev/null; }
# kit_with CONF OUT: a run of the kit with milterctl's configuration CONF (its sendmail),
# its output in OUT; its exit code (bounded at 60 s).
kit_with() {
	local rc
	sed -i "s|^MILTERD_CONF=.*|MILTERD_CONF='$1'|" "$WORK/mastodon.conf"
	timeout -k 5 60 "$KIT" >"$2" 2>&1; rc=$?
	sed -i "s|^MILTERD_CONF=.*|MILTERD_CONF='$WORK/milterd.conf'|" "$WORK/mastodon.conf"
	return "$rc"
}
# is VALUE COMMAND...: the command prints VALUE (for wait_for).
is() { [ "$("${@:2}")" = "$1" ]; }
follow_start() {	# [VAR=value ...]: the follower, with that environment
	: >"$WORK/follow.log"
	env "$@" "$C" -c "$WORK/milterd.conf" follow --exec "$KIT_DIR/mastodon-event" >>"$WORK/follow.log" 2>&1 &
	FOLLOW_PID=$!
	wait_for 10 grep -q "follow: active" "$WORK/follow.log"
}
follow_stop() { kill "$FOLLOW_PID" && wait "$FOLLOW_PID"; FOLLOW_PID=; }

# 1. Cron mode, no follower: new users are asked once.
"$KIT" >"$WORK/run1" 2>&1; rc=$?
expect_eq "first run: exit 0" 0 "$rc"
expect_eq "first run: a request for each unapproved, confirmed, enabled local user with an allowed address" \
	"Alice BobDupont Grace" "$(pg_psql "SELECT string_agg(account, ' ' ORDER BY account) FROM milterd.requests")"
expect_eq "first run: one challenge each, in English (MASTODON_LANG from the file), to the user's address" \
	"alice@agri.gouv.fr bob.dupont@interieur.gouv.fr grace@agri.gouv.fr|3" \
	"$(grep -h '^To: <' "$WORK/mail"/* | sed 's/^To: <\(.*\)>$/\1/' | sort | tr '\n' ' ' | sed 's/ $//')|$(grep -l '^Subject: Verify your account' "$WORK/mail"/* | wc -l)"
expect_grep "first run: the gmail user is reported, with the policy's reason" "carol: new user: not asked: .*domain not allowed" "$WORK/run1"
expect_eq "first run: no approval, no tootctl" "" "$(cat "$WORK/tootctl.log")"
"$KIT" >"$WORK/run2" 2>&1; rc=$?
expect_eq "second run: exit 0, no new request, no new challenge, nothing printed" "0|3|3|" \
	"$rc|$(pg_psql "SELECT count(*) FROM milterd.requests")|$(mails)|$(cat "$WORK/run2")"
expect_eq "the lock and the memory of what was said are under the runtime directory" \
	"mastodon-sync.lock mastodon-sync.said" "$(ls "$WORK/run" | tr '\n' ' ' | sed 's/ $//')"
pg_psql "UPDATE users SET confirmed_at = now() AT TIME ZONE 'UTC' FROM accounts a
	WHERE a.id = users.account_id AND a.username = 'Frank'" >/dev/null
flock "$WORK/run/mastodon-sync.lock" "$KIT" >"$WORK/run-locked" 2>&1; rc=$?
expect_eq "a run while another holds the lock does nothing (Frank, now confirmed, not asked yet)" \
	"0|3|another run holds $WORK/run/mastodon-sync.lock" \
	"$rc|$(pg_psql "SELECT count(*) FROM milterd.requests")|$(sed 's/^mastodon-sync: //' "$WORK/run-locked")"
# Another host's run holds the database lock (a session of its own): this one does
# nothing, and says nothing (cron would mail it at every run on the other hosts).
PGAPPNAME=elsewhere psql -X -q -c "SELECT pg_advisory_lock(hashtext('milterd.mastodon-sync'))" \
	-c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
holder=$!
wait_for 5 sh -c "[ \$(psql -X -Atqc \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted\") -ge 1 ]"
"$KIT" >"$WORK/run-elsewhere" 2>&1; rc=$?
expect_eq "a run while another host's holds the database lock does nothing, silently (Frank not asked yet)" \
	"0|3|" "$rc|$(pg_psql "SELECT count(*) FROM milterd.requests")|$(cat "$WORK/run-elsewhere")"
pg_psql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'elsewhere'" >/dev/null
wait "$holder" 2>/dev/null
"$KIT" >"$WORK/run3" 2>&1
expect_eq "once the user confirmed the address in Mastodon, the next run asks" "1|4" \
	"$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'Frank'")|$(mails)"

# 2. The follower: a verification approves at once, exactly once, even with cron
# mode running beside it. Its children get MASTODON_ON_END=report from the
# environment, over the file's disable.
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
follow_start MASTODON_ON_END=report || { not_ok "the follower starts: $(cat "$WORK/follow.log")"; exit 1; }
if reply "Alice's DKIM-signed reply verifies her through milterd" alice@agri.gouv.fr agri.gouv.fr; then
	t0=$(date +%s%N)
	"$KIT" >"$WORK/run4" 2>&1 &
	kit_pid=$!
	if wait_for 5 is "t f" user Alice; then
		ok "the follower approves Alice at once ($(( ($(date +%s%N) - t0) / 1000000 )) ms after milterd's answer)"
	else
		not_ok "Alice not approved within 5 s: $(tail -n 3 "$WORK/follow.log" | tr '\n' ' ')"
	fi
	wait "$kit_pid"
fi
"$KIT" >"$WORK/run5" 2>&1
expect_eq "approved exactly once (tootctl accounts approve Alice), event acknowledged, cron mode stood aside" \
	"1|0|0" "$(tootctl_count "accounts approve Alice")|$(unacked Alice)|$(cat "$WORK/run4" "$WORK/run5" | grep -c approve)"
expect_eq "the approval went through Mastodon's username, not the remote account of that name" "t f" "$(user Alice)"

# 3. A lapse, MASTODON_ON_END=report: said, nothing changed; then one new challenge.
reply "BobDupont's reply verifies him" bob.dupont@interieur.gouv.fr interieur.gouv.fr &&
	wait_for 5 grep -qx "accounts approve BobDupont" "$WORK/tootctl.log"
pg_psql "UPDATE milterd.requests SET valid_until = now() - interval '1 minute'
	WHERE account = 'BobDupont' AND state = 'verified'" >/dev/null
"$C" -c "$WORK/milterd.conf" recertify >"$WORK/recertify" 2>&1
expect_grep "milterctl recertify lapses BobDupont's certification" "^recertify: 1 lapsed" "$WORK/recertify"
if wait_for 5 grep -q "BobDupont: certification of bob.dupont@interieur.gouv.fr lapsed" "$WORK/follow.log"; then
	ok "the lapse is reported on the follower's stderr: $(grep -o 'mastodon-event: BobDupont: cert.*' "$WORK/follow.log")"
else
	not_ok "no report of BobDupont's lapse: $(tail -n 3 "$WORK/follow.log" | tr '\n' ' ')"
fi
wait_for 5 is 0 unacked BobDupont
expect_eq "report mode: BobDupont still approved and enabled, tootctl not run again, event acknowledged" \
	"t f|1|0" "$(user BobDupont)|$(grep -c BobDupont "$WORK/tootctl.log")|$(unacked BobDupont)"
"$KIT" >"$WORK/run6" 2>&1
"$KIT" >"$WORK/run7" 2>&1
expect_eq "after the lapse, two runs: one new challenge to BobDupont (his way back), said once" "2|1|" \
	"$(grep -lx "To: <bob.dupont@interieur.gouv.fr>" "$WORK/mail"/* | wc -l)|$(grep -c 'BobDupont: certification ended (lapsed): challenge sent' "$WORK/run6")|$(cat "$WORK/run7")"

# 4. An address change, MASTODON_ON_END=disable (the file's, follower restarted
# without the override): certification ended + NOTIFY + new challenge; disabled
# once; enabled once when the new address verifies.
follow_stop
follow_start || { not_ok "the follower restarts"; exit 1; }
rm -f "$WORK/listen.stop"
{ echo "LISTEN milterd_address_changed; SELECT 'listening';"
  while [ ! -e "$WORK/listen.stop" ]; do sleep 0.2; echo "SELECT 1;"; done; } |
	psql -X -Atq >"$WORK/listen.out" 2>&1 &
LISTEN_PID=$!
wait_for 5 grep -q listening "$WORK/listen.out" || not_ok "psql LISTEN started"
# Mastodon, once the user confirmed the new address: email takes it, unconfirmed_email empties.
pg_psql "UPDATE users SET email = 'alice.martin@agri.gouv.fr', unconfirmed_email = NULL,
	updated_at = now() AT TIME ZONE 'UTC' FROM accounts a
	WHERE a.id = users.account_id AND a.username = 'Alice' AND a.domain IS NULL" >/dev/null
"$KIT" >"$WORK/run8" 2>&1; rc=$?
expect_eq "address change: kit exit 0; Alice's certification ended (address_changed); a new pending request for the new address" \
	"0|address_changed|pending alice.martin@agri.gouv.fr" \
	"$rc|$(pg_psql "SELECT state FROM milterd.requests WHERE account = 'Alice' AND email = 'alice@agri.gouv.fr' AND verified_at IS NOT NULL")|$(state_of Alice) $(pg_psql "SELECT email FROM milterd.verification_status('Alice')")"
expect_eq "address change: a challenge to the new address" 1 \
	"$(grep -lx "To: <alice.martin@agri.gouv.fr>" "$WORK/mail"/* | wc -l)"
if wait_for 5 grep -q 'notification "milterd_address_changed" with payload "Alice"' "$WORK/listen.out"; then
	ok "NOTIFY milterd_address_changed, payload Alice, received by psql LISTEN"
else
	not_ok "no NOTIFY milterd_address_changed: $(tr '\n' ' ' <"$WORK/listen.out")"
fi
touch "$WORK/listen.stop"; wait "$LISTEN_PID"; LISTEN_PID=
if wait_for 5 grep -qx "accounts modify Alice --disable" "$WORK/tootctl.log"; then
	ok "the follower disables Alice (MASTODON_ON_END=disable from the file)"
else
	not_ok "Alice not disabled: $(tail -n 3 "$WORK/follow.log" | tr '\n' ' ')"
fi
wait_for 5 is 0 unacked Alice
"$KIT" >"$WORK/run9" 2>&1
"$KIT" >"$WORK/run10" 2>&1
expect_eq "two more runs: disabled once, suspension recorded, no other challenge, nothing said" \
	"t t|1|address_changed|1|" \
	"$(user Alice)|$(tootctl_count "accounts modify Alice --disable")|$(pg_psql "SELECT event FROM milterd.suspensions WHERE account = 'Alice'")|$(grep -lx "To: <alice.martin@agri.gouv.fr>" "$WORK/mail"/* | wc -l)|$(cat "$WORK/run9" "$WORK/run10")"
if reply "Alice's reply from her new address verifies her" alice.martin@agri.gouv.fr agri.gouv.fr &&
	wait_for 5 grep -qx "accounts modify Alice --enable" "$WORK/tootctl.log"; then
	ok "the follower enables Alice again once her new address verifies"
else
	not_ok "Alice not enabled again: $(tail -n 3 "$WORK/follow.log" | tr '\n' ' ')"
fi
wait_for 5 is 0 unacked Alice
"$KIT" >"$WORK/run11" 2>&1
expect_eq "enabled once, approved, suspension lifted, approve not run again, event acknowledged" \
	"t f|1|0|1|0" \
	"$(user Alice)|$(tootctl_count "accounts modify Alice --enable")|$(pg_psql "SELECT count(*) FROM milterd.suspensions")|$(tootctl_count "accounts approve Alice")|$(unacked Alice)"

# 5. tootctl failing under the follower: the event is kept and retried, and
# acknowledged only once tootctl succeeded.
touch "$WORK/tootctl.fail"
reply "Grace's reply verifies her" grace@agri.gouv.fr agri.gouv.fr
wait_for 10 is 2 grep -c "FAIL accounts approve Grace" "$WORK/tootctl.log"
expect_eq "tootctl failing: tried again (at least twice), Grace not approved, her event not acknowledged" \
	"yes|f f|1" \
	"$([ "$(grep -c 'FAIL accounts approve Grace' "$WORK/tootctl.log")" -ge 2 ] && echo yes)|$(user Grace)|$(unacked Grace)"
rm -f "$WORK/tootctl.fail"
wait_for 15 grep -qx "accounts approve Grace" "$WORK/tootctl.log"
wait_for 5 is 0 unacked Grace
expect_eq "tootctl working again: Grace approved once, event acknowledged" "t f|1|0" \
	"$(user Grace)|$(tootctl_count "accounts approve Grace")|$(unacked Grace)"
follow_stop

# 6. Cron mode handles the events when no follower runs: a lapse with
# MASTODON_ON_END=disable, tootctl failing once, then run twice.
pg_psql "UPDATE milterd.requests SET valid_until = now() - interval '1 minute'
	WHERE account = 'Grace' AND state = 'verified'" >/dev/null
"$C" -c "$WORK/milterd.conf" recertify >/dev/null 2>&1
touch "$WORK/tootctl.fail"
"$KIT" >"$WORK/run12" 2>&1; rc=$?
expect_eq "cron mode, tootctl failing: exit 1, Grace enabled, her lapse kept for the next run" "1|t f|1" \
	"$rc|$(user Grace)|$(unacked Grace)"
expect_grep "cron mode says why" "Grace: tootctl accounts modify Grace --disable failed" "$WORK/run12"
rm -f "$WORK/tootctl.fail"
"$KIT" >"$WORK/run13" 2>&1; rc=$?
"$KIT" >"$WORK/run14" 2>&1
expect_eq "cron mode, run twice: Grace disabled once, lapse acknowledged, exit 0" "0|t t|1|0" \
	"$rc|$(user Grace)|$(tootctl_count "accounts modify Grace --disable")|$(unacked Grace)"
expect_grep "cron mode prints the action" "mastodon-event: Grace: disabled: certification of grace@agri.gouv.fr lapsed" \
	"$WORK/run13"
expect_eq "users nobody asked about were never touched (Dave, Erin, carol: no tootctl)" 0 \
	"$(grep -cE 'Dave|Erin|carol' "$WORK/tootctl.log")"

# 7. A user deleted in Mastodon (its users and accounts rows gone): the kit ends
# the certification, so that it no longer holds the address; once.
pg_psql "DELETE FROM accounts WHERE username = 'Alice' AND domain IS NULL" >/dev/null
"$KIT" >"$WORK/run15" 2>&1; rc=$?
"$KIT" >"$WORK/run16" 2>&1
expect_eq "deleted user: certification revoked by the kit, said once" \
	"0|revoked|1|0" "$rc|$(pg_psql "SELECT state FROM milterd.verification_status('Alice')")|$(grep -c 'Alice: no longer a user' "$WORK/run15")|$(grep -c 'Alice' "$WORK/run16")"

# 7b. Asked again where the last request did not reach the user, and not where
# it did. A challenge sendmail could not take leaves no request: the next run
# asks (it used to be revoked, and a revoked request counted as asked, for ever).
# A username freed by a deletion (an admin rejecting a sign-up) and taken again
# is a new user, asked at once (the old user's requests used to count).
pg_psql "INSERT INTO accounts (username, domain, created_at, updated_at) VALUES ('Alice', NULL, now(), now());
	INSERT INTO users (email, approved, disabled, confirmed_at, account_id, created_at, updated_at)
	SELECT 'alice@agri.gouv.fr', false, false, now() AT TIME ZONE 'UTC', id, now() AT TIME ZONE 'UTC',
	       now() AT TIME ZONE 'UTC' FROM accounts WHERE username = 'Alice' AND domain IS NULL" >/dev/null
printf '#!/bin/sh\ncat >/dev/null\nexit 75\n' >"$WORK/sendmail.fail"; chmod +x "$WORK/sendmail.fail"
write_config "$WORK/fail.conf" "sendmail_path = $WORK/sendmail.fail"
before=$(mails)
kit_with "$WORK/fail.conf" "$WORK/run17"; rc=$?
expect_eq "sendmail failing: exit 1, no challenge, no request left for the new Alice" "1|$before|0" \
	"$rc|$(mails)|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'Alice' AND state = 'pending'")"
expect_grep "... said, with when it is sent again" \
	"Alice: new user: milterctl: challenge not sent: .*exit 75\); the next run sends it again" "$WORK/run17"
"$KIT" >"$WORK/run18" 2>&1; rc=$?
"$KIT" >"$WORK/run19" 2>&1
expect_eq "the next run asks the new Alice, once" "0|1|pending alice@agri.gouv.fr|" \
	"$rc|$(grep -c 'Alice: new user: challenge sent' "$WORK/run18")|$(state_of Alice) $(pg_psql "SELECT email FROM milterd.verification_status('Alice')")|$(cat "$WORK/run19")"
# A request made by hand in another case than the username: the kit disabled Grace
# (her lapse, section 6); 'grace' verifies, and cron mode enables her again.
out=$("$C" -c "$WORK/milterd.conf" request --account grace --email grace@agri.gouv.fr --send 2>&1)
if reply "a hand-made request for 'grace' (the user is Grace) verifies" grace@agri.gouv.fr agri.gouv.fr; then
	"$KIT" >"$WORK/run20" 2>&1; rc=$?
	expect_eq "... the kit enables Grace again and lifts her suspension (its row names 'Grace')" \
		"0|t f|1|0" "$rc|$(user Grace)|$(tootctl_count "accounts modify Grace --enable")|$(pg_psql "SELECT count(*) FROM milterd.suspensions")"
fi
# An address change whose challenge sendmail could not take (MASTODON_ON_END=disable,
# cron mode): the certification ends and Hugo is disabled; the next run challenges
# the new address (he used to stay disabled with no challenge, for good).
pg_psql "INSERT INTO accounts (username, domain, created_at, updated_at) VALUES ('Hugo', NULL, now(), now());
	INSERT INTO users (email, approved, disabled, confirmed_at, account_id, created_at, updated_at)
	SELECT 'hugo@agri.gouv.fr', false, false, now() AT TIME ZONE 'UTC', id, now() AT TIME ZONE 'UTC',
	       now() AT TIME ZONE 'UTC' FROM accounts WHERE username = 'Hugo' AND domain IS NULL" >/dev/null
# hugo: Hugo's state and the address of his latest request.
hugo() { echo "$(state_of Hugo) $(pg_psql "SELECT email FROM milterd.verification_status('Hugo')")"; }
"$KIT" >"$WORK/run21" 2>&1
if reply "Hugo's reply verifies him" hugo@agri.gouv.fr agri.gouv.fr; then
	"$KIT" >"$WORK/run22" 2>&1
	moves Hugo hugo.b@agri.gouv.fr
	kit_with "$WORK/fail.conf" "$WORK/run23"; rc=$?
	expect_eq "address change, sendmail failing: exit 1, certification ended, Hugo disabled, no request for the new address" \
		"1|address_changed|t t|0" \
		"$rc|$(state_of Hugo)|$(user Hugo)|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'Hugo' AND email = 'hugo.b@agri.gouv.fr'")"
	"$KIT" >"$WORK/run24" 2>&1; rc=$?
	expect_eq "... the next run challenges the new address" "0|1|pending hugo.b@agri.gouv.fr" \
		"$rc|$(grep -lx "To: <hugo.b@agri.gouv.fr>" "$WORK/mail"/* | wc -l)|$(hugo)"
fi
# A relative MASTODON_SYNC_LOCK is a file in the working directory.
mkdir -p "$WORK/cwd"
out=$(cd "$WORK/cwd" && MASTODON_SYNC_LOCK=sync.lock "$KIT" 2>&1); rc=$?
expect_eq "a relative lock file: made in the working directory, the run goes on" "0|f|0" \
	"$rc|$([ -f "$WORK/cwd/sync.lock" ] && echo f)|$(grep -c 'lock' <<<"$out")"

# 7c. A sendmail that hangs: killed after sendmail_timeout, and the run asks no
# one else (each would wait as long), nor handles an address change (Hugo's,
# whose challenge would wait as long); the next run asks both and handles it.
pg_psql "INSERT INTO accounts (username, domain, created_at, updated_at)
	SELECT u, NULL, now(), now() FROM unnest(ARRAY['Kim', 'Lou']) AS u;
	INSERT INTO users (email, approved, disabled, confirmed_at, account_id, created_at, updated_at)
	SELECT lower(username) || '@agri.gouv.fr', false, false, now() AT TIME ZONE 'UTC', id,
	       now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
	  FROM accounts WHERE username IN ('Kim', 'Lou') AND domain IS NULL" >/dev/null
printf '#!/bin/sh\ncat >/dev/null\nexec sleep 300\n' >"$WORK/sendmail.hung"; chmod +x "$WORK/sendmail.hung"
write_config "$WORK/hung.conf" "sendmail_path = $WORK/sendmail.hung" "sendmail_timeout = 1"
moves Hugo hugo.c@agri.gouv.fr
kit_with "$WORK/hung.conf" "$WORK/run-hung"; rc=$?
expect_eq "sendmail hanging: exit 1, one user tried, the run stopped and said so, no request left, Hugo's change left" \
	"1|1|1|0|pending hugo.b@agri.gouv.fr" "$rc|$(grep -c 'did not finish within sendmail_timeout' "$WORK/run-hung")|$(grep -c 'sendmail timed out: no more challenges in this run' "$WORK/run-hung")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account IN ('Kim', 'Lou')")|$(hugo)"
"$KIT" >"$WORK/run-after" 2>&1; rc=$?
expect_eq "... the next run asks both, and challenges Hugo's new address" "0|2|pending hugo.c@agri.gouv.fr" \
	"$rc|$(grep -c ': new user: challenge sent' "$WORK/run-after")|$(hugo)"
# Hugo changes his address again, and sendmail fails on the new address's
# challenge: the pending request at hugo.c is revoked, the new one withdrawn. A
# request at an address he has left does not count as asked: the next run asks
# him at hugo.d (it counted, and no run asked him again).
moves Hugo hugo.d@agri.gouv.fr
kit_with "$WORK/fail.conf" "$WORK/run-fail-d"; rc=$?
expect_eq "an address change while pending, its challenge not sent: exit 1, hugo.c revoked, no request at hugo.d" \
	"1|revoked hugo.c@agri.gouv.fr|0" \
	"$rc|$(hugo)|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'Hugo' AND email = 'hugo.d@agri.gouv.fr'")"
"$KIT" >"$WORK/run-d" 2>&1; rc=$?
"$KIT" >"$WORK/run-d2" 2>&1
expect_eq "... the next run asks him at hugo.d, once" "0|pending hugo.d@agri.gouv.fr|1|0" \
	"$rc|$(hugo)|$(grep -c 'Hugo: certification ended' "$WORK/run-d")|$(grep -c 'Hugo' "$WORK/run-d2")"

# 8. A wrong mastodon.conf: exit 4 before anything is done, the file and line named.
kitconf() {	# kitconf LINES...: a configuration file of these lines; prints mastodon-sync's rc|stderr
	printf '%s\n' "$@" >"$WORK/bad.conf"
	MASTODON_KIT_CONF="$WORK/bad.conf" "$KIT" >/dev/null 2>"$WORK/bad.err"
	echo "$?|$(cat "$WORK/bad.err")"
}
expect_eq "mastodon.conf: a bad value names the file and line" \
	"4|mastodon-sync: $WORK/bad.conf:2: MASTODON_LANG must be fr or en, not 'de'" \
	"$(kitconf '# kit' MASTODON_LANG=de)"
expect_eq "mastodon.conf: a key set twice" \
	"4|mastodon-sync: $WORK/bad.conf:2: MASTODON_ON_END: set twice (first at line 1)" \
	"$(kitconf MASTODON_ON_END=disable MASTODON_ON_END=report)"
expect_eq "mastodon.conf: an unterminated quote" \
	"4|mastodon-sync: $WORK/bad.conf:1: TOOTCTL: unterminated quote, or text after it" \
	"$(kitconf 'TOOTCTL="sudo -u mastodon tootctl')"
out=$(MASTODON_KIT_CONF="$WORK" "$KIT" 2>&1 >/dev/null); rc=$?
expect_eq "mastodon.conf: a directory" "4|mastodon-sync: cannot read $WORK (MASTODON_KIT_CONF): not a file" \
	"$rc|$out"
# A comment after a value, quoted or not, is no part of it.
printf '%s\n' "MASTODON_DATABASE=\"$(sed -n 's/^MASTODON_DATABASE="\(.*\)"$/\1/p' "$WORK/mastodon.conf")\"  # the instance" \
	'MASTODON_LANG=en # English' >"$WORK/comment.conf"
out=$(MASTODON_KIT_CONF="$WORK/comment.conf" bash -c '. "$1"; kit_config t && echo "$MASTODON_LANG|$MASTODON_DATABASE"' _ \
	"$KIT_DIR/mastodon-kit.sh" 2>&1)
expect_eq "mastodon.conf: comments after values are dropped" \
	"en|$(sed -n 's/^MASTODON_DATABASE="\(.*\)"$/\1/p' "$WORK/mastodon.conf")" "$out"
