# group.sh — the group commit (store.c): verifications of concurrent workers are
# written in one transaction, each row seeing what the rows before it wrote (two
# accounts replying from one address: one verified, the other address_in_use),
# and a group that fails (its statement cancelled) is written again row by row:
# every reply verified exactly once. record_group (009) writes a group of
# distinct addresses, requests and accounts with set statements: the same rows
# and writes as record() row by row.
#
# A group forms when verifications queue while another group is being written:
# here the first is held on its address's lock (a transaction of the test's
# holds the address's lock: hold_address) while the others arrive, until milterd's
# busy workers show them all waiting (each holds its worker), whatever the time
# that takes on a loaded machine; then the lock is released (release_address).
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap 'kill $(jobs -p) 2>/dev/null; milterd_stop' EXIT

db_reset || { not_ok "database reset"; exit 1; }
port=$(free_port)
write_config "$WORK/milterd.conf" "workers = 40" "db_timeout = 8" "db_commit_timeout = 10" \
	"stats_listen = 127.0.0.1:$port"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }

# sign ACCOUNT ADDRESS: a pending request and its signed reply in $WORK/ACCOUNT.eml;
# its envelope recipient in $WORK/ACCOUNT.rcpt.
sign() {
	local t
	t=$(new_token "$1" "$2") || return 1
	make_reply - "$2" "$t" --name "" --subject "Re: [$t]" --body yes |
		"$TOP/tests/lib/dkim-sign" --domain agri.gouv.fr --selector rsa2048 \
			--key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" >"$WORK/$1.eml"
	echo "<verify+$t@certify.test>" >"$WORK/$1.rcpt"
}
send() {	# send ACCOUNT: deliver its reply (background it)
	mt message.lua "file=$WORK/$1.eml" "rcpt=$(cat "$WORK/$1.rcpt")" expect=any qid="G$1" \
		>"$WORK/$1.out" 2>&1
}
# queue_behind FIRST ACCOUNT...: FIRST's verification, held on its address's lock
# (hold_address), then the others, which queue behind its group. Their miltertests' pids
# in QUEUED.
queue_behind() {
	local first="$1" a; shift
	sleep 0.3
	send "$first" &
	QUEUED=($!)
	if ! wait_for 5 milterd_lock_waits 1; then
		not_ok "$first's verification did not wait on its address's lock"; return 1
	fi
	for a in "$@"; do send "$a" & QUEUED+=($!); done
}
# queued N: wait (up to 60 s) until N verifications wait in milterd: the one held and
# those queued behind it each hold a worker (milterd_workers_busy).
queued() {
	local i busy
	for i in $(seq 1 600); do
		busy=$(metrics "$port" | sed -n 's/^milterd_workers_busy //p')
		[ "${busy:-0}" -ge "$1" ] && return 0
		sleep 0.1
	done
	echo "# only ${busy:-no} of $1 verifications waiting after 60 s" >&2
	return 1
}
# codes ACCOUNT...: each one's SMTP code and verified evidence rows, as " CODE/ROWS".
codes() {
	local a
	for a in "$@"; do printf ' %s/%s' "$(replied "$a")" "$(verified_rows "$a")"; done
}
group_waits() {	# a group's statement (record_group) of milterd's waits on a lock
	[ "$(psql -Atq -c "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE
		'milterd%' AND wait_event_type = 'Lock' AND query LIKE '%record_group%'")" = 1 ]
}
replied() {	# replied ACCOUNT: milterd's SMTP code for its reply
	grep -F "account=$1 " "$MILTERD_LOG" | grep -o 'reply=[0-9]*' | tail -n 1 | cut -d= -f2
}
verified_rows() {	# verified_rows ACCOUNT: its evidence rows 'verified'
	psql -Atq -c "SELECT count(*) FROM milterd.evidence e JOIN milterd.requests r
		ON r.id = e.request_id WHERE r.account = '$1' AND e.reason = 'verified'"
}

now_us() { echo $(( $(date +%s%N) / 1000 )); }

# ---- One group: eight accounts and two replying from one address.
for i in 1 2 3 4 5 6 7 8; do sign "p$i" "p$i@agri.gouv.fr" || not_ok "request p$i"; done
sign q1 shared@agri.gouv.fr && sign q2 shared@agri.gouv.fr || not_ok "requests q1, q2"
read -r c0 r0 g0 w0 _ wait0 <<<"$(group_metrics "$port")"
t_start=$(now_us)
hold_address p1@agri.gouv.fr &
holder=$!
t_held=$t_start
# Once queue_behind returns, p1's group is being written, waiting on the address's lock.
queue_behind p1 p2 p3 p4 p5 p6 p7 p8 q1 q2 && t_held=$(now_us) && queued 10
t_release=$(now_us)
release_address p1@agri.gouv.fr
wait "$holder" "${QUEUED[@]}"
t_end=$(now_us)
expect_eq "one group: each of 8 replies answered 250 and verified once (code/verified rows)" \
	" 250/1 250/1 250/1 250/1 250/1 250/1 250/1 250/1" "$(codes p1 p2 p3 p4 p5 p6 p7 p8)"
expect_eq "two accounts, one address, in one group: one 250 verified, the other 550 address_in_use" \
	"250 550 1 1" \
	"$(printf '%s\n' "$(replied q1)" "$(replied q2)" | sort | xargs) $(psql -Atq -c "SELECT
		count(*) FILTER (WHERE reason = 'verified'), count(*) FILTER (WHERE reason = 'address_in_use')
		FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
		WHERE r.account IN ('q1', 'q2')" | tr '|' ' ')"
# decided_at is the transaction's start: rows that share it were written together.
most=$(psql -Atq -c "SELECT max(n) FROM (SELECT count(*) n FROM milterd.evidence
	WHERE reason = 'verified' GROUP BY decided_at) x")
if [ "${most:-0}" -ge 5 ]; then
	ok "the verifications that queued were written in one transaction ($most rows together)"
else
	not_ok "no group: at most ${most:-0} verifications per transaction"
fi
# The metrics of the group commit against what the database and the clock say:
# a transaction per distinct decided_at of the verified rows (q2's address_in_use
# row was written in its group, refused by the guard, and its evidence then in
# a transaction of its own), all 10 rows written;
# p1's group was written from before t_held to after t_release, and p1 waited
# that long; groups are written one at a time, so gathering and writing fit in
# the scenario's time.
read -r c1 r1 g1 w1 _ wait1 <<<"$(group_metrics "$port")"
txns=$(psql -Atq -c "SELECT count(DISTINCT e.decided_at) FROM milterd.evidence e
	JOIN milterd.requests r ON r.id = e.request_id WHERE e.reason = 'verified' AND
	r.account IN ('p1','p2','p3','p4','p5','p6','p7','p8','q1','q2')")
expect_eq "milterd_group_commits_total and _rows_total count the transactions and rows written" \
	"$txns 10" "$((c1 - c0)) $((r1 - r0))"
held=$((t_release - t_held)) elapsed=$((t_end - t_start))
if [ "$((w1 - w0))" -ge "$held" ] && [ "$((wait1 - wait0))" -ge "$held" ] &&
	[ "$((g1 - g0 + w1 - w0))" -le "$elapsed" ]; then
	ok "milterd_group_seconds_total and _wait_seconds_total: the write held on the lock counted (write $((w1 - w0)) us, wait $((wait1 - wait0)) us, held $held us), within the $elapsed us elapsed"
else
	not_ok "group seconds: gather $((g1 - g0)) us, write $((w1 - w0)) us, wait $((wait1 - wait0)) us; held $held us, elapsed $elapsed us"
fi

# ---- A group that fails is written again row by row. r1 is held on its address's
# lock; r2..r6 queue, and r6's address is held too, so that the group r2..r6 waits
# on it; its statement is then cancelled (pg_cancel_backend: an error, as one row's
# could be; a lost connection is run once more on a new one, store_exec_on). Each
# row is written again on its own: r2..r5 verify at once, r6 once its address is free.
for i in 1 2 3 4 5 6; do sign "r$i" "r$i@agri.gouv.fr" || not_ok "request r$i"; done
hold_address r1@agri.gouv.fr &
h1=$!
hold_address r6@agri.gouv.fr &
h6=$!
if queue_behind r1 r2 r3 r4 r5 r6 && queued 6; then
	# r1 commits once released; then the group r2..r6 (one record_group
	# statement) waits on r6's address.
	release_address r1@agri.gouv.fr
	wait "$h1"
	if wait_for 10 group_waits; then
		psql -Atq -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE application_name LIKE 'milterd%' AND wait_event_type = 'Lock'
			  AND query LIKE '%record_group%'" >/dev/null
	else
		not_ok "the group r2..r6 did not wait on r6's address"
	fi
	sleep 1	# r2..r5 written again on their own meanwhile; r6 waits for its address
fi
release_address r1@agri.gouv.fr
release_address r6@agri.gouv.fr
wait "$h1" "$h6" "${QUEUED[@]}"
expect_grep "the lost group is logged, and written again row by row" \
	"database: a group of [2-5] verifications failed, each written again on its own" "$MILTERD_LOG"
expect_eq "after the lost group: each of 6 replies answered 250 and verified once (code/verified rows)" \
	" 250/1 250/1 250/1 250/1 250/1 250/1" "$(codes r1 r2 r3 r4 r5 r6)"

# ---- A row of a group races a revoke() (013): the revoke holds t2's request, the
# group t1, t2 (queued behind t0, held on its address's lock) waits on it, then the
# revoke commits. t2 gets the revoke's own answer, 550 unknown_token, as a reply
# written on its own would, not 451 "the request changed while deciding" (its
# group's statement had read it pending before the commit); t1 verifies.
for a in t0 t1 t2; do sign "$a" "$a@agri.gouv.fr" || not_ok "request $a"; done
coproc REVOKE { PGAPPNAME="revoke t2" psql -Atq >/dev/null 2>&1; }
echo "BEGIN; SELECT milterd.revoke('t2');" >&"${REVOKE[1]}"
revoking() {
	[ "$(psql -Atq -c "SELECT state FROM pg_stat_activity
		WHERE application_name = 'revoke t2'")" = "idle in transaction" ]
}
wait_for 10 revoking || not_ok "the revoke of t2 did not start"
hold_address t0@agri.gouv.fr &
holder=$!
if queue_behind t0 t1 t2 && queued 3; then
	release_address t0@agri.gouv.fr
	wait_for 10 group_waits || not_ok "the group t1, t2 did not wait on t2's request"
fi
echo "COMMIT;" >&"${REVOKE[1]}"
exec {REVOKE[1]}>&-
wait "$REVOKE_PID" "$holder" "${QUEUED[@]}"
expect_eq "a group's row racing a revoke(): 550 and unknown_token, the other 250 (codes, reasons)" \
	"250 550 t1:verified t2:unknown_token" \
	"$(replied t1) $(replied t2) $(psql -Atq -c "SELECT string_agg(r.account || ':' || e.reason,
		' ' ORDER BY r.account) FROM milterd.evidence e JOIN milterd.requests r
		ON r.id = e.request_id WHERE r.account IN ('t1', 't2')")"

# ---- More verifications queue than a group takes (STORE_GROUP_MAX, 32): s1 is held
# on its address's lock while s2..s36 queue; the first of them leads a group of 32, and
# the rest, still queued, are woken for the group after (a waiter is woken only for
# its own turn): every reply verified once, none left waiting.
S=$(seq -f 's%g' 1 36)
for a in $S; do sign "$a" "$a@agri.gouv.fr" || not_ok "request $a"; done
hold_address s1@agri.gouv.fr &
holder=$!
queue_behind $S && queued 36
release_address s1@agri.gouv.fr
wait "$holder" "${QUEUED[@]}"
expect_eq "36 queued at once: each answered 250 and verified once (code/verified rows)" \
	"$(for a in $S; do printf ' 250/1'; done)" "$(codes $S)"
expect_eq "the largest group took 32 of them, the rest came after (rows per transaction)" 32 \
	"$(psql -Atq -c "SELECT max(n) FROM (SELECT count(*) n FROM milterd.evidence e
		JOIN milterd.requests r ON r.id = e.request_id WHERE r.account ~ '^s[0-9]+$'
		AND e.reason = 'verified' GROUP BY e.decided_at) x")"
# A group's leader waits (3 ms at most) for the verifications still to come:
# messages whose RCPT found a pending request, counted until their decision is
# recorded or the message ends (milterd_replies_pending). The count must come
# back to 0 on every path, or every later leader would wait for nothing.
pending() { metrics "$port" | awk '$1 == "milterd_replies_pending" {print $2}'; }
expect_eq "no reply pending once the groups are written" 0 "$(pending)"
sign pw1 pw1@agri.gouv.fr && sign pw2 pw2@agri.gouv.fr
mt message.lua "file=$WORK/pw1.eml" "rcpt=$(cat "$WORK/pw1.rcpt")" expect=accept pause=3 \
	>"$WORK/pw1.out" 2>&1 &
held=$!
if wait_for 10 test "$(pending)" = 1; then
	ok "a message held after RCPT of a pending request is counted (milterd_replies_pending 1)"
else
	not_ok "a message held after RCPT: milterd_replies_pending $(pending)"
fi
rcpt_ok "$(cat "$WORK/pw2.rcpt")" continue	# RCPT, then the connection ends
expect_eq "a message that ends after RCPT leaves the count" 1 "$(pending)"
wait "$held"; rc=$?
if [ "$rc" = 0 ] && wait_for 5 test "$(pending)" = 0 &&
	[ "$(pg_psql "SELECT state FROM milterd.requests WHERE account = 'pw1'")" = verified ]; then
	ok "the held message verified; the count is 0 again"
else
	not_ok "held message: miltertest $rc, pending $(pending), state $(pg_psql "SELECT string_agg(state, ' ') FROM milterd.requests WHERE account = 'pw1'"): $(tr '\n' ' ' <"$WORK/pw1.out")"
fi
# A copy (already verified) and junk are not counted; nor is a refusal at RCPT.
mt message.lua "file=$WORK/pw1.eml" "rcpt=$(cat "$WORK/pw1.rcpt")" expect=accept pause=2 \
	>"$WORK/pw1b.out" 2>&1 &
held=$!
copies=$(grep -c "state=verified rcpt accepted" "$MILTERD_LOG")
wait_for 10 test "$(grep -c "state=verified rcpt accepted" "$MILTERD_LOG")" -gt "$copies"
expect_eq "a copy of a verified reply, held after RCPT, is not counted" 0 "$(pending)"
wait "$held"
send pw2
expect_eq "after every message, no reply is pending" 0 "$(pending)"
milterd_stop

# ---- record_group (009) writes a group whose addresses, requests and accounts are
# distinct with set statements, record() not called; its rows and writes must be
# those of record() called row by row. The same group, both ways, each rolled back:
# g1, g2 verify (g2 renewing g2's certification of an older address), g3 has a wrong
# hash, g4 has expired, g5's address certifies h5 already, g6 is past max_attempts.
psql -Atq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || not_ok "group rows inserted"
INSERT INTO milterd.requests (account, email, token_hash, expires_at, attempts)
SELECT 'g' || i, 'g' || i || '@agri.gouv.fr', sha256(('g' || i)::bytea),
       now() + CASE WHEN i = 4 THEN interval '-1 hour' ELSE interval '1 day' END,
       CASE WHEN i = 6 THEN 5 ELSE 0 END
  FROM generate_series(1, 6) i;
INSERT INTO milterd.requests (account, email, token_hash, expires_at, state, verified_at)
VALUES ('g2', 'old-g2@agri.gouv.fr', sha256('old-g2'::bytea), now(), 'verified', now()),
       ('h5', 'g5@agri.gouv.fr', sha256('h5'::bytea), now(), 'verified', now());
SQL
group_args="(SELECT array_agg(id::text ORDER BY email COLLATE \"C\") FROM milterd.requests
	WHERE account ~ '^g[1-6]$' AND state = 'pending'),
	(SELECT array_agg(CASE WHEN account = 'g3' THEN sha256('x'::bytea) ELSE token_hash END
		ORDER BY email COLLATE \"C\") FROM milterd.requests
	WHERE account ~ '^g[1-6]$' AND state = 'pending'),
	(SELECT array_agg(email ORDER BY email COLLATE \"C\") FROM milterd.requests
	WHERE account ~ '^g[1-6]$' AND state = 'pending'),
	array_fill('verified'::text, ARRAY[6]), array_fill('eom'::text, ARRAY[6]),
	array_fill('5'::text, ARRAY[6]), array_fill('1'::text, ARRAY[6]),
	array_fill('86400'::text, ARRAY[6]), array_fill('192.0.2.7'::text, ARRAY[6]),
	array_fill('mx.agri.gouv.fr'::text, ARRAY[6]), array_fill(NULL::text, ARRAY[6]),
	array_fill('<m@agri.gouv.fr>'::text, ARRAY[6]), array_fill('Q1'::text, ARRAY[6]),
	array_fill('agri.gouv.fr'::text, ARRAY[6]), array_fill('rsa2048'::text, ARRAY[6]),
	array_fill('rsa-sha256'::text, ARRAY[6]), array_fill('2048'::text, ARRAY[6]),
	array_fill('secure'::text, ARRAY[6]), array_fill('pass'::text, ARRAY[6]),
	array_fill(NULL::text, ARRAY[6]), array_fill('abc'::text, ARRAY[6])"
after="SELECT string_agg(account || ':' || state || ':' || attempts || ':' ||
	(valid_until IS NOT NULL) || ':' || (ended_at IS NOT NULL), ' ' ORDER BY account, email)
	FROM milterd.requests WHERE account ~ '^(g[1-6]|h5)$';
	SELECT string_agg(r.account || ':' || e.reason || ':' || e.dkim_key_bits || ':' ||
	e.client_addr, ' ' ORDER BY r.account) FROM milterd.evidence e
	JOIN milterd.requests r ON r.id = e.request_id WHERE r.account ~ '^g[1-6]$';"
record_fn="'milterd.record(bigint,bytea,text,text,text,integer,integer,integer,text,text,text,text,text,text,text,text,integer,text,text,text,text)'::regprocedure"
set_way=$(psql -Atq -v ON_ERROR_STOP=1 -c "SET track_functions = 'pl'" -c "BEGIN" \
	-c "SELECT string_agg(concat_ws(':', recorded, verified, state, attempts, holders), ' ')
		FROM milterd.record_group($group_args)" \
	-c "SELECT coalesce(pg_stat_get_xact_function_calls($record_fn), 0)" -c "$after" -c "ROLLBACK" 2>&1)
row_way=$(psql -Atq -v ON_ERROR_STOP=1 -c "SET track_functions = 'pl'" -c "BEGIN" \
	-c "SELECT string_agg(concat_ws(':', r.recorded, r.verified, r.state, r.attempts,
		r.holders), ' ' ORDER BY b.n) FROM unnest($group_args) WITH ORDINALITY AS b(id, hash,
		hfrom, reason, stage, ma, apa, vf, ca, helo, mf, mid, qid, dd, ds, da, bits, dnssec,
		spf, detail, tp, n) CROSS JOIN LATERAL milterd.record(b.id::bigint, b.hash, b.hfrom,
		b.reason, b.stage, b.ma::integer, b.apa::integer, b.vf::integer, b.ca, b.helo, b.mf,
		b.mid, b.qid, b.dd, b.ds, b.da, b.bits::integer, b.dnssec, b.spf, b.detail, b.tp) r" \
	-c "SELECT coalesce(pg_stat_get_xact_function_calls($record_fn), 0)" -c "$after" -c "ROLLBACK" 2>&1)
expect_eq "record_group, distinct rows: written by set statements (record() not called)" \
	0 "$(sed -n 2p <<<"$set_way")"
expect_eq "record_group, distinct rows: the rows record() returns row by row" \
	"t:t:verified:1:0 t:t:verified:1:0 f:f:0 f:f:expired:0:0 f:f:pending:0:1 f:f:pending:5:0" \
	"$(sed -n 1p <<<"$row_way")"
expect_eq "record_group, distinct rows: the same rows, requests and evidence as row by row" \
	"$(sed 2d <<<"$row_way")" "$(sed 2d <<<"$set_way")"
echo "  # row by row: $(sed 2d <<<"$row_way" | tr "\n" "|")"

