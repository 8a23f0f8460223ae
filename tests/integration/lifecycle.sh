# lifecycle.sh — a certification that stays true, against the real PostgreSQL:
# one address, one account (at request and at reply, and two milterd racing);
# re-verification of the same account; an address change ends it; the
# re-certification cycle (challenge once, lapse with NOTIFY, reply again);
# an account's changes in turn (010); retention keeps what it must; migration of a
# database from schema 006.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
C="$BUILD/milterctl"
SIGN="$TOP/tests/lib/dkim-sign"
M2_PID=
trap 'milterd_stop; [ -n "$M2_PID" ] && kill "$M2_PID" 2>/dev/null' EXIT

db_reset || { not_ok "database reset"; exit 1; }
mkdir -p "$WORK/mail"
cat >"$WORK/sendmail" <<SH
#!/bin/sh
cat >"$WORK/mail/\$(date +%s%N)"
SH
chmod +x "$WORK/sendmail"
write_config "$WORK/milterd.conf" "sendmail_path = $WORK/sendmail"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
CC="$C -c $WORK/milterd.conf"

# signed FILE FROM TOKEN: an agent's reply carrying the token in its signed
# Subject, signed by agri.gouv.fr.
signed() {
	make_reply "$1.txt" "$2" "$3" --body "Yes."
	"$SIGN" --domain agri.gouv.fr --selector rsa2048 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
		<"$1.txt" >"$1"
}
state() { pg_psql "SELECT state FROM milterd.verification_status('$1')"; }
# listen CHANNEL: a session LISTENing on CHANNEL until heard; heard prints, into
# $WORK/listen.out, the notifications it got meanwhile. psql prints one when the
# server sends it, which can come after the answer to a later statement: heard
# waits for one on CHANNEL (10 s at most) before it ends the session.
listen() {
	lch=$1
	rm -f "$WORK/listen.fifo"; mkfifo "$WORK/listen.fifo"
	psql -Atq <"$WORK/listen.fifo" >"$WORK/listen.out" 2>&1 &
	lp=$!
	exec 7>"$WORK/listen.fifo"
	echo "LISTEN $1; SELECT 'listening';" >&7
	wait_for 10 grep -q listening "$WORK/listen.out"
}
heard() {
	echo "SELECT 'done';" >&7
	wait_for 10 grep -q "notification \"$lch\"" "$WORK/listen.out"
	exec 7>&-; wait "$lp"
}
# verify NAME ACCOUNT EMAIL: a request and its genuine reply through milterd.
verify() {
	local t
	t=$(new_token "$2" "$3") || { not_ok "$1: request refused"; return 1; }
	signed "$WORK/$2.eml" "$3" "$t"
	deliver "$1" "$WORK/$2.eml" "$t" accept verified
}

# ---- One address, one account.
verify "alice verifies alice@agri.gouv.fr" alice alice@agri.gouv.fr
out=$($CC request --account mallory --email Alice@agri.gouv.fr 2>&1); rc=$?
expect_eq "a second account cannot even ask for a certified address: exit 1, said so" \
	"1/yes" "$rc/$(grep -q 'alice@agri.gouv.fr already certifies another account' <<<"$out" && echo yes)"
out=$(psql -Atqc "SELECT milterd.request_verification('mallory', 'alice@agri.gouv.fr')" 2>&1)
sqlstate=$(psql -Atq -v ON_ERROR_STOP=1 -c '\set VERBOSITY verbose' \
	-c "SELECT milterd.request_verification('mallory', 'alice@agri.gouv.fr')" 2>&1 |
	grep -o 'ERROR:  [0-9A-Z]*' | cut -c9-)
expect_eq "request_verification() refuses it with SQLSTATE 23505 and a clear message" "23505/yes" \
	"$sqlstate/$(grep -q 'already certifies another account' <<<"$out" && echo yes)"

# Two accounts asked for bob's address before either verified: the first reply
# wins, the second is refused at its reply, with evidence.
tb1=$(new_token bob bob@agri.gouv.fr)
tb2=$(new_token bobby bob@agri.gouv.fr)
signed "$WORK/b1" bob@agri.gouv.fr "$tb1"
signed "$WORK/b2" bob@agri.gouv.fr "$tb2"
deliver "bob verifies first" "$WORK/b1" "$tb1" accept verified
deliver "bobby's reply from the same address: 550 5.7.1 address_in_use" "$WORK/b2" "$tb2" \
	reply address_in_use rcode=550 xcode=5.7.1
expect_eq "the refusal left evidence; bobby stays pending, bob verified" \
	"address_in_use|pending|verified" \
	"$(pg_psql "SELECT e.reason FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'bobby' ORDER BY e.id DESC LIMIT 1")|$(state bobby)|$(state bob)"
expect_eq "... and did not count as a failed attempt (the reply was right: max_attempts)" "0" \
	"$(pg_psql "SELECT attempts FROM milterd.requests WHERE account = 'bobby' AND state = 'pending'")"

# The same account verifying the same address again is fine: one live row.
verify "alice re-verifies her own address" alice alice@agri.gouv.fr
expect_eq "one live certification for alice, the previous one renewed" "renewed verified" \
	"$(pg_psql "SELECT string_agg(state, ' ' ORDER BY id) FROM milterd.requests WHERE account = 'alice'")"

# accounts_per_address = 0: no limit.
sed 's/^allow = .*/&\naccounts_per_address = 0/' "$TOP/policies/gouv-fr.conf" >"$WORK/nolimit.conf"
write_config "$WORK/nolimit-milterd.conf" "policy = $WORK/nolimit.conf" "socket = unix:$WORK/m2.sock"
out=$("$C" -c "$WORK/nolimit-milterd.conf" request --account alice2 --email alice@agri.gouv.fr 2>&1)
expect_eq "accounts_per_address = 0: a second account may ask" 0 "$?"
pg_psql "SELECT milterd.revoke('alice2')" >/dev/null

# ---- Two milterd racing for one address (two MX hosts): exactly one verifies.
write_config "$WORK/m2.conf" "socket = unix:$WORK/m2.sock"
: >"$WORK/m2.log"
"$BUILD/milterd" -f -c "$WORK/m2.conf" 2>>"$WORK/m2.log" &
M2_PID=$!
wait_for 10 grep -q "milterd started on" "$WORK/m2.log" || not_ok "second milterd starts"
rounds=8
for i in $(seq 1 $rounds); do
	tx=$(new_token "x$i" "race$i@agri.gouv.fr"); ty=$(new_token "y$i" "race$i@agri.gouv.fr")
	signed "$WORK/x$i" "race$i@agri.gouv.fr" "$tx"
	signed "$WORK/y$i" "race$i@agri.gouv.fr" "$ty"
	echo "$tx $ty" >"$WORK/race$i.tokens"
done
for i in $(seq 1 $rounds); do
	read -r tx ty <"$WORK/race$i.tokens"
	miltertest -D "socket=unix:$WORK/milterd.sock" -D "file=$WORK/x$i" \
		-D "rcpt=<verify+$tx@certify.test>" -D expect=any -s "$TOP/tests/integration/message.lua" \
		>"$WORK/rx$i" 2>&1 &
	px=$!
	miltertest -D "socket=unix:$WORK/m2.sock" -D "file=$WORK/y$i" \
		-D "rcpt=<verify+$ty@certify.test>" -D expect=any -s "$TOP/tests/integration/message.lua" \
		>"$WORK/ry$i" 2>&1 &
	wait $px $!
done
expect_eq "$rounds addresses, two accounts each racing through two milterd: one verified each" \
	"$rounds" "$(pg_psql "SELECT count(DISTINCT email) FROM milterd.requests
	  WHERE email LIKE 'race%' AND state = 'verified'")"
expect_eq "... and never two: the other account of each got address_in_use" \
	"$rounds|$rounds" "$(pg_psql "SELECT count(*) FROM milterd.requests WHERE email LIKE 'race%'
	  AND state = 'verified'")|$(pg_psql "SELECT count(*) FROM milterd.evidence e
	  JOIN milterd.requests r ON r.id = e.request_id WHERE r.email LIKE 'race%'
	  AND e.reason = 'address_in_use'")"
kill "$M2_PID"; wait "$M2_PID" 2>/dev/null; M2_PID=

# hold NAME SQL: SQL in a transaction kept open 2 s (in the background, $hp),
# once it has run.
hold() {
	{ echo "BEGIN;"; echo "$2;"; echo "SELECT pg_sleep(2); COMMIT;"; } |
		psql -Atq >"$WORK/$1.out" 2>&1 &
	hp=$!
	wait_for 10 sleeping
}
sleeping() { [ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")" -ge 1 ]; }
# then NAME SQL: SQL in another session now; how long it waited, in ms.
then_() {
	local start=$(date +%s%N)
	pg_psql "$2" >"$WORK/$1.out" 2>&1
	waited=$(( ($(date +%s%N) - start) / 1000000 ))
	wait "$hp"
}

# The same race made certain: the first verification holds its transaction
# open while the second one runs. The database must make the second wait and
# then refuse it (without the lock on the address, both would verify).
record_sql() {	# record_sql ACCOUNT TOKEN [FROM]: milterd.record() as milterd calls it
	echo "SELECT verified, state, holders FROM milterd.record((SELECT id FROM milterd.requests
	  WHERE account = '$1' AND state = 'pending'), sha256(convert_to('$2', 'UTF8')),
	  '${3:-dana@agri.gouv.fr}', 'verified',
	  'eom', 0, 1, 31536000, '192.0.2.1', NULL, NULL, NULL, NULL, 'agri.gouv.fr', 's', 'rsa-sha256',
	  2048, NULL, NULL, 'test', 'prefix')"
}
td1=$(new_token dana1 dana@agri.gouv.fr); td2=$(new_token dana2 dana@agri.gouv.fr)
hold dana1 "$(record_sql dana1 "$td1")"
then_ dana2 "$(record_sql dana2 "$td2")"
expect_eq "record(): the second verification of an address waits for the first, then finds it taken" 	"t|verified|0 -- f|pending|1 -- yes" 	"$(head -n 1 "$WORK/dana1.out") -- $(cat "$WORK/dana2.out") -- $([ "$waited" -ge 1000 ] && echo yes || echo "no ($waited ms)")"

# ---- An address change ends the certification.
listen milterd_address_changed
out=$($CC address --account bob --email Bob.New@agri.gouv.fr --send 2>&1); rc=$?
heard
expect_eq "milterctl address: the certification of the old address ended, the new one challenged" \
	"0/yes/yes" "$rc/$(grep -q 'bob: certification ended' <<<"$out" && echo yes)/$(grep -q 'challenge sent to bob.new@agri.gouv.fr' <<<"$out" && echo yes)"
expect_grep "NOTIFY milterd_address_changed carries the account" \
	'notification "milterd_address_changed" with payload "bob"' "$WORK/listen.out"
expect_eq "bob is no longer verified: his request for the new address is pending" pending "$(state bob)"
expect_eq "the old certification reads address_changed" address_changed \
	"$(pg_psql "SELECT state FROM milterd.verifications WHERE account = 'bob' AND email = 'bob@agri.gouv.fr' ORDER BY id DESC LIMIT 1")"
out=$($CC address --account bob --email bob.new@agri.gouv.fr --send 2>&1)
expect_eq "reported again: nothing more ended, no second challenge" "1|yes" \
	"$(ls "$WORK/mail" | wc -l)|$(grep -q 'certification unchanged' <<<"$out" && echo yes)"
# mail_token FILE: the token of a challenge (its Reply-To address).
mail_token() { grep -o 'verify+[a-z2-7]\{26\}@' "$1" | head -n 1 | cut -c8-33; }
tbn=$(mail_token "$(ls -d "$WORK"/mail/* | tail -n 1)")
signed "$WORK/bn" bob.new@agri.gouv.fr "$tbn"
deliver "a reply from the new address verifies bob again" "$WORK/bn" "$tbn" accept verified
out=$($CC request --account bobby --email bob@agri.gouv.fr 2>&1)
expect_eq "the old address is free for another account" 0 "$?"

# ---- An account's changes happen in turn (010): each call below starts while
# another holds its transaction open on the same account. Without the lock on
# the account the second would not see the first's uncommitted request.
slow() { [ "$waited" -ge 1000 ] && echo waited || echo "did not wait ($waited ms)"; }
hold carl1 "SELECT milterd.request_verification('carl', 'carl@agri.gouv.fr')"
then_ carl2 "SELECT milterd.request_verification('carl', 'carl.bis@agri.gouv.fr')"
expect_eq "two requests for one account at once: the second waits, then revokes the first" \
	"waited|carl.bis@agri.gouv.fr|revoked carl@agri.gouv.fr" \
	"$(slow)|$(pg_psql "SELECT string_agg(email, ' ') FROM milterd.requests WHERE account = 'carl' AND state = 'pending'")|$(pg_psql "SELECT state || ' ' || email FROM milterd.requests WHERE account = 'carl' ORDER BY id LIMIT 1")"
hold cleo1 "SELECT milterd.request_verification('cleo', 'cleo@agri.gouv.fr')"
then_ cleo2 "SELECT milterd.report_address('cleo', 'cleo.new@agri.gouv.fr')"
expect_eq "an address change during a request for the old address: that request is revoked" \
	"waited|0" "$(slow)|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'cleo' AND state = 'pending'")"
new_token cid cid@agri.gouv.fr >/dev/null
hold cid1 "SELECT milterd.request_verification('cid', 'cid@agri.gouv.fr')"
then_ cid2 "SELECT milterd.revoke('cid')"
expect_eq "a revocation during a request: it waits, then revokes the new request too" \
	"waited|1|0" "$(slow)|$(cat "$WORK/cid2.out")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'cid' AND state = 'pending'")"
# A reply from the old address verifying while the address changes: ended
# either way (here it commits first; the change waits for its row).
tcora=$(new_token cora cora@agri.gouv.fr)
hold cora1 "$(record_sql cora "$tcora" cora@agri.gouv.fr)"
then_ cora2 "SELECT milterd.report_address('cora', 'cora.new@agri.gouv.fr')"
expect_eq "a verification from the old address racing the change: it verified, then the change ended it" \
	"t|verified|0 -- ended -- address_changed" \
	"$(grep -m 1 '|' "$WORK/cora1.out") -- $(cat "$WORK/cora2.out") -- $(state cora)"

# ---- Re-certification: challenged once near the end, lapsed past it, verified again.
verify "rita verifies" rita rita@agri.gouv.fr
verify "rene verifies" rene rene@agri.gouv.fr
expect_eq "a verification lasts recertify_after (365 days by default)" 365 \
	"$(pg_psql "SELECT round(extract(epoch FROM valid_until - verified_at) / 86400) FROM milterd.requests WHERE account = 'rita' AND state = 'verified'")"
pg_psql "UPDATE milterd.requests SET valid_until = now() + interval '10 days' WHERE account IN ('rita', 'rene') AND state = 'verified'" >/dev/null
rm -f "$WORK"/mail/*
out=$($CC recertify 2>&1); rc=$?
expect_eq "recertify: the two certifications within their notice are challenged" \
	"0/recertify: 0 lapsed, 0 given an end date, 2 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile" \
	"$rc/$(tail -n 1 <<<"$out")"
out=$($CC recertify 2>&1)
expect_eq "run twice: no second challenge" "recertify: 0 lapsed, 0 given an end date, 0 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile|2" \
	"$(tail -n 1 <<<"$out")|$(ls "$WORK/mail" | wc -l)"
mail=$(grep -l 'rita@agri.gouv.fr' "$WORK"/mail/*)
expect_grep "the re-certification challenge comes from templates/recertify.fr.eml" \
	'^Subject: Renouvellement de la certification du compte rita \[' "$mail"
expect_eq "while the new request is pending, rita stays verified" verified "$(state rita)"
trita=$(mail_token "$mail")
signed "$WORK/rita2" rita@agri.gouv.fr "$trita"
deliver "rita's reply to the re-certification verifies her for a new period" "$WORK/rita2" "$trita" \
	accept verified
expect_eq "rita: the old certification renewed, the new one live for 365 days" "renewed verified|365" \
	"$(pg_psql "SELECT string_agg(state, ' ' ORDER BY id) FROM milterd.requests WHERE account = 'rita'")|$(pg_psql "SELECT round(extract(epoch FROM valid_until - now()) / 86400) FROM milterd.requests WHERE account = 'rita' AND state = 'verified'")"

# Rene does not answer: past the end, recertify lapses him, once, with NOTIFY.
pg_psql "UPDATE milterd.requests SET valid_until = now() - interval '1 second' WHERE account = 'rene' AND state = 'verified'" >/dev/null
expect_eq "past its end, the certification already reads lapsed (at read time)" lapsed \
	"$(pg_psql "SELECT state FROM milterd.verifications WHERE account = 'rene' AND verified_at IS NOT NULL")"
listen milterd_lapsed
out=$($CC recertify 2>&1)
heard
expect_eq "recertify lapses it" "recertify: 1 lapsed, 0 given an end date, 0 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile" \
	"$(tail -n 1 <<<"$out")"
expect_grep "NOTIFY milterd_lapsed carries the account" \
	'notification "milterd_lapsed" with payload "rene"' "$WORK/listen.out"
expect_eq "rene is not verified; his re-certification request still awaits a reply" \
	"pending|lapsed" "$(state rene)|$(pg_psql "SELECT state FROM milterd.requests WHERE account = 'rene' AND verified_at IS NOT NULL")"
out=$($CC recertify 2>&1)
expect_eq "run again: nothing lapses twice, nothing is challenged" \
	"recertify: 0 lapsed, 0 given an end date, 0 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile" "$(tail -n 1 <<<"$out")"
trene=$(mail_token "$(grep -l 'rene@agri.gouv.fr' "$WORK"/mail/*)")
signed "$WORK/rene2" rene@agri.gouv.fr "$trene"
deliver "rene's late reply verifies him again" "$WORK/rene2" "$trene" accept verified
expect_eq "rene verified again" verified "$(state rene)"

# A certification from before end dates existed gets one, never sooner than the notice.
verify "olga verifies" olga olga@agri.gouv.fr
pg_psql "UPDATE milterd.requests SET valid_until = NULL, verified_at = now() - interval '2 years' WHERE account = 'olga'" >/dev/null
rm -f "$WORK"/mail/*
out=$($CC recertify 2>&1)
expect_eq "an old certification without end date: dated and challenged, ending 30 days from now" \
	"recertify: 0 lapsed, 1 given an end date, 1 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile|30" \
	"$(tail -n 1 <<<"$out")|$(pg_psql "SELECT round(extract(epoch FROM valid_until - now()) / 86400) FROM milterd.requests WHERE account = 'olga' AND state = 'verified'")"

# A challenge that cannot be sent is withdrawn (its request deleted), to be sent on
# the next run.
verify "sam verifies" sam sam@agri.gouv.fr
pg_psql "UPDATE milterd.requests SET valid_until = now() + interval '5 days' WHERE account = 'sam' AND state = 'verified'" >/dev/null
printf '#!/bin/sh\nexit 75\n' >"$WORK/sendmail.fail"; chmod +x "$WORK/sendmail.fail"
write_config "$WORK/fail.conf" "sendmail_path = $WORK/sendmail.fail"
out=$("$C" -c "$WORK/fail.conf" recertify 2>&1); rc=$?
expect_eq "sendmail failing: exit 5, the new request withdrawn (sam's live certification the latest)" \
	"5|verified|1" "$rc|$(pg_psql "SELECT state FROM milterd.requests WHERE account = 'sam' ORDER BY id DESC LIMIT 1")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'sam'")"
out=$($CC recertify 2>&1)
expect_eq "the next run sends it" "recertify: 0 lapsed, 0 given an end date, 1 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile" \
	"$(tail -n 1 <<<"$out")"

# A sendmail that hangs: killed after sendmail_timeout, and the run stops there
# rather than wait as long for each challenge after it; the next run sends them.
for a in sid tim; do
	verify "$a verifies" "$a" "$a@agri.gouv.fr"
	pg_psql "UPDATE milterd.requests SET valid_until = now() + interval '5 days' WHERE account = '$a' AND state = 'verified'" >/dev/null
done
printf '#!/bin/sh\ncat >/dev/null\nexec sleep 300\n' >"$WORK/sendmail.hung"; chmod +x "$WORK/sendmail.hung"
write_config "$WORK/hung.conf" "sendmail_path = $WORK/sendmail.hung" "sendmail_timeout = 1"
out=$(timeout -k 5 60 "$C" -c "$WORK/hung.conf" recertify 2>&1); rc=$?
expect_eq "sendmail hanging: exit 5, one challenge tried and withdrawn, the run stopped and said so" \
	"5|recertify: 0 lapsed, 0 given an end date, 0 challenged, 1 not sent, 0 refused by the policy, 0 ended meanwhile|1|1|0" \
	"$rc|$(tail -n 1 <<<"$out")|$(grep -c 'did not finish within sendmail_timeout (1 s); killed' <<<"$out")|$(grep -c 'sendmail timed out: no more challenges in this run' <<<"$out")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account IN ('sid', 'tim') AND state = 'pending'")"
out=$($CC recertify 2>&1)
expect_eq "... the next run sends both" "recertify: 0 lapsed, 0 given an end date, 2 challenged, 0 not sent, 0 refused by the policy, 0 ended meanwhile" \
	"$(tail -n 1 <<<"$out")"

# Two accounts certified by one address (from before schema 007): neither can be
# challenged again, both are said and counted, and the run goes on with the others.
pg_psql "INSERT INTO milterd.requests (account, email, token_hash, state, expires_at, verified_at, valid_until)
	SELECT a, 'zed@agri.gouv.fr', sha256(convert_to(a, 'UTF8')), 'verified', now(), now() - interval '360 days',
	       now() + interval '2 days' FROM unnest(ARRAY['zed1', 'zed2']) AS a" >/dev/null
verify "yan verifies" yan yan@agri.gouv.fr
pg_psql "UPDATE milterd.requests SET valid_until = now() + interval '3 days' WHERE account = 'yan' AND state = 'verified'" >/dev/null
out=$($CC recertify 2>&1); rc=$?
expect_eq "an address certifying two accounts: both refused and said, yan still challenged, exit 0" \
	"0|recertify: 0 lapsed, 0 given an end date, 1 challenged, 0 not sent, 2 refused by the policy, 0 ended meanwhile|2" \
	"$rc|$(tail -n 1 <<<"$out")|$(grep -c 'zed@agri.gouv.fr already certifies another account' <<<"$out")"

# A template that cannot be rendered: the request is revoked, asked again once it can be.
verify "ugo verifies" ugo ugo@agri.gouv.fr
pg_psql "UPDATE milterd.requests SET valid_until = now() + interval '3 days' WHERE account = 'ugo' AND state = 'verified'" >/dev/null
mkdir -p "$WORK/tpl"; cp "$TOP"/templates/* "$WORK/tpl/"
sed -i 's/{{ends}}/{{no_such_placeholder}}/' "$WORK/tpl/recertify.fr.eml"
write_config "$WORK/tpl.conf" "sendmail_path = $WORK/sendmail" "templates = $WORK/tpl"
out=$("$C" -c "$WORK/tpl.conf" recertify 2>&1); rc=$?
expect_eq "a broken template: exit 5, ugo's new request withdrawn" "5|verified|1" \
	"$rc|$(pg_psql "SELECT state FROM milterd.requests WHERE account = 'ugo' ORDER BY id DESC LIMIT 1")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'ugo'")"
out=$($CC recertify 2>&1)
expect_eq "the template mended, the next run asks ugo" \
	"recertify: 0 lapsed, 0 given an end date, 1 challenged, 0 not sent, 2 refused by the policy, 0 ended meanwhile" \
	"$(tail -n 1 <<<"$out")"

# A certification that ends while recertify runs is not challenged: the run
# read its list before its first challenge (011: the database reads each again
# under the account's lock). The stand-in sendmail holds amy's challenge until
# ben's address has changed and cyd is revoked.
for a in amy ben cyd; do verify "$a verifies" "$a" "$a@agri.gouv.fr"; done
pg_psql "UPDATE milterd.requests SET valid_until = now() + CASE account WHEN 'amy' THEN interval '1 day'
	WHEN 'ben' THEN interval '2 days' ELSE interval '3 days' END
	WHERE account IN ('amy', 'ben', 'cyd') AND state = 'verified'" >/dev/null
cat >"$WORK/sendmail.slow" <<SH
#!/bin/sh
f="$WORK/mail/\$(date +%s%N)"; cat >"\$f"
grep -q '^To:.*amy@' "\$f" || exit 0
touch "$WORK/amy.sending"
i=0; while [ ! -e "$WORK/amy.release" ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
SH
chmod +x "$WORK/sendmail.slow"
write_config "$WORK/slow.conf" "sendmail_path = $WORK/sendmail.slow"
rm -f "$WORK"/mail/*
"$C" -c "$WORK/slow.conf" recertify >"$WORK/slow.out" 2>&1 &
pr=$!
wait_for 10 test -e "$WORK/amy.sending"
$CC address --account ben --email ben.new@agri.gouv.fr --send >/dev/null 2>&1
pg_psql "SELECT milterd.revoke('cyd')" >/dev/null
touch "$WORK/amy.release"
wait "$pr"; rc=$?
expect_eq "recertify: an address change and a revocation during the run: neither challenged, both said" \
	"0|recertify: 0 lapsed, 0 given an end date, 1 challenged, 0 not sent, 2 refused by the policy, 2 ended meanwhile|2" \
	"$rc|$(tail -n 1 "$WORK/slow.out")|$(grep -c 'ended while this run went on' "$WORK/slow.out")"
expect_eq "... ben's request for his new address still pending, none for the old; none for cyd; no mail to either old address" \
	"ben.new@agri.gouv.fr|0|0" \
	"$(pg_psql "SELECT string_agg(email, ' ') FROM milterd.requests WHERE account = 'ben' AND state = 'pending'")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'cyd' AND state = 'pending'")|$(grep -l '^To:.*\(ben\|cyd\)@agri' "$WORK"/mail/* | wc -l)"

# With --json, standard output is one document; the lines saying a challenge was
# sent go to standard error.
verify "jon verifies" jon jon@agri.gouv.fr
pg_psql "UPDATE milterd.requests SET valid_until = now() + interval '2 days' WHERE account = 'jon' AND state = 'verified'" >/dev/null
$C -c "$WORK/milterd.conf" --json recertify >"$WORK/rj.out" 2>"$WORK/rj.err"
$C -c "$WORK/milterd.conf" --json address --account jon --email jon.new@agri.gouv.fr --send >"$WORK/aj.out" 2>"$WORK/aj.err"
$C -c "$WORK/milterd.conf" --json address --account jon --email jon.bis@agri.gouv.fr --print >"$WORK/ap.out" 2>"$WORK/ap.err"
expect_eq "--json recertify and address --send: one document on stdout, the sent lines on stderr; with --print stdout is the mail" \
	"1|ended|ok|recertify sent to jon@agri.gouv.fr|challenge sent to jon.new@agri.gouv.fr|From:|unchanged" \
	"$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["challenged"])' "$WORK/rj.out" 2>&1)|$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certification"])' "$WORK/aj.out" 2>&1)|$(grep -c . "$WORK/rj.out" | sed 's/^1$/ok/')|$(grep "sent to" "$WORK/rj.err")|$(cat "$WORK/aj.err")|$(head -c 5 "$WORK/ap.out")|$(/usr/bin/python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["certification"])' "$WORK/ap.err" 2>&1)"

# ---- An administrator revokes a certification: it ends, with NOTIFY, and frees the address.
listen milterd_revoked
out=$($CC revoke rita 2>&1); rc=$?
heard
expect_eq "milterctl revoke ends a live certification" "0|revoked rita|revoked" \
	"$rc|$out|$(state rita)"
expect_grep "NOTIFY milterd_revoked carries the account" \
	'notification "milterd_revoked" with payload "rita"' "$WORK/listen.out"
expect_eq "the end is an event for the backend" 1 \
	"$(pg_psql "SELECT count(*) FROM milterd.events WHERE account = 'rita' AND event = 'revoked'")"
out=$($CC request --account rita2 --email rita@agri.gouv.fr 2>&1)
expect_eq "the revoked address can certify another account" 0 "$?"
out=$($CC revoke nobody 2>&1); rc=$?
expect_eq "revoke with nothing to revoke: exit 1, said so" "1|yes" \
	"$rc|$(grep -q 'nothing to revoke for account nobody' <<<"$out" && echo yes)"

# ---- Retention: old evidence and finished requests go; live ones and their latest evidence stay.
t=$(new_token pia pia@agri.gouv.fr)		# live, with old evidence
signed "$WORK/pia" pia@agri.gouv.fr "$t"
deliver "an unsigned reply for pia (evidence)" "$WORK/pia.txt" "$t" reply not_authenticated rcode=550 xcode=5.7.20
deliver "and another" "$WORK/pia.txt" "$t" reply not_authenticated rcode=550 xcode=5.7.20
new_token gus gus@agri.gouv.fr >/dev/null	# finished long ago
pg_psql "SELECT milterd.revoke('gus')" >/dev/null
pg_psql "UPDATE milterd.requests SET revoked_at = now() - interval '500 days', created_at = now() - interval '501 days' WHERE account = 'gus';
	UPDATE milterd.evidence SET decided_at = now() - interval '500 days'
	 WHERE request_id IN (SELECT id FROM milterd.requests WHERE account = 'pia')" >/dev/null
before=$(pg_psql "SELECT count(*) FROM milterd.evidence")
out=$($CC db prune --batch 1 2>&1); rc=$?
expect_eq "db prune: one old evidence row (pia's latest stays), one old request" \
	"0/pruned 1 evidence rows older than 400d, 1 requests finished more than 400d ago" "$rc/$out"
expect_eq "what stays: pia's request and latest evidence, everything recent" \
	"1|1|0|$((before - 1))" "$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'pia'")|$(pg_psql "SELECT count(*) FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id WHERE r.account = 'pia'")|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'gus'")|$(pg_psql "SELECT count(*) FROM milterd.evidence")"
out=$($CC db prune 2>&1)
expect_eq "prune again: nothing more" "pruned 0 evidence rows older than 400d, 0 requests finished more than 400d ago" "$out"
# A live certification keeps the row that verified it, even behind a later
# copy of the reply (011; 007 kept the latest row only).
tv=$(new_token vera vera@agri.gouv.fr)
signed "$WORK/vera" vera@agri.gouv.fr "$tv"
deliver "vera verifies" "$WORK/vera" "$tv" accept verified
deliver "a copy of vera's reply: already_verified" "$WORK/vera" "$tv" accept already_verified
pg_psql "UPDATE milterd.evidence SET decided_at = now() - CASE reason WHEN 'verified' THEN interval '500 days'
	ELSE interval '450 days' END WHERE request_id IN (SELECT id FROM milterd.requests WHERE account = 'vera')" >/dev/null
out=$($CC db prune 2>&1)
expect_eq "db prune: a live certification keeps its verifying evidence and its latest" \
	"pruned 0 evidence rows older than 400d, 0 requests finished more than 400d ago|verified already_verified" \
	"$out|$(pg_psql "SELECT string_agg(e.reason, ' ' ORDER BY e.id) FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id WHERE r.account = 'vera'")"
milterd_stop

# ---- Migration: a database at schema 006 with verified, pending and expired requests.
psql -d postgres -qc "DROP DATABASE IF EXISTS milterd WITH (FORCE)" -qc "CREATE DATABASE milterd" >/dev/null
mkdir -p "$WORK/sql006"
cp "$TOP"/milterd/sql/00[1-6]_*.sql "$WORK/sql006/"
MILTERD_SQLDIR="$WORK/sql006" "$C" db migrate >/dev/null
pg_psql "SELECT milterd.request_verification('v1', 'v1@agri.gouv.fr'), milterd.request_verification('v2', 'v1@agri.gouv.fr'),
	milterd.request_verification('p1', 'p1@agri.gouv.fr'), milterd.request_verification('e1', 'e1@agri.gouv.fr', interval '1 second')" >/dev/null
tp=$(pg_psql "SELECT milterd.request_verification('p2', 'p2@agri.gouv.fr')")
pg_psql "UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account IN ('v1', 'v2')" >/dev/null
sleep 1.1
latest=$(ls "$TOP/milterd/sql" | sed -n 's/^0*\([0-9][0-9]*\)_.*\.sql$/\1/p' | sort -n | tail -n 1)
out=$("$C" status v1 2>&1); rc=$?
expect_eq "milterctl on the older schema: exit 3, says to migrate (not a raw SQL error)" \
	"3/milterctl: the database's schema is at version 6, this milterctl needs $latest: run milterctl db migrate" "$rc/$out"
# milterd on the older schema: 451 (nothing lost: the MTA retries after the
# migration), and the log says to migrate instead of a statement's SQL error.
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts on the older schema"; exit 1; }
wait_for 10 grep -q "database not usable at start" "$MILTERD_LOG"
expect_grep "milterd on the older schema says so at start" \
	"database not usable at start: the database's schema is at version 6, milterd needs $latest: run milterctl db migrate;" \
	"$MILTERD_LOG"
signed "$WORK/p2" p2@agri.gouv.fr "$tp"
out=$(mt message.lua "file=$WORK/p2" "rcpt=<verify+$tp@certify.test>" expect=verdict qid=OLDSCHEMA 2>&1)
expect_eq "... a reply meanwhile is refused at RCPT with 451 4.3.0" "verdict rcpt|1" \
	"$(grep '^verdict' <<<"$out")|$(grep -F 'OLDSCHEMA: ' "$MILTERD_LOG" | grep -c 'reason=temporary reply=451 xcode=4.3.0 ')"
expect_grep "... its log line says to migrate" \
	"OLDSCHEMA: token=[0-9a-f]+ database: the database's schema is at version 6, milterd needs $latest: run milterctl db migrate" "$MILTERD_LOG"
milterd_stop
out=$(MILTERD_SQLDIR="$TOP/milterd/sql" "$C" db migrate 2>&1); rc=$?
expect_eq "006 -> latest migrates a database with data" "0/yes" \
	"$rc/$(grep -q '^applied 007_lifecycle.sql' <<<"$out" && echo yes)"
expect_eq "verified, pending and expired requests keep their meaning" \
	"e1 expired|p1 pending|p2 pending|v1 verified|v2 verified" \
	"$(pg_psql "SELECT string_agg(account || ' ' || state, '|' ORDER BY account) FROM milterd.verifications")"
expect_eq "migrated certifications have no end date until recertify gives one" "2" \
	"$(pg_psql "SELECT count(*) FROM milterd.requests WHERE state = 'verified' AND valid_until IS NULL")"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts on the migrated database"; exit 1; }
deliver "a request made before the migration verifies after it" "$WORK/p2" "$tp" accept verified
