# token-filter.sh — the set of issued tokens (store_tokens.c, migration 012):
# a token never issued is refused at RCPT without a lookup, while every token
# issued, however it was written and however soon its reply comes, is looked
# up; when the set's listener is silent or gone, every token is looked up
# again, and the set comes back by itself.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap 'kill -CONT "$(listener_pid)" 2>/dev/null; milterd_stop' EXIT

db_reset || { not_ok "database reset"; exit 1; }
# Requests issued before milterd starts: read from the table at connection.
before=$(new_token early early@agri.gouv.fr)
port=$(free_port)
write_config "$WORK/milterd.conf" "stats_listen = 127.0.0.1:$port"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }

metric() {	# NAME: its value in milterd's Prometheus text
	metrics "$port" | awk -v n="$1" '$1 == n {print $2}'
}
# The listener's backend: the session whose last statement was a ping.
listener_pid() {
	psql -Atq -c "SELECT pid FROM pg_stat_activity
		WHERE query LIKE 'NOTIFY milterd_token_issued%' LIMIT 1"
}
# junk: a well-formed token nobody issued (128 random bits in base32).
junk() {
	/usr/bin/python3 -c 'import base64, os
print(base64.b32encode(os.urandom(16)).decode().lower().rstrip("="))'
}
current() { [ "$(metric milterd_token_filter_current)" = "$1" ]; }
# current_again NAME PATTERN: the log says PATTERN (the set is being read
# anew), then the set is current again.
current_again() {
	if wait_for 5 grep -q "$2" "$MILTERD_LOG" && wait_for 10 current 1; then
		ok "$1"
	else
		not_ok "$1: $(grep 'token filter' "$MILTERD_LOG" | tail -n 3 | tr '\n' ' ')"
	fi
}

if wait_for 10 current 1; then
	ok "the set becomes current ($(metric milterd_token_filter_tokens) token(s) known)"
else
	not_ok "the set becomes current: $(grep 'token filter' "$MILTERD_LOG" | tr '\n' ' ')"
fi
expect_eq "the set holds the request issued before milterd started" 1 \
	"$(metric milterd_token_filter_tokens)"
rcpt_ok "<verify+$before@certify.test>" continue &&
	ok "a token issued before milterd started is looked up (continues)" ||
	not_ok "a token issued before milterd started is looked up"

# Junk, while another session holds the requests table: a lookup would wait
# for it (451 after db_timeout); the set answers at once, 550 unknown_token.
spared=$(metric milterd_token_filter_refusals_total)
PGAPPNAME="table lock" psql -Atq -c "BEGIN" -c "LOCK milterd.requests IN ACCESS EXCLUSIVE MODE" \
	-c "SELECT pg_sleep(30)" -c "COMMIT" >/dev/null 2>&1 &
locker=$!
wait_for 5 test "$(psql -Atq -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a
	USING (pid) WHERE a.application_name = 'table lock' AND l.mode = 'AccessExclusiveLock'
	AND l.relation = 'milterd.requests'::regclass")" = 1
start=$(date +%s%N)
out=$(mt rcpt.lua "rcpt=<verify+$(junk)@certify.test>" expect=reply 2>&1); rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$rc" = 0 ] && [ "$ms" -lt 1500 ] && grep -q "reason=unknown_token reply=550" "$MILTERD_LOG"; then
	ok "a token never issued is refused 550 unknown_token without the database (table locked; ${ms} ms)"
else
	not_ok "junk without the database: rc $rc, ${ms} ms: $out"
fi
expect_eq "milterd_token_filter_refusals_total counts it" "$((spared + 1))" \
	"$(metric milterd_token_filter_refusals_total)"
out=$(mt rcpt.lua "rcpt=<verify+$before@certify.test>" expect=reply 2>&1)
if [ $? = 0 ] && tail -n 3 "$MILTERD_LOG" | grep -q "reason=temporary reply=451"; then
	ok "an issued token is still looked up: 451 while the table is locked"
else
	not_ok "an issued token with the table locked: $out; $(tail -n 2 "$MILTERD_LOG" | tr '\n' ' ')"
fi
psql -Atq -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE application_name = 'table lock'" >/dev/null
wait "$locker" 2>/dev/null

# A reply right after its request: the request's NOTIFY is read first.
fails=0
for i in $(seq 1 20); do
	t=$(new_token "quick$i" "quick$i@agri.gouv.fr") &&
		rcpt_ok "<verify+$t@certify.test>" continue || fails=$((fails + 1))
done
expect_eq "20 requests each answered at once by RCPT: all looked up (continue)" 0 "$fails"

# However the token is written: an INSERT of the table's own, a new hash.
direct=$(junk)
pg_psql "INSERT INTO milterd.requests (account, email, token_hash, expires_at)
	VALUES ('direct', 'direct@agri.gouv.fr', sha256(convert_to('$direct', 'UTF8')),
		now() + interval '1 day')" >/dev/null
rcpt_ok "<verify+$direct@certify.test>" continue &&
	ok "a request inserted by SQL of its own is looked up" ||
	not_ok "a request inserted by SQL of its own is looked up"
moved=$(junk)
pg_psql "UPDATE milterd.requests SET token_hash = sha256(convert_to('$moved', 'UTF8'))
	WHERE account = 'direct'" >/dev/null
rcpt_ok "<verify+$moved@certify.test>" continue &&
	ok "a token hash changed by UPDATE is looked up" ||
	not_ok "a token hash changed by UPDATE is looked up"

# The listener stops answering (its backend stopped): within 2 s the set is
# no longer current, and every token is looked up; a request issued meanwhile
# is verified by its lookup.
lpid=$(listener_pid)
kill -STOP "$lpid"
if wait_for 5 current 0; then
	ok "a silent listener: the set is no longer current"
else
	not_ok "a silent listener: milterd_token_filter_current is $(metric milterd_token_filter_current)"
fi
wait_for 3 grep -q "token filter: no echo from the database" "$MILTERD_LOG" &&
	ok "the log says so" || not_ok "the log says so: $(grep 'token filter' "$MILTERD_LOG" | tr '\n' ' ')"
spared=$(metric milterd_token_filter_refusals_total)
late=$(new_token late late@agri.gouv.fr)
rcpt_ok "<verify+$late@certify.test>" continue &&
	ok "a token issued while the set is not current is looked up" ||
	not_ok "a token issued while the set is not current is looked up"
rcpt_ok "<verify+$(junk)@certify.test>" reply &&
	[ "$(metric milterd_token_filter_refusals_total)" = "$spared" ] &&
	ok "junk is looked up while the set is not current (550, no refusal from the set)" ||
	not_ok "junk while not current: refusals $spared -> $(metric milterd_token_filter_refusals_total)"
kill -CONT "$lpid"
if wait_for 5 current 1; then
	ok "the listener answers again: the set is current again"
else
	not_ok "the set is current again after the listener answers"
fi

# The listener's connection ends: milterd connects again and reads the table
# anew, requests issued while it was away included.
psql -Atq -c "SELECT pg_terminate_backend($(listener_pid))" >/dev/null
gone=$(new_token gone gone@agri.gouv.fr)
current_again "the listener's connection ends: milterd connects again, the set is current" \
	"token filter: .*connecting again"
rcpt_ok "<verify+$gone@certify.test>" continue &&
	ok "a request issued while the listener was away is known" ||
	not_ok "a request issued while the listener was away is known"
# One more than the table's rows: the hash 'direct' had before its UPDATE
# stays (a stale entry costs a lookup, never a wrong answer).
expect_eq "the set holds every request in the table, and one old hash" \
	"$(( $(pg_psql "SELECT count(*) FROM milterd.requests") + 1 ))" \
	"$(metric milterd_token_filter_tokens)"
spared=$(metric milterd_token_filter_refusals_total)
rcpt_ok "<verify+$(junk)@certify.test>" reply &&
	[ "$(metric milterd_token_filter_refusals_total)" = "$((spared + 1))" ] &&
	ok "junk is refused from the set again" ||
	not_ok "junk is refused from the set again: $spared -> $(metric milterd_token_filter_refusals_total)"

# A token written with the triggers off is announced to nobody: the set does
# not know it (its reply is refused) until SIGHUP has it read anew, which
# also forgets the hash 'direct' had.
silent=$(junk)
pg_psql "SET session_replication_role = replica;
	INSERT INTO milterd.requests (account, email, token_hash, expires_at)
	VALUES ('silent', 'silent@agri.gouv.fr', sha256(convert_to('$silent', 'UTF8')),
		now() + interval '1 day')" >/dev/null
spared=$(metric milterd_token_filter_refusals_total)
rcpt_ok "<verify+$silent@certify.test>" reply &&
	[ "$(metric milterd_token_filter_refusals_total)" = "$((spared + 1))" ] &&
	ok "a token written with the triggers off is unknown to the set" ||
	not_ok "a token written with the triggers off: refusals $spared -> $(metric milterd_token_filter_refusals_total)"
kill -HUP "$MILTERD_PID"
current_again "SIGHUP: the set is read anew and current again" \
	"token filter: reading the issued tokens anew"
rcpt_ok "<verify+$silent@certify.test>" continue &&
	ok "after SIGHUP the token written with the triggers off is looked up" ||
	not_ok "after SIGHUP the token written with the triggers off is looked up"
expect_eq "after SIGHUP the set holds exactly the table's requests" \
	"$(pg_psql "SELECT count(*) FROM milterd.requests")" "$(metric milterd_token_filter_tokens)"

# The database goes away: no longer current, tokens looked up (451); back: current again.
pg_stop
if wait_for 5 current 0; then ok "the database stops: the set is no longer current"
else not_ok "the database stops: the set is no longer current"; fi
rcpt_ok "<verify+$(junk)@certify.test>" reply &&
	tail -n 3 "$MILTERD_LOG" | grep -q "reason=temporary reply=451" &&
	ok "junk with the database away: 451, as any token" ||
	not_ok "junk with the database away: $(tail -n 2 "$MILTERD_LOG" | tr '\n' ' ')"
pg_start "$PG_TOPWORK" || not_ok "database restarts"
if wait_for 10 current 1; then ok "the database is back: the set is current again"
else not_ok "the database is back: the set is current again"; fi
if grep -q "milterd_token_issued" "$MILTERD_LOG" || grep -qi -e "$before" -e "$late" "$MILTERD_LOG"; then
	not_ok "no token and no ping in the log"
else
	ok "no token and no ping in the log"
fi
