# db.sh — the SQL API and milterctl against a real PostgreSQL: migrations, tokens
# (format, hash-only storage), supersession, status, NOTIFY, exit codes, decide() under a race.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
C="$BUILD/milterctl"
export MILTERD_SQLDIR="$TOP/milterd/sql"

psql -d postgres -qc "DROP DATABASE IF EXISTS milterd WITH (FORCE)" -qc "CREATE DATABASE milterd" >/dev/null
out=$("$C" db migrate 2>&1)
files=$(cd "$TOP/milterd/sql" && ls [0-9][0-9][0-9]_*.sql)
nfiles=$(echo "$files" | wc -l)
expect_eq "db migrate applies every migration in order on an empty database" \
	"$(echo "$files" | sed 's/^/applied /'; echo "$nfiles migration(s) applied")" "$out"
out=$("$C" db migrate 2>&1); rc=$?
expect_eq "db migrate is idempotent" "schema up to date/0" "$out/$rc"
expect_eq "schema_migrations records the versions" "$(echo "$files" | sed 's/_.*//; s/^0*//' | xargs)" \
	"$(pg_psql 'SELECT string_agg(version::text, $$ $$ ORDER BY version) FROM milterd.schema_migrations')"

# Two migrations racing (two MX hosts at once) take turns on the advisory lock.
psql -d postgres -qc "DROP DATABASE milterd WITH (FORCE)" -qc "CREATE DATABASE milterd" >/dev/null
"$C" db migrate >"$WORK/m1" 2>&1 & p1=$!
"$C" db migrate >"$WORK/m2" 2>&1 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
expect_eq "concurrent migrations both succeed, each migration applied once" "0 0 $nfiles" \
	"$r1 $r2 $(cat "$WORK/m1" "$WORK/m2" | grep -c '^applied')"

# Evidence rows take only the reason codes and stages of the contract (domains
# since 005; table CHECKs before).
ev_insert() { pg_psql "INSERT INTO milterd.evidence (reason, stage) VALUES ('$1', '$2') RETURNING 'stored'" 2>&1; }
expect_eq "an evidence row with a reason code and a stage is stored" stored "$(ev_insert already_verified rcpt)"
case "$(ev_insert approved eom)/$(ev_insert verified later)" in
*'domain milterd.reason_code violates'*/*'domain milterd.decision_stage violates'*)
	ok "an evidence row with an unknown reason or stage is refused";;
*)	not_ok "unknown reason or stage: $(ev_insert approved eom) / $(ev_insert verified later)";;
esac
pg_psql "DELETE FROM milterd.evidence" >/dev/null

tok=$("$C" request --account alice --email '  Alice@AGRI.gouv.FR ')
if [[ "$tok" =~ ^[a-z2-7]{25}[aeimquy4]$ ]]; then ok "token is 26 lowercase base32 chars"; else not_ok "token format: '$tok'"; fi
expect_eq "email stored lowercased and trimmed" "alice@agri.gouv.fr" \
	"$(pg_psql "SELECT email FROM milterd.requests WHERE account = 'alice'")"
expect_eq "only the SHA-256 of the token is stored" \
	"$(printf %s "$tok" | sha256sum | cut -c1-64)" \
	"$(pg_psql "SELECT encode(token_hash, 'hex') FROM milterd.requests WHERE account = 'alice'")"
expect_eq "the token itself appears nowhere in the database" 0 \
	"$(pg_dump -a -n milterd milterd | grep -c "$tok")"

tok2=$("$C" request --account alice --email alice@agri.gouv.fr)
expect_eq "a second request supersedes the first (revoked)" "revoked pending" \
	"$(pg_psql "SELECT string_agg(state, ' ' ORDER BY id) FROM milterd.requests WHERE account = 'alice'")"
[ "$tok" != "$tok2" ] && ok "each request gets a fresh token" || not_ok "each request gets a fresh token"

expect_eq "verification_status() gives the latest request" "alice|alice@agri.gouv.fr|pending" \
	"$(pg_psql "SELECT account, email, state FROM milterd.verification_status('alice')")"
out=$("$C" status alice | awk '$1 == "state" {print $2}')
expect_eq "milterctl status shows the state" pending "$out"
# An account name with a newline cannot forge a line of the status.
"$C" request --account $'evil\nstate        verified' --email evil@agri.gouv.fr >/dev/null
out=$("$C" status $'evil\nstate        verified')
expect_eq "a control byte in a value is shown as \\xNN, on its own line still" \
	'account      evil\x0astate        verified|pending' \
	"$(grep '^account' <<<"$out")|$(awk '$1 == "state" {print $2}' <<<"$out")"
out=$("$C" --json status alice)
if [[ "$out" == '{"account":"alice","email":"alice@agri.gouv.fr","state":"pending",'* ]]; then
	ok "milterctl --json status"; else not_ok "milterctl --json status: $out"; fi
"$C" status nobody >/dev/null 2>"$WORK/err"; rc=$?
expect_eq "status of an unknown account: exit 1 with a message" "1/milterctl: no request for account nobody" \
	"$rc/$(cat "$WORK/err")"

# Expiry is applied at read time, without any sweeper.
"$C" request --account erin --email erin@agri.gouv.fr --ttl '1 second' >/dev/null
sleep 1.1
expect_eq "a request past its deadline reads as expired" expired \
	"$(pg_psql "SELECT state FROM milterd.verification_status('erin')")"

# NOTIFY milterd_verified with the account as payload, when a request turns verified.
out=$(psql -Atq <<'SQL' 2>&1
LISTEN milterd_verified;
UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account = 'alice' AND state = 'pending';
SELECT 1;
SQL
)
if grep -q 'notification "milterd_verified" with payload "alice"' <<<"$out"; then
	ok "NOTIFY milterd_verified carries the account"; else not_ok "NOTIFY milterd_verified: $out"; fi

"$C" request --account frank --email frank@agri.gouv.fr >/dev/null
expect_eq "list --state pending" "frank" "$("$C" --json list --state pending | grep -o '"account":"[a-z]*"' | cut -d'"' -f4 | tr '\n' ' ' | xargs)"
out=$("$C" revoke frank); rc=$?
expect_eq "revoke a pending request" "revoked frank/0" "$out/$rc"
"$C" revoke frank >/dev/null 2>&1; rc=$?
expect_eq "revoke with nothing pending: exit 1" 1 "$rc"

"$C" request --account x --email 'not an address' >/dev/null 2>"$WORK/err"; rc=$?
if [ "$rc" = 2 ] && grep -q "is not an email address" "$WORK/err"; then
	ok "bad email refused with a message"; else not_ok "bad email refused: rc=$rc $(cat "$WORK/err")"; fi
"$C" request --account x >/dev/null 2>&1; rc=$?
expect_eq "missing --email: usage error, exit 2" 2 "$rc"
"$C" request --account ' ' --email x@agri.gouv.fr >/dev/null 2>"$WORK/err"; rc=$?
expect_eq "an empty --account: usage error, exit 2, with a message" \
	"2/milterctl: --account must not be empty" "$rc/$(cat "$WORK/err")"
"$C" request --account xavier --email x@agri.gouv.fr --ttl banana >/dev/null 2>"$WORK/err"; rc=$?
if [ "$rc" = 2 ] && grep -q 'interval.*banana' "$WORK/err"; then
	ok "a --ttl that is not an interval: exit 2 with the database's message"
else not_ok "--ttl banana: rc=$rc $(cat "$WORK/err")"; fi
"$C" request --account xavier --email x@agri.gouv.fr --ttl '-1 day' >/dev/null 2>"$WORK/err"; rc=$?
if [ "$rc" = 2 ] && grep -q 'ttl must be positive' "$WORK/err"; then
	ok "a --ttl that is not positive: exit 2 with the database's message"
else not_ok "--ttl -1 day: rc=$rc $(cat "$WORK/err")"; fi
expect_eq "no request was made for them" 0 \
	"$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'xavier'")"

# A transaction left open on an account (its lock held) fails a command on that
# account after the role's lock_timeout, or else milterctl's own, 10 s, instead
# of hanging it.
psql -Atq -c "SELECT milterd.lock_account('yann'), pg_sleep(14)" >/dev/null 2>&1 &
holder=$!
for _ in $(seq 50); do
	[ "$(pg_psql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")" -gt 0 ] && break
	sleep 0.1
done
t0=$(date +%s%3N)
PGOPTIONS="-c lock_timeout=1s" "$C" revoke yann >/dev/null 2>"$WORK/err"; rc=$?
waited=$(( $(date +%s%3N) - t0 ))
if [ "$rc" = 3 ] && grep -q "lock timeout" "$WORK/err" && [ "$waited" -lt 3000 ]; then
	ok "a command on an account locked elsewhere, the role's lock_timeout 1 s: exit 3, 'lock timeout'"
else not_ok "role's lock_timeout: rc=$rc after $waited ms: $(cat "$WORK/err")"; fi
t0=$(date +%s%3N)
"$C" request --account yann --email yann@agri.gouv.fr >/dev/null 2>"$WORK/err"; rc=$?
waited=$(( $(date +%s%3N) - t0 ))
if [ "$rc" = 3 ] && grep -q "lock timeout" "$WORK/err" && [ "$waited" -ge 9500 ] &&
   [ "$waited" -lt 13000 ]; then
	ok "... without one, milterctl's own: exit 3 after 10 s ($waited ms)"
else not_ok "milterctl's lock_timeout: rc=$rc after $waited ms: $(cat "$WORK/err")"; fi
wait "$holder"
"$C" request --account yann --email yann@agri.gouv.fr >/dev/null; rc=$?
expect_eq "... and once the lock is released the request is made" "0/1" \
	"$rc/$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'yann'")"
"$C" --database "host=$WORK/nowhere dbname=x" status alice >/dev/null 2>"$WORK/err"; rc=$?
if [ "$rc" = 3 ] && grep -q "cannot connect to the database" "$WORK/err"; then
	ok "unreachable database: exit 3 with a message"; else not_ok "unreachable database: rc=$rc"; fi

# A database that accepts and never answers (a host gone silent behind a proxy):
# libpq's own default waits for ever. milterctl gives up after its 10 s, or after
# what the conninfo or PGCONNECT_TIMEOUT say.
mkdir -p "$WORK/silent"
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
held = []
while True:
    held.append(s.accept()[0])
' "$WORK/silent/.s.PGSQL.5432" &
silent=$!
wait_for 5 test -S "$WORK/silent/.s.PGSQL.5432"
# silent_status [ENV=VALUE] CONNINFO-TAIL: "rc|took|message", bounded by timeout(1) at 60 s.
silent_status() {
	local start rc
	start=$(date +%s)
	env "${@:1:$#-1}" timeout -k 5 60 "$C" --database "host=$WORK/silent dbname=x ${!#}" status alice \
		>/dev/null 2>"$WORK/err"; rc=$?
	echo "$rc|$(( $(date +%s) - start ))|$(grep -c 'cannot connect to the database: .*timeout expired' "$WORK/err")"
}
IFS='|' read -r rc took msg <<<"$(silent_status "")"
expect_eq "silent database: exit 3, 'timeout expired', after the 10 s default (not timeout(1)'s 60)" \
	"3|1|yes" "$rc|$msg|$([ "$took" -ge 9 ] && [ "$took" -lt 60 ] && echo yes || echo "no: ${took} s")"
IFS='|' read -r rc took msg <<<"$(silent_status "connect_timeout=2")"
expect_eq "... the conninfo's connect_timeout=2 wins" \
	"3|1|yes" "$rc|$msg|$([ "$took" -lt 9 ] && echo yes || echo "no: ${took} s")"
IFS='|' read -r rc took msg <<<"$(silent_status PGCONNECT_TIMEOUT=2 "")"
expect_eq "... and so does PGCONNECT_TIMEOUT=2" \
	"3|1|yes" "$rc|$msg|$([ "$took" -lt 9 ] && echo yes || echo "no: ${took} s")"
# The follower, whose connection has its own keys, gives up as well and tries again.
timeout -k 2 14 "$C" --database "host=$WORK/silent dbname=x" follow --exec /bin/true 2>"$WORK/ferr"
expect_eq "... milterctl follow too: 'timeout expired; again in 1 s' within 14 s" 1 \
	"$(grep -c 'follow: cannot connect to the database: .*timeout expired.*; again in 1 s' "$WORK/ferr")"
kill "$silent" 2>/dev/null; wait "$silent" 2>/dev/null

# decide(): two replies racing for one request. The first holds its transaction open
# after turning the request verified; the second reads it still pending, waits on the
# row in its UPDATE, then (006) reads it again: already_verified, never from_mismatch.
tok=$(new_token gina gina@agri.gouv.fr)
rid=$(pg_psql "SELECT id FROM milterd.requests WHERE account = 'gina'")
decide="SELECT milterd.decide($rid, '\\x$(printf %s "$tok" | sha256sum | cut -c1-64)',
	'gina@agri.gouv.fr', 'verified', 'eom', 0, '192.0.2.1', 'mx', NULL, NULL, NULL,
	'agri.gouv.fr', 's1', 'rsa-sha256', 2048, NULL, NULL, NULL, 'abcdef');"
psql -Atq >"$WORK/race1" 2>&1 <<SQL &
BEGIN;
$decide
\! touch "$WORK/race1.decided"; n=0; while [ ! -e "$WORK/race.go" ] && [ \$n -lt 300 ]; do sleep 0.05; n=\$((n+1)); done
COMMIT;
SQL
p1=$!
lock_waits() { [ "$(pg_psql "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")" = 1 ]; }
wait_for 10 test -e "$WORK/race1.decided"
psql -Atq -c "$decide" >"$WORK/race2" 2>&1 & p2=$!
if wait_for 10 lock_waits; then
	ok "decide(): the second reply waits on the request the first holds"
else
	not_ok "decide(): the second reply did not wait on the first: $(cat "$WORK/race2")"
fi
touch "$WORK/race.go"
wait $p1 $p2
expect_eq "decide() racing: one verified, the other already_verified" "verified already_verified" \
	"$(cat "$WORK/race1" "$WORK/race2" | xargs)"
expect_eq "decide() racing: the request verified once, two evidence rows naming it" \
	"verified 1 already_verified,verified" \
	"$(pg_psql "SELECT r.state, r.attempts, string_agg(e.reason, ',' ORDER BY e.reason)
		FROM milterd.requests r JOIN milterd.evidence e ON e.request_id = r.id
		WHERE r.id = $rid GROUP BY r.state, r.attempts" | tr '|' ' ')"
