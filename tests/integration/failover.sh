# failover.sh — a 250 survives a failover: a real streaming standby (pg_basebackup -R,
# its own port and socket), milterd on the README's multi-host conninfo, senders
# delivering signed replies under load, the primary stopped (-m immediate) and the
# standby promoted. Two rounds, each with its own primary and standby (not the shared
# test server):
#   sync   synchronous_standby_names names the standby (the README's set-up). milterd
#          starts with both servers down (it says so, answers 451, verifies once they are
#          back). Then the bound: the standby stalled, a verifying decision answers 451 after
#          db_commit_timeout, and so does its retry until the standby is back; verifying
#          decisions waiting for the standby do not queue on NOTIFY's lock. Then the
#          failover: every reply answered 250 is verified on the promoted standby, once.
#   async  no synchronous standby: milterd warns at start; the standby's WAL receiver is
#          stopped to make it lag, and the 250s it never received are counted: the
#          documented risk, shown.
# In both, milterd verifies again within seconds of the promotion, without a restart.
set -u
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
export MILTERD_SQLDIR="$TOP/milterd/sql"
N=48		# replies per round, one per request
SENDERS=4	# delivering at once, each retrying a 4xx as an MTA would
COMMIT_TIMEOUT=3
trap 'milterd_stop; fo_stop_all' EXIT

# ---------------------------------------------------------------- clusters

# fo_sql DIR PORT SQL: a statement on the cluster whose socket is in DIR.
fo_sql() {
	local d="$1" p="$2"; shift 2
	psql -h "$d" -p "$p" -U postgres -d "${FO_DB:-milterd}" -v ON_ERROR_STOP=1 -Atqc "$*"
}
fo_ctl() { pg_as "$PG_BIN/pg_ctl" "$@"; }
FO_DATA=()
fo_stop_all() {
	local d
	for d in ${FO_DATA[@]+"${FO_DATA[@]}"}; do
		[ -f "$d/postmaster.pid" ] && fo_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1
	done
	return 0
}

# fo_start DIR PORT [postgres -c options...]: start the cluster in DIR/data, its socket
# in DIR (fsync=off as the shared test server: no machine crash here, only processes).
fo_start() {
	local d="$1" p="$2" o; shift 2
	o="-p $p -c listen_addresses='' -c unix_socket_directories='$d' -c fsync=off"
	o="$o -c wal_level=replica -c max_wal_senders=4 -c max_connections=60 $*"
	fo_ctl -D "$d/data" -l "$d/server.log" -w -t 30 -o "$o" start >/dev/null ||
		{ cat "$d/server.log" >&2; return 1; }
}

# fo_primary DIR PORT: initdb, start, the milterd schema and N requests; the tokens in
# R/tokens (line i: request i's token).
fo_primary() {
	local d="$1" p="$2" i
	mkdir -p "$d" && chown postgres: "$d"
	pg_as "$PG_BIN/initdb" -D "$d/data" -U postgres --auth=trust --no-sync -E UTF8 \
		--locale=C.UTF-8 >"$d/initdb.log" 2>&1 || { cat "$d/initdb.log" >&2; return 1; }
	FO_DATA+=("$d/data")
	fo_start "$d" "$p" || return 1
	FO_DB=postgres fo_sql "$d" "$p" "CREATE DATABASE milterd" || return 1
	export MILTERD_DATABASE="host=$d port=$p user=postgres dbname=milterd"
	"$BUILD/milterctl" db migrate >/dev/null || return 1
	for i in $(seq 1 "$N"); do
		new_token "agent$i" "agent$i@agri.gouv.fr" || return 1
	done >"$R/tokens"
}

# fo_standby DIR PORT FROM FROMPORT: a base backup of FROM with -R (standby.signal and
# primary_conninfo), started as standby1 (its application_name on the primary).
fo_standby() {
	local d="$1" p="$2"
	mkdir -p "$d" && chown postgres: "$d"
	pg_as "$PG_BIN/pg_basebackup" -h "$3" -p "$4" -U postgres -D "$d/data" -R -X stream \
		-c fast >"$d/basebackup.log" 2>&1 || { cat "$d/basebackup.log" >&2; return 1; }
	FO_DATA+=("$d/data")
	fo_start "$d" "$p" "-c cluster_name=standby1"
}

# The standby's WAL receiver stopped (primary_conninfo emptied) and started again.
fo_receiver_stop() {
	FO_CONNINFO=$(fo_sql "$S" "$SP" "SHOW primary_conninfo")
	fo_sql "$S" "$SP" "ALTER SYSTEM SET primary_conninfo = ''" &&
		fo_sql "$S" "$SP" "SELECT pg_reload_conf()" >/dev/null &&
		wait_for 10 fo_check "$S" "$SP" "SELECT count(*) FROM pg_stat_wal_receiver" 0 &&
		wait_for 10 fo_check "$P" "$PP" "SELECT count(*) FROM pg_stat_replication" 0
}
fo_receiver_start() {
	psql -h "$S" -p "$SP" -U postgres -d postgres -v ON_ERROR_STOP=1 -q -v ci="$FO_CONNINFO" \
		<<<"ALTER SYSTEM SET primary_conninfo = :'ci'; SELECT pg_reload_conf();" >/dev/null
}
# fo_check DIR PORT SQL EXPECTED: true when the statement gives EXPECTED.
fo_check() { [ "$(fo_sql "$1" "$2" "$3" 2>/dev/null)" = "$4" ]; }
fo_sync_state() {
	fo_check "$P" "$PP" "SELECT string_agg(sync_state, ',') FROM pg_stat_replication" "$1"
}

# ---------------------------------------------------------------- replies

# fo_sign DIR: reply i of agent i to its challenge, signed by agri.gouv.fr (dkimpy, one
# process for all: tests/bench/sign-corpus), in DIR/msg/i.
fo_sign() {
	local d="$1" i=0 tok
	while read -r tok; do
		i=$((i + 1))
		printf '%s\t%s\tagent%s@agri.gouv.fr\tagri.gouv.fr\trsa2048\trsa-sha256\t192.0.2.1\tmx.agri.gouv.fr\n' \
			"$i" "$tok" "$i"
	done <"$d/tokens" >"$d/jobs"
	/usr/bin/python3 "$TOP/tests/bench/sign-corpus" --keys "$DNS_KEYS" --out "$d/signed" \
		"$d/jobs" || return 1
	mkdir -p "$d/msg"
	for i in $(seq 1 "$N"); do
		tail -n +2 "$d/signed/r$(printf %06d "$i").eml" >"$d/msg/$i"	# no envelope line
	done
}

# fo_deliver I ATTEMPT: one transaction for reply I (queue id F ROUND n I ATTEMPT); prints what an MTA would make of it:
# 250, 4xx or 5xx (a refusal at RCPT: the code milterd logged under the queue id).
fo_deliver() {
	local i="$1" qid="F${ROUND}n${1}${2}" out
	out=$(timeout 30 miltertest -D "socket=$MILTERD_SOCK" -D "file=$R/msg/$i" -D "qid=$qid" \
		-D "rcpt=<verify+$(sed -n "${i}p" "$R/tokens")@certify.test>" \
		-D "mailfrom=<agent$i@agri.gouv.fr>" -D client_ip=192.0.2.1 -D expect=verdict \
		-s "$TOP/tests/integration/message.lua" 2>&1 |
		grep '^verdict ')
	case "$out" in
	"verdict accept" | "verdict discard") echo 250 ;;
	"verdict eom 4"* | "verdict tempfail") echo 4xx ;;
	"verdict eom 5"* | "verdict reject") echo 5xx ;;
	"verdict rcpt")
		if grep -F "$qid: " "$MILTERD_LOG" | grep -q ' reply=5'; then echo 5xx; else echo 4xx; fi ;;
	*) echo 4xx ;;	# milterd unreachable: milter_default_action = tempfail
	esac
}

# fo_sender K: replies K, K+SENDERS, ...; each until a final answer (250 or 5xx), a
# 4xx retried 0.3 s later, as an MTA retries (sooner); one line per final answer in
# R/answers: "I CODE TIME ATTEMPTS". Its last reply waits for the promotion, so that
# there is one to show milterd verifying again.
fo_sender() {
	local i a code
	for ((i = $1; i <= N; i += SENDERS)); do
		while [ "$i" -gt $((N - SENDERS)) ] && [ ! -e "$R/promoted" ] && [ "$SECONDS" -lt "$FO_STOP" ]; do
			sleep 0.1
		done
		for ((a = 1; ; a++)); do
			code=$(fo_deliver "$i" "a$a")
			[ "$code" = 4xx ] || break
			[ "$SECONDS" -ge "$FO_STOP" ] && { code=gaveup; break; }
			sleep 0.3
		done
		echo "$i $code $EPOCHREALTIME $a" >>"$R/answers"
		sleep 0.3
	done
}
fo_count() { grep -c " $1 " "$R/answers" 2>/dev/null || true; }
# fo_answered_at_least N [CODE]: N final answers (of CODE) so far.
fo_answered_at_least() {
	if [ -n "${2:-}" ]; then [ "$(fo_count "$2")" -ge "$1" ]; else [ "$(wc -l <"$R/answers")" -ge "$1" ]; fi
}

# ---------------------------------------------------------------- a round

# fo_round sync|async: primary and standby, milterd, load, failover, checks.
fo_round() {
	ROUND="$1" R="$WORK/fo-$1"
	P="$R/p1" S="$R/p2"
	PP=$(free_port) && SP=$(free_port) || { not_ok "$ROUND: free ports"; return 1; }
	if ! fo_primary "$P" "$PP" || ! fo_sign "$R" || ! fo_standby "$S" "$SP" "$P" "$PP"; then
		not_ok "$ROUND: primary, standby and signed replies"; return 1
	fi
	# Once the standby runs (the primary's commits would wait for it before), and after
	# the base backup, which then does not carry it to the standby: promoted, it would
	# wait for a standby of its own.
	if [ "$ROUND" = sync ] &&
		! { fo_sql "$P" "$PP" "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" &&
			fo_sql "$P" "$PP" "SELECT pg_reload_conf()" >/dev/null; }; then
		not_ok "sync: synchronous_standby_names set"; return 1
	fi
	local want=async
	[ "$ROUND" = sync ] && want=sync
	if ! wait_for 20 fo_sync_state "$want"; then
		not_ok "$ROUND: the standby streams ($want): $(fo_sql "$P" "$PP" "SELECT sync_state FROM pg_stat_replication")"
		return 1
	fi
	write_config "$WORK/milterd.conf" \
		"database = host=$P,$S port=$PP,$SP user=postgres dbname=milterd target_session_attrs=read-write" \
		"db_timeout = 2" "db_commit_timeout = $COMMIT_TIMEOUT" "log_level = info"
	if [ "$ROUND" = sync ]; then
		fo_down_at_start || return 1
	else
		milterd_start "$WORK/milterd.conf" || { not_ok "$ROUND: milterd starts"; return 1; }
	fi
	local pid=$MILTERD_PID
	wait_for 10 grep -q "database $P:$PP: " "$MILTERD_LOG"
	fo_start_check
	[ "$ROUND" = sync ] && fo_bound
	fo_failover
	fo_verdict "$pid"
	milterd_stop
	cp "$MILTERD_LOG" "$R/milterd.log"
	fo_stop_all
}

# milterd started with both servers down: it says so, answers 451, and verifies once
# they are back, without a restart; its replication check comes with its first
# connection.
fo_down_at_start() {
	local code a
	fo_ctl -D "$P/data" -m fast -w stop >/dev/null && fo_ctl -D "$S/data" -m fast -w stop >/dev/null
	milterd_start "$WORK/milterd.conf" || { not_ok "sync: milterd starts, the database down"; return 1; }
	wait_for 10 grep -q "database not usable at start" "$MILTERD_LOG"
	expect_grep "sync: milterd starts with the database down, and says so" \
		"database not usable at start: .*; verification replies get 451 until it is" "$MILTERD_LOG"
	code=$(fo_deliver 6 d0)
	if [ "$code" = 4xx ] && grep -F "F${ROUND}n6d0: " "$MILTERD_LOG" | grep -q "reply=451"; then
		ok "sync: ... and answers 451 meanwhile"
	else
		not_ok "sync: database down: want 451, got $code: $(grep -F "F${ROUND}n6d0: " "$MILTERD_LOG" | tail -n 1)"
	fi
	if ! fo_start "$P" "$PP" || ! fo_start "$S" "$SP" "-c cluster_name=standby1" ||
		! wait_for 20 fo_sync_state sync; then
		not_ok "sync: primary and standby back"; return 1
	fi
	# Retried as an MTA retries (sooner): after a failed connect, milterd waits a second
	# before the next.
	for a in 1 2 3 4 5 6 7 8 9 10; do
		code=$(fo_deliver 6 "d$a")
		[ "$code" = 4xx ] || break
		sleep 0.5
	done
	expect_eq "sync: database back: the same reply verifies (250, attempt $a once back), milterd not restarted" \
		"250 1" "$code $(grep -c 'milterd started on' "$MILTERD_LOG")"
}

# What milterd said at start (or at its first connection) about the replication it found.
fo_start_check() {
	local warn="database $P:$PP: 1 standby replicates asynchronously \\(synchronous_standby_names is empty\\): a verification answered 250 can be lost on failover"
	if [ "$ROUND" = async ]; then
		expect_grep "async: milterd warns at start that a 250 can be lost on failover" "$warn" \
			"$MILTERD_LOG"
	elif grep -q "replicate.* asynchronously" "$MILTERD_LOG"; then
		not_ok "sync: no asynchronous warning: $(grep asynchronously "$MILTERD_LOG")"
	else
		expect_grep "sync: milterd says, at its first connection, that 1 synchronous standby confirms each verification" \
			"database $P:$PP: 1 synchronous standby confirms each verification before its 250" \
			"$MILTERD_LOG"
	fi
}

# The standby stalled (its WAL receiver stopped): a verifying decision answers 451
# after db_commit_timeout; its retry too (the verification is committed on the primary
# but not on the standby: already_verified waits as verified does); decisions waiting
# for the standby wait side by side, not behind NOTIFY's lock; once the standby is back,
# the retry gets its 250. Replies 1-4; the load delivers them again (already_verified).
fo_bound() {
	local t0 t1 code waits i pids=()
	# Before: a verification with the standby streaming is heard by a listener.
	psql -h "$P" -p "$PP" -U postgres -d milterd -Atq -c "LISTEN milterd_verified" \
		-c "SELECT pg_sleep(2)" >"$R/listen" 2>&1 &
	local lp=$!
	sleep 0.3
	code=$(fo_deliver 5 b0)
	wait "$lp"
	expect_eq "sync: standby streaming: a verification answers 250 and NOTIFY milterd_verified carries it" \
		"250 1" "$code $(grep -c 'notification "milterd_verified" with payload "agent5"' "$R/listen")"
	if ! fo_receiver_stop; then
		not_ok "sync: the standby's WAL receiver stops"; return 1
	fi
	t0=$EPOCHREALTIME
	code=$(fo_deliver 1 b0)
	t1=$EPOCHREALTIME
	local took
	took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	if [ "$code" = 4xx ] && awk -v t="$took" -v c="$COMMIT_TIMEOUT" 'BEGIN { exit !(t >= c && t < c + 3) }' &&
		grep -F "F${ROUND}n1b0: " "$MILTERD_LOG" | grep -q "reply=451"; then
		ok "sync: standby stalled: the verifying decision answers 451 after ${took} s (db_commit_timeout = $COMMIT_TIMEOUT)"
	else
		not_ok "sync: standby stalled: want 451 after $COMMIT_TIMEOUT s, got $code after ${took} s: $(grep -F "F${ROUND}n1b0: " "$MILTERD_LOG" | tail -n 2 | tr '\n' ' ')"
	fi
	expect_grep "sync: the log says the standbys did not confirm it" \
		"F${ROUND}n1b0: database: durable: the standbys did not confirm the verification within $COMMIT_TIMEOUT s \\(db_commit_timeout\\): cancelled" \
		"$MILTERD_LOG"
	expect_eq "sync: the cancelled wait left the verification committed on the primary" verified \
		"$(fo_sql "$P" "$PP" "SELECT state FROM milterd.requests WHERE account = 'agent1'")"
	code=$(fo_deliver 1 b1)
	if [ "$code" = 4xx ] && grep -F "F${ROUND}n1b1: " "$MILTERD_LOG" | grep -q "durable: the standbys did not confirm"; then
		ok "sync: its retry, already verified on the primary only, waits for the standby too: 451"
	else
		not_ok "sync: retry while the standby stalls: $code, $(grep -F "F${ROUND}n1b1: " "$MILTERD_LOG" | tail -n 1)"
	fi
	# Three at once: each waits for the standby, none for another's NOTIFY lock. A
	# tenth of a second apart: milterd writes the verifications that reach it together
	# in one transaction (store.c, group commit); these come one by one, each while the
	# others' groups wait for the standby, so each is a group of its own, waiting beside
	# them.
	for i in 2 3 4; do
		fo_deliver "$i" b0 >"$R/concurrent.$i" &
		pids+=($!)
		sleep 0.1
	done
	sleep 1.3
	waits=$(fo_sql "$P" "$PP" "SELECT count(*) FILTER (WHERE wait_event = 'SyncRep') || ' ' ||
		count(*) FILTER (WHERE wait_event_type = 'Lock')
		FROM pg_stat_activity WHERE application_name LIKE 'milterd%'")
	wait "${pids[@]}"
	expect_eq "sync: 3 verifying decisions at once wait for the standby side by side (SyncRep), none on NOTIFY's lock" \
		"3 0" "$waits"
	expect_eq "sync: ... and each answers 451 at its bound" "4xx 4xx 4xx" \
		"$(cat "$R/concurrent.2" "$R/concurrent.3" "$R/concurrent.4" | xargs)"
	fo_receiver_start
	if ! wait_for 20 fo_sync_state sync; then
		not_ok "sync: the standby streams again"; return 1
	fi
	code=$(fo_deliver 1 b2)
	expect_eq "sync: standby back: the retry gets its 250 (already_verified)" "250 1" \
		"$code $(grep -F "F${ROUND}n1b2: " "$MILTERD_LOG" | grep -c 'reason=already_verified')"
}

# Load, the primary stopped (-m immediate) with some replies answered, the standby
# promoted 1 s later. async: the standby's receiver stopped first, and replies answered
# meanwhile.
fo_failover() {
	local first_after k pids=()
	: >"$R/answers"
	FO_STOP=$((SECONDS + 60))
	for k in $(seq 1 "$SENDERS"); do
		fo_sender "$k" &
		pids+=($!)
	done
	wait_for 30 fo_answered_at_least $((N / 3))
	CUT_BEGIN=0 CUT_ANSWERED=0
	if [ "$ROUND" = async ]; then
		CUT_BEGIN=$(fo_count 250)
		fo_receiver_stop || not_ok "async: the standby's WAL receiver stops"
		CUT_ANSWERED=$(fo_count 250)
		wait_for 20 fo_answered_at_least $((CUT_ANSWERED + 6)) 250
	fi
	fo_ctl -D "$P/data" -m immediate -w stop >/dev/null
	CRASH_AT=$EPOCHREALTIME
	CRASH_ANSWERED=$(fo_count 250)
	sleep 1
	fo_ctl -D "$S/data" -w -t 30 promote >/dev/null || not_ok "$ROUND: the standby is promoted"
	PROMOTED_AT=$EPOCHREALTIME
	touch "$R/promoted"
	wait "${pids[@]}"
	first_after=$(awk -v t="$PROMOTED_AT" '$2 == 250 && $3 > t { print $3 }' "$R/answers" | sort -n | head -n 1)
	RECOVERY=$(awk -v a="$PROMOTED_AT" -v b="${first_after:-0}" 'BEGIN { if (b == 0) print "never"; else printf "%.1f", b - a }')
}

# The promoted standby's word against the senders'.
fo_verdict() {
	local pid="$1" answered verified lost twice ev rows
	answered=$(awk '$2 == 250 { print $1 }' "$R/answers" | sort -n | uniq)
	rows=$(echo "$answered" | grep -c .)
	verified=$(fo_sql "$S" "$SP" "SELECT string_agg(substr(account, 6), ' ' ORDER BY substr(account, 6)::int)
		FROM milterd.requests WHERE state = 'verified'")
	lost=$(comm -23 <(echo "$answered" | sort) <(tr ' ' '\n' <<<"$verified" | sort) | grep -c .)
	twice=$(fo_sql "$S" "$SP" "SELECT count(*) FROM (SELECT request_id FROM milterd.evidence
		WHERE reason = 'verified' GROUP BY request_id HAVING count(*) > 1) t")
	ev=$(fo_sql "$S" "$SP" "SELECT count(*) FROM milterd.evidence WHERE reason = 'verified'")
	expect_eq "$ROUND: no reply refused (5xx), none left unanswered" "0 0" \
		"$(fo_count 5xx) $(fo_count gaveup)"
	if [ "$ROUND" = sync ]; then
		expect_eq "sync: all $N replies answered 250, $CRASH_ANSWERED before the primary stopped" \
			"$N" "$rows"
		expect_eq "sync: every reply answered 250 is verified on the promoted standby (lost: 0)" \
			0 "$lost"
		expect_eq "sync: exactly once: $N 'verified' evidence rows for $N requests, none twice" \
			"$N 0" "$ev $twice"
	else
		expect_eq "async: no request verified twice on the promoted standby" 0 "$twice"
		expect_eq "async: 'verified' evidence rows on the promoted standby = requests verified there" \
			"$(wc -w <<<"$verified")" "$ev"
		# Answered once the receiver had stopped: lost for certain; while it stopped: may be.
		if [ "$lost" -ge "$((CRASH_ANSWERED - CUT_ANSWERED))" ] && [ "$lost" -ge 1 ] &&
			[ "$lost" -le "$((CRASH_ANSWERED - CUT_BEGIN))" ]; then
			ok "async: $lost of $rows replies answered 250 are lost on the promoted standby (answered after its WAL receiver stopped: $((CRASH_ANSWERED - CUT_ANSWERED)), while it stopped: $((CUT_ANSWERED - CUT_BEGIN))); they stay pending, the MTA never resends a 250"
		else
			not_ok "async: lost $lost of $rows; answered after the receiver stopped: $((CRASH_ANSWERED - CUT_ANSWERED)), while it stopped: $((CUT_ANSWERED - CUT_BEGIN))"
		fi
	fi
	if [ "$RECOVERY" != never ] && awk -v r="$RECOVERY" 'BEGIN { exit !(r < 5) }'; then
		ok "$ROUND: milterd verifies again ${RECOVERY} s after the promotion"
	else
		not_ok "$ROUND: milterd verifies again within 5 s of the promotion: $RECOVERY"
	fi
	if kill -0 "$pid" 2>/dev/null && [ "$(grep -c 'milterd started on' "$MILTERD_LOG")" = 1 ]; then
		ok "$ROUND: ... without a restart"
	else
		not_ok "$ROUND: milterd restarted or died"
	fi
	echo "# $ROUND: $rows answered 250 ($CRASH_ANSWERED before the primary stopped), lost on the promoted standby: $lost, recovery after promotion: $RECOVERY s, 4xx retries: $(awk '{ n += $4 - 1 } END { print n + 0 }' "$R/answers")"
}

for round in sync async; do
	fo_round "$round"
done
