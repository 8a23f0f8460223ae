# follow.sh — milterctl follow: the backend's program run once per verification, lapse
# and address change, at once (LISTEN) and after catching up; retried with backoff while
# it fails, killed past --timeout; through a PostgreSQL restart; with two followers on
# one database, one action per event; its systemd units. Verifications come through
# milterd (replies signed by dkimpy, miltertest as the MTA) for the catch-up and the
# latency; elsewhere, where only the events matter, they are written in SQL as milterd's
# record() writes them (the same UPDATE, so the same trigger and NOTIFY), so that thirty
# arrive within a fraction of a second.
set -u
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
SIGN="$TOP/tests/lib/dkim-sign"
CTL="$BUILD/milterctl"
F="$WORK/follow"	# the program's records and controls
mkdir -p "$F"
declare -A FPID=()	# running followers by name

cleanup() {
	local n
	for n in "${!FPID[@]}"; do kill -9 "${FPID[$n]}" 2>/dev/null; wait "${FPID[$n]}" 2>/dev/null; done
	[ -f "$F/hang.pid" ] && kill -9 "$(cat "$F/hang.pid")" 2>/dev/null
	milterd_stop
}
trap cleanup EXIT

# The backend's program: one line per start in runs (start time, then its arguments and
# their count), one per success in done; controls, per account: fail.ACCOUNT (exit 1
# that many more times), hang.ACCOUNT (once: hang with a child, as a program that runs
# another would), slow.ACCOUNT (sleep that long, then succeed).
PROG="$WORK/prog"
cat >"$PROG" <<'SH'
#!/bin/bash
set -u
t=$EPOCHREALTIME d=$FOLLOW_DIR
printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$1" "$2" "${3-}" "$#" >>"$d/runs"
grep '^SigIgn:' /proc/self/status | cut -f2 >"$d/sigign"
# gate.ACCOUNT: wait (up to 10 s) for the test to take it away before going on.
for i in $(seq 1 100); do [ -f "$d/gate.$2" ] || break; sleep 0.1; done
if [ -f "$d/fail.$2" ] && [ "$(cat "$d/fail.$2")" -gt 0 ]; then
	echo $(( $(cat "$d/fail.$2") - 1 )) >"$d/fail.$2"
	exit 1
fi
if [ -f "$d/hang.$2" ]; then
	rm -f "$d/hang.$2"
	sleep 60 &
	echo $! >"$d/hang.pid"
	wait
fi
[ -f "$d/slow.$2" ] && sleep "$(cat "$d/slow.$2")"
printf '%s\t%s\t%s\n' "$EPOCHREALTIME" "$1" "$2" >>"$d/done"
exit 0
SH
chmod +x "$PROG"
export FOLLOW_DIR="$F"
: >"$F/runs"
: >"$F/done"

db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }

# verify ACCOUNT EMAIL: a request, the agent's signed reply through milterd, a 250.
verify() {
	local tok msg="$WORK/reply.$1"
	tok=$(new_token "$1" "$2") || return 1
	make_reply "$msg" "$2" "$tok" --subject "Re: Verification of your account [$tok]" --body "Confirmed."
	"$SIGN" --domain agri.gouv.fr --selector rsa2048 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
		<"$msg" >"$msg.s" || return 1
	mt message.lua "file=$msg.s" "rcpt=<verify+$tok@certify.test>" expect=accept >"$WORK/mt.out" 2>&1
}

# sql_verify ACCOUNT...: requests verified as milterd's record() verifies them, each in
# its own transaction (its own NOTIFY), back to back on one connection.
sql_verify() {
	local a sql=""
	for a in "$@"; do
		sql="$sql SELECT milterd.request_verification('$a', '$a@agri.gouv.fr');
		UPDATE milterd.requests SET state = 'verified', verified_at = now()
		 WHERE account = '$a' AND state = 'pending';"
	done
	psql -v ON_ERROR_STOP=1 -qAt -c "$sql" >/dev/null
}

# follower NAME [follow options...]: a follower in the background, its log in $WORK/NAME.log.
follower() {
	local name="$1"; shift
	: >"$WORK/$name.log"
	"$CTL" follow --exec "$PROG" "$@" >>"$WORK/$name.log" 2>&1 &
	FPID[$name]=$!
}
stop_follower() {	# NAME [SIGNAL]
	kill -"${2:-TERM}" "${FPID[$1]}" 2>/dev/null
	wait "${FPID[$1]}" 2>/dev/null
	unset "FPID[$1]"
}

# wait_eq SECONDS EXPECTED COMMAND...: poll until the command prints EXPECTED.
wait_eq() {
	local t=$(( $1 * 10 )) want="$2"; shift 2
	while [ "$t" -gt 0 ]; do
		[ "$("$@" 2>/dev/null)" = "$want" ] && return 0
		sleep 0.1
		t=$((t - 1))
	done
	return 1
}
pending() { pg_psql "SELECT count(*) FROM milterd.events"; }
pending_of() { pg_psql "SELECT count(*) FROM milterd.events WHERE account = '$1'"; }
runs_of() { awk -F'\t' -v a="$1" '$3 == a' "$F/runs" | wc -l; }
# The arguments of every start for ACCOUNT, in order: EVENT ACCOUNT EMAIL ARGC.
calls_of() { awk -F'\t' -v a="$1" '$3 == a { print $2, $3, $4, $5 }' "$F/runs"; }
actives() { grep -c "follow: active" "$WORK/$1.log"; }
# end_active_session: the session holding the follower lock ends (a failover,
# pg_terminate_backend), its follower's program maybe under way.
end_active_session() {
	pg_psql "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND objid = (hashtext('milterd.follow')::bigint & 4294967295)::oid" >/dev/null
}

# ---------------------------------------------------------------- catch-up
# While no follower runs: alice verified; bob verified then lapsed; carol verified then
# her address changed; an account whose name a shell would split and expand, verified.
odd='o'\''neil; touch '"$WORK"'/pwned $(id) *'
ok_all=1
for a in alice bob carol; do
	verify "$a" "$a@agri.gouv.fr" || { ok_all=0; not_ok "catch-up: $a verified through milterd: $(tr '\n' ' ' <"$WORK/mt.out")"; }
done
[ "$ok_all" = 1 ] && ok "catch-up: three replies verified through milterd while no follower runs"
pg_psql "SELECT milterd.request_verification(\$\$$odd\$\$, 'oneil@agri.gouv.fr')" >/dev/null
pg_psql "UPDATE milterd.requests SET state = 'verified', verified_at = now()
	WHERE account = \$\$$odd\$\$" >/dev/null
pg_psql "UPDATE milterd.requests SET valid_until = now() - interval '1 second'
	WHERE account = 'bob' AND state = 'verified'" >/dev/null
expect_eq "catch-up: milterd.lapse() ends bob's certification" 1 "$(pg_psql "SELECT milterd.lapse()")"
"$CTL" address --account carol --email carol.new@agri.gouv.fr >"$WORK/address.out" 2>&1
expect_eq "catch-up: milterctl address ends carol's certification" "carol: certification ended" \
	"$(cat "$WORK/address.out")"
expect_eq "catch-up: six events wait" 6 "$(pending)"

follower main
if wait_eq 10 0 pending; then
	ok "catch-up: the follower acknowledged every event"
else
	not_ok "catch-up: $(pending) events left: $(tail -n 3 "$WORK/main.log" | tr '\n' ' ')"
fi
expect_eq "catch-up: each event run once, in order per account, as PROGRAM EVENT ACCOUNT EMAIL" \
	"verified alice alice@agri.gouv.fr 3|verified bob bob@agri.gouv.fr 3|lapsed bob bob@agri.gouv.fr 3|verified carol carol@agri.gouv.fr 3|address_changed carol carol@agri.gouv.fr 3" \
	"$(for a in alice bob carol; do calls_of "$a"; done | paste -sd '|')"
expect_eq "catch-up: an account name with quotes, spaces, \$( ) and * is one argument, verbatim (no shell)" \
	"verified|$odd|oneil@agri.gouv.fr|3|" \
	"$(awk -F'\t' -v a="$odd" '$3 == a { printf "%s|%s|%s|%s|", $2, $3, $4, $5 }' "$F/runs")$(ls "$WORK/pwned" 2>/dev/null)"
expect_eq "catch-up: six successful runs, six events acknowledged, none left" "6|6|0" \
	"$(wc -l <"$F/done")|$(pg_psql "SELECT count(*) FILTER (WHERE acknowledged_at IS NOT NULL)
	  + count(*) FILTER (WHERE end_acknowledged_at IS NOT NULL) FROM milterd.requests")|$(pending)"
# SIGPIPE is ignored in milterctl (a sendmail that exits early); a program must not inherit that.
ign=$(cat "$F/sigign" 2>/dev/null)
if [ -n "$ign" ] && [ $(( 0x$ign & (1 << 12) )) = 0 ]; then
	ok "PROGRAM starts with SIGPIPE at its default (SigIgn $ign)"
else
	not_ok "PROGRAM starts with SIGPIPE ignored (SigIgn ${ign:-?})"
fi

# ------------------------------------------------------------------ at once
# Five replies through milterd, one after the other: from the request's verified_at
# (written just before milterd's 250) to the program's start.
worst=0 all=""
for i in 1 2 3 4 5; do
	verify "dave$i" "dave$i@agri.gouv.fr" || { not_ok "at once: dave$i verified: $(tr '\n' ' ' <"$WORK/mt.out")"; continue; }
	wait_eq 5 1 runs_of "dave$i"
	lat=$(awk -F'\t' -v a="dave$i" -v v="$(pg_psql "SELECT extract(epoch FROM verified_at)
		FROM milterd.requests WHERE account = 'dave$i'")" '$3 == a { printf "%.3f", $1 - v; exit }' "$F/runs")
	all="$all ${lat:-none}"
	[ -z "$lat" ] && worst=99 && continue
	awk -v l="$lat" -v w="$worst" 'BEGIN { exit !(l > w) }' && worst=$lat
done
if awk -v w="$worst" 'BEGIN { exit !(w < 3) }'; then
	ok "at once: PROGRAM started within 3 s of each verification (s:$all)"
else
	not_ok "at once: verification to PROGRAM start (s):$all"
fi

# ------------------------------------------------------------ failing PROGRAM
# erin's program fails three times: retried after 1, 2, 4 s, acknowledged only after the
# fourth run; her next event (an address change) waits for it; frank is not held up.
echo 3 >"$F/fail.erin"
sql_verify erin
"$CTL" address --account erin --email erin.new@agri.gouv.fr >/dev/null
sql_verify frank
# PROGRAM records its start before it ends and is acknowledged: wait for the latter.
acked_of() { pg_psql "SELECT count(*) FROM milterd.requests WHERE account = '$1'
	AND acknowledged_at IS NOT NULL"; }
wait_eq 5 1 acked_of frank
expect_eq "failing PROGRAM: another account's event runs meanwhile, once" "1|1" \
	"$(runs_of frank)|$(acked_of frank)"
expect_eq "failing PROGRAM: not acknowledged while it fails" "0" \
	"$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'erin' AND acknowledged_at IS NOT NULL")"
if wait_eq 15 0 pending_of erin; then
	ok "failing PROGRAM: retried until it succeeded, then acknowledged"
else
	not_ok "failing PROGRAM: erin still pending after 15 s: $(calls_of erin | paste -sd '|')"
fi
expect_eq "failing PROGRAM: four runs of the verification, then the address change once" \
	"verified verified verified verified address_changed" \
	"$(calls_of erin | cut -d' ' -f1 | paste -sd ' ')"
gaps=$(awk -F'\t' '$3 == "erin" && $2 == "verified" { if (n++) printf "%.2f ", $1 - p; p = $1 }' "$F/runs")
# Backoff 1, 2, 4 s: each wait at least about its delay and longer than the one before.
if echo "$gaps" | awk '{ exit !(NF == 3 && $1 >= 0.9 && $2 >= 1.9 && $3 >= 3.9 && $3 < 8) }'; then
	ok "failing PROGRAM: retried with backoff (waits $gaps s)"
else
	not_ok "failing PROGRAM: waits between retries $gaps s, wanted about 1 2 4"
fi
first_frank=$(awk -F'\t' '$3 == "frank" { print $1; exit }' "$F/runs")
erin_ok=$(awk -F'\t' '$3 == "erin" && $2 == "verified" { t = $1 } END { print t }' "$F/runs")
if awk -v a="$first_frank" -v b="$erin_ok" 'BEGIN { exit !(a < b) }'; then
	ok "failing PROGRAM: frank ran before erin's retries ended"
else
	not_ok "failing PROGRAM: frank ran at $first_frank, after erin's success at $erin_ok"
fi

# nora's program fails; while she waits for her retry, her event is acknowledged by
# someone else: no retry, and no pass after pass without pause once it is due. Her
# program is held (gate) until the acknowledgement is in, so that it always lands
# before the retry's 1 s, however slow psql is on a loaded machine.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
echo 100 >"$F/fail.nora"
: >"$F/gate.nora"
sql_verify nora
wait_eq 5 1 runs_of nora
pg_psql "SELECT milterd.ack_event(id, 'verified') FROM milterd.requests WHERE account = 'nora'" >/dev/null
rm -f "$F/gate.nora"
sleep 1.5
c0=$(ticks "${FPID[main]}")
sleep 2
c1=$(ticks "${FPID[main]}")
if [ "$(runs_of nora)" = 1 ] && [ $(( c1 - c0 )) -le 5 ]; then
	ok "event acknowledged elsewhere during its backoff: not run again, the follower idle ($(( c1 - c0 )) ticks in 2 s)"
else
	not_ok "event acknowledged elsewhere during its backoff: $(runs_of nora) runs, $(( c1 - c0 )) CPU ticks in 2 s"
fi

# ------------------------------------------------------------------- --jobs
# Up to --jobs programs at once (default 4), one per account. paul's program takes 6 s;
# quinn's verification, coming while it runs, is run and acknowledged at once, not after
# it; paul's is acknowledged when it ends.
echo 6 >"$F/slow.paul"
sql_verify paul
wait_eq 5 1 runs_of paul
sql_verify quinn
# Acknowledged before paul's: the times the database recorded, whenever the test looks.
acked_first() { pg_psql "SELECT q.acknowledged_at < coalesce(p.acknowledged_at, 'infinity')
	FROM milterd.requests q, milterd.requests p WHERE q.account = '$1' AND p.account = '$2'
	AND q.acknowledged_at IS NOT NULL"; }
if wait_eq 10 t acked_first quinn paul; then
	ok "--jobs: an event that comes while a slow program runs for another account is acknowledged before it ends"
else
	not_ok "--jobs: quinn $(pending_of quinn) pending, paul $(pending_of paul), 10 s after quinn's verification"
fi
if wait_eq 10 0 pending_of paul && [ "$(runs_of paul)|$(runs_of quinn)" = "1|1" ]; then
	ok "--jobs: the slow program's event acknowledged when it ended, each run once"
else
	not_ok "--jobs: paul $(pending_of paul) pending, $(runs_of paul) runs; quinn $(runs_of quinn) runs"
fi
rm -f "$F/slow.paul"

# --jobs 2: rose's three events (verified, address_changed, verified again), 1 s each, run
# one after the other, each after the one before it ended, while sid's runs beside them.
stop_follower main
echo 1 >"$F/slow.rose"
echo 1 >"$F/slow.sid"
sql_verify rose
"$CTL" address --account rose --email rose.new@agri.gouv.fr >/dev/null
pg_psql "SELECT milterd.request_verification('rose', 'rose.new@agri.gouv.fr');
	UPDATE milterd.requests SET state = 'verified', verified_at = now()
	WHERE account = 'rose' AND state = 'pending'" >/dev/null
sql_verify sid
follower jobs --jobs 2
wait_eq 10 0 pending
# Every start and end of rose's and sid's runs, in time order: "start rose", "done rose"...
span() { { awk -F'\t' '$3 == "rose" || $3 == "sid" { print $1, "start", $3 }' "$F/runs"
	awk -F'\t' '$3 == "rose" || $3 == "sid" { print $1, "done", $3 }' "$F/done"; } | sort -n | cut -d' ' -f2-; }
expect_eq "--jobs 2: rose's events in order, each started after the one before it ended" \
	"verified address_changed verified|start done start done start done" \
	"$(calls_of rose | cut -d' ' -f1 | xargs)|$(span | awk '$2 == "rose" { print $1 }' | xargs)"
expect_eq "--jobs 2: sid's event started beside rose's first, before either ended" "start rose|start sid" \
	"$(span | head -n 2 | sort | paste -sd '|')"
stop_follower jobs
rm -f "$F/slow.rose" "$F/slow.sid"

# --jobs 1: one program at a time, as before --jobs: uma's event waits for tom's run, and
# starts as soon as it is acknowledged: its notification, read with the acknowledgement,
# is not left waiting.
follower jobs --jobs 1
wait_eq 5 1 actives jobs
echo 2 >"$F/slow.tom"
sql_verify tom
wait_eq 5 1 runs_of tom
sql_verify uma
wait_eq 10 0 pending
tom_done=$(awk -F'\t' '$3 == "tom" { print $1 }' "$F/done")
uma_start=$(awk -F'\t' '$3 == "uma" { print $1 }' "$F/runs")
if [ -n "$tom_done" ] && [ -n "$uma_start" ] && awk -v d="$tom_done" -v s="$uma_start" 'BEGIN { exit !(s >= d && s - d < 0.5) }'; then
	ok "--jobs 1: another account's event waits for the program under way, starts when it ends ($(awk -v d="$tom_done" -v s="$uma_start" 'BEGIN { printf "%.3f", s - d }') s after)"
else
	not_ok "--jobs 1: tom done at ${tom_done:-never}, uma started at ${uma_start:-never}"
fi
stop_follower jobs
rm -f "$F/slow.tom"

# ------------------------------------------------------------ PROGRAM hangs
# With --timeout 2, a program that hangs (and its child) is killed, then run again.
follower main --timeout 2
wait_eq 5 1 actives main
touch "$F/hang.gina"
sql_verify gina
if wait_eq 12 0 pending_of gina; then
	ok "hanging PROGRAM: killed past --timeout, run again, acknowledged"
else
	not_ok "hanging PROGRAM: gina still pending: $(tail -n 3 "$WORK/main.log" | tr '\n' ' ')"
fi
g=$(awk -F'\t' '$3 == "gina" { if (n++) printf "%.1f", $1 - p; p = $1 }' "$F/runs")
if [ "$(runs_of gina)" = 2 ] && awk -v g="$g" 'BEGIN { exit !(g >= 2 && g < 6) }' &&
	grep -q "still running after 2 s" "$WORK/main.log"; then
	ok "hanging PROGRAM: stopped after 2 s, retried ($g s between the starts)"
else
	not_ok "hanging PROGRAM: $(runs_of gina) runs, $g s apart: $(grep gina "$WORK/main.log" | tr '\n' ' ')"
fi
# Killed: gone, or a zombie until PID 1 (a container's may be slow) reaps it. Its stat is
# read once: tested, then read, it could vanish in between, the reaping read as alive.
alive() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] || return 1
	st=${st##*') '}
	[ "${st%% *}" != Z ]
}
dead() { ! alive "$1"; }
# Up to 5 s for a SIGKILL not yet acted on (a busy machine); it would live 60 s.
if [ -f "$F/hang.pid" ] && wait_for 5 dead "$(cat "$F/hang.pid")"; then
	ok "hanging PROGRAM: the child it started was killed with it"
else
	not_ok "hanging PROGRAM: its child $(cat "$F/hang.pid" 2>/dev/null) outlived it"
fi

# SIGTERM while a program runs: the program finishes and is acknowledged, then it stops.
echo 1 >"$F/slow.hank"
sql_verify hank
wait_eq 5 1 runs_of hank
kill -TERM "${FPID[main]}"
t0=$EPOCHREALTIME
wait "${FPID[main]}"; rc=$?
unset "FPID[main]"
expect_eq "SIGTERM during a run: exit 0 once the program finished, its event acknowledged" "0|1|0" \
	"$rc|$(awk -F'\t' '$3 == "hank"' "$F/done" | wc -l)|$(pending_of hank)"

# SIGHUP (a closed terminal, systemctl reload by mistake) is SIGTERM's: not a silent death.
follower hup
wait_eq 5 1 actives hup
echo 1 >"$F/slow.hugo"
sql_verify hugo
wait_eq 5 1 runs_of hugo
kill -HUP "${FPID[hup]}"
wait "${FPID[hup]}"; rc=$?
unset "FPID[hup]"
expect_eq "SIGHUP during a run: exit 0 once the program finished, its event acknowledged" "0|1|0" \
	"$rc|$(awk -F'\t' '$3 == "hugo"' "$F/done" | wc -l)|$(pending_of hugo)"

# ---------------------------------------------------------- PostgreSQL restart
# The follower runs; PostgreSQL stops and starts again; events made at once after the
# start (before the follower is back: it waits 1 s or more before reconnecting) and a
# moment later are each run once.
follower main
wait_eq 5 1 actives main
t0=$EPOCHREALTIME
pg_stop
pg_start "$PG_TOPWORK" || not_ok "PostgreSQL starts again"
sql_verify ivan
pg_psql "UPDATE milterd.requests SET valid_until = now() WHERE account = 'alice' AND state = 'verified'" >/dev/null
pg_psql "SELECT milterd.lapse()" >/dev/null
wait_eq 20 2 actives main
sleep 0.5
sql_verify judy
if wait_eq 10 0 pending; then
	ok "PostgreSQL restarted: the follower reconnected and caught up"
else
	not_ok "PostgreSQL restarted: $(pending) events left: $(tail -n 4 "$WORK/main.log" | tr '\n' ' ')"
fi
expect_eq "PostgreSQL restarted: every event run once, none missed" \
	"lapsed alice|verified ivan|verified judy" \
	"$(awk -F'\t' '$1 > '"$t0"' { print $2, $3 }' "$F/runs" | sort | paste -sd '|')"
kill -0 "${FPID[main]}" 2>/dev/null && ok "PostgreSQL restarted: the follower kept running" ||
	not_ok "PostgreSQL restarted: the follower exited: $(tail -n 3 "$WORK/main.log" | tr '\n' ' ')"
stop_follower main

# ------------------------------------------------------------- two followers
follower one
wait_eq 5 1 actives one
follower two
wait_for 5 grep -q "standing by" "$WORK/two.log" &&
	ok "two followers: the second stands by" || not_ok "two followers: $(cat "$WORK/two.log" | tr '\n' ' ')"
accts=(); for i in $(seq 1 30); do accts+=("many$i"); done
sql_verify "${accts[@]}"
wait_eq 20 0 pending
expect_eq "two followers: 30 verifications, each run exactly once, all acknowledged" "30|30|0" \
	"$(awk -F'\t' '$3 ~ /^many/' "$F/runs" | wc -l)|$(awk -F'\t' '$3 ~ /^many/ { print $3 }' "$F/runs" | sort -u | wc -l)|$(pending)"
stop_follower one KILL
accts=(); for i in $(seq 1 5); do accts+=("more$i"); done
sql_verify "${accts[@]}"
if wait_eq 10 0 pending && [ "$(actives two)" = 1 ]; then
	ok "two followers: the active one killed (SIGKILL), the standby took over"
else
	not_ok "two followers: after SIGKILL, $(pending) events left: $(tail -n 3 "$WORK/two.log" | tr '\n' ' ')"
fi
expect_eq "two followers: the standby ran each new event once" "5|5" \
	"$(awk -F'\t' '$3 ~ /^more/' "$F/runs" | wc -l)|$(awk -F'\t' '$3 ~ /^more/ { print $3 }' "$F/runs" | sort -u | wc -l)"

# ------------------------------------------------------------ --once, usage
"$CTL" follow --exec "$PROG" --once >"$WORK/once.out" 2>&1; rc=$?
expect_eq "--once while another follower is active: runs nothing, says nothing (cron mails any output), exit 0" \
	"0|" "$rc|$(cat "$WORK/once.out")"
stop_follower two
"$CTL" follow --exec "$PROG" --once >"$WORK/once.out" 2>&1; rc=$?
expect_eq "--once with nothing pending: exit 0" 0 "$rc"
echo 1 >"$F/fail.kim"
sql_verify kim lucy
n0=$(wc -l <"$F/runs")
"$CTL" follow --exec "$PROG" --once >"$WORK/once.out" 2>&1; rc=$?
expect_eq "--once, kim's program fails: exit 1, lucy acknowledged, kim pending, each run once" \
	"1|kim|2" "$rc|$(pg_psql "SELECT string_agg(account, ',') FROM milterd.events")|$(( $(wc -l <"$F/runs") - n0 ))"
write_config "$WORK/follow.conf" "follow_exec = $PROG"
"$CTL" -c "$WORK/follow.conf" follow --once >"$WORK/once.out" 2>&1; rc=$?
expect_eq "--once with follow_exec from the configuration: exit 0, kim acknowledged" "0|0" "$rc|$(pending)"

"$CTL" --database "host=$WORK/nowhere dbname=milterd" follow --exec "$PROG" --once >"$WORK/once.out" 2>&1; rc=$?
expect_eq "--once with the database unreachable: exit 3" 3 "$rc"

chmod -x "$PROG"
"$CTL" follow --exec "$PROG" --once >"$WORK/usage.out" 2>&1; rc=$?
chmod +x "$PROG"
expect_eq "--exec of a file that is not executable: usage error (exit 2)" 2 "$rc"
expect_grep "--exec of a file that is not executable: says why" "not an executable file: Permission denied" "$WORK/usage.out"
"$CTL" follow --exec "$WORK" --once >"$WORK/usage.out" 2>&1; rc=$?
expect_eq "--exec of a directory: usage error (exit 2), says why" "2|1" \
	"$rc|$(grep -c "not an executable file: Is a directory" "$WORK/usage.out")"
"$CTL" -c "$WORK/milterd.conf" follow --once >"$WORK/usage.out" 2>&1; rc=$?
expect_eq "no --exec and no follow_exec: usage error (exit 2)" 2 "$rc"
expect_grep "no --exec and no follow_exec: says what is needed" "follow needs --exec PROGRAM" "$WORK/usage.out"
"$CTL" follow --exec "$PROG" --timeout 0 >"$WORK/usage.out" 2>&1; rc=$?
expect_eq "--timeout 0: usage error (exit 2)" 2 "$rc"
out=""
for j in 0 65 abc; do
	"$CTL" follow --exec "$PROG" --jobs "$j" >"$WORK/usage.out" 2>&1; rc=$?
	out="$out$rc $(cat "$WORK/usage.out")|"
done
expect_eq "--jobs 0, 65, abc: usage error (exit 2), says what it takes" \
	"2 milterctl: follow --jobs 0: not a whole number from 1 to 64|2 milterctl: follow --jobs 65: not a whole number from 1 to 64|2 milterctl: follow --jobs abc: not a whole number from 1 to 64|" \
	"$out"
# Numbers are whole numbers, and nothing is left over: usage errors, not a guess or SQL's.
rcs=""
for cmd in "follow --exec $PROG --timeout 5x" "db prune --batch 5x" "db prune --batch 10.5" \
	"list extra" "db migrate extra"; do
	$CTL $cmd >/dev/null 2>&1; rcs="$rcs $?"
done
expect_eq "--timeout 5x, --batch 5x or 10.5, list and db migrate with an extra word: exit 2 each" \
	" 2 2 2 2 2" "$rcs"

# An end that bears an earlier time than the verification it ends: the backend's
# transaction saving ivy's new address began before her reply verified. And the
# converse: jude's renewal verified in a transaction that began before the lapse
# of his old certification, and committed after it. The follower runs each
# account's events in the order they happened to its requests, so the last word
# is the account's state: ivy's end, jude's renewal.
sql_verify jude
pg_psql "SELECT milterd.request_verification('ivy', 'ivy@agri.gouv.fr'),
	milterd.request_verification('jude', 'jude@agri.gouv.fr');
	UPDATE milterd.requests SET acknowledged_at = now() WHERE account = 'jude' AND state = 'verified'" >/dev/null
psql -v ON_ERROR_STOP=1 -qAt >"$WORK/race.out" 2>&1 <<SQL
BEGIN;
SELECT now();
\! psql -qAt -c "UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account = 'ivy' AND state = 'pending'; UPDATE milterd.requests SET state = 'lapsed', ended_at = now() WHERE account = 'jude' AND state = 'verified'"
SELECT milterd.report_address('ivy', 'ivy.new@agri.gouv.fr');
UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account = 'jude' AND state = 'pending';
COMMIT;
SQL
ev_at() { pg_psql "SELECT at FROM milterd.events WHERE account = '$1' AND event $2"; }
expect_eq "the races as written: in time order, ivy's end comes first and jude's renewal" "t|t" \
	"$(pg_psql "SELECT '$(ev_at ivy "<> 'verified'")'::timestamptz < '$(ev_at ivy "= 'verified'")'")|$(pg_psql "SELECT '$(ev_at jude "= 'verified'")'::timestamptz < '$(ev_at jude "<> 'verified'")'")"
: >"$F/runs"
"$CTL" follow --exec "$PROG" --once >"$WORK/once.out" 2>&1; rc=$?
expect_eq "--once: ivy verified then address_changed; jude lapsed then verified" \
	"0|verified ivy ivy@agri.gouv.fr 3 address_changed ivy ivy@agri.gouv.fr 3|lapsed jude jude@agri.gouv.fr 3 verified jude jude@agri.gouv.fr 3|0" \
	"$rc|$(calls_of ivy | xargs)|$(calls_of jude | xargs)|$(pending)"

# ------------------------------------------------- refused query, sound connection
# The follower's role may read but not update milterd.requests: ack_event() is refused
# while the connection is fine. That is the account's failure (logged with the server's
# message, retried with backoff), not a lost connection: no reconnection, no run again at
# once, and the next account's event runs meanwhile.
pg_psql "CREATE ROLE follow_ro LOGIN; GRANT USAGE ON SCHEMA milterd TO follow_ro;
	GRANT SELECT ON ALL TABLES IN SCHEMA milterd TO follow_ro" >/dev/null
sql_verify rita sam
: >"$WORK/ro.log"
"$CTL" --database "host=$PGHOST user=follow_ro dbname=milterd" follow --exec "$PROG" \
	>>"$WORK/ro.log" 2>&1 &
FPID[ro]=$!
# 4.5 s from rita's first run, not from the follower's start (ASan, a busy machine).
wait_for 10 grep -qP '\trita\t' "$F/runs"
sleep 4.5
stop_follower ro
if [ "$(runs_of rita)" -ge 2 ] && [ "$(runs_of rita)" -le 4 ] && [ "$(runs_of sam)" -ge 1 ] &&
	! grep -q "connection lost" "$WORK/ro.log" &&
	grep -q "follow: verified rita: done, but not acknowledged: ERROR: permission denied" "$WORK/ro.log"; then
	ok "ack_event refused (no UPDATE right): said with the server's message, rita retried with backoff ($(runs_of rita) runs in 4.5 s from the first), sam not held up"
else
	not_ok "ack_event refused: rita ran $(runs_of rita) times, sam $(runs_of sam) in 4.5 s from rita's first: $(head -n 4 "$WORK/ro.log" | tr '\n' ' ')"
fi
pg_psql "SELECT count(milterd.ack_event(request_id, event)) FROM milterd.events" >/dev/null

# ------------------------------------------------------------------ keepalives
# The follower over TCP (a proxy to PostgreSQL's unix socket stands for the network):
# its socket probes a silent server after 20 s (the OS default: 2 h), and it asks the
# server to probe it likewise (tcp_keepalives_*, user-settable; the server applies them
# on TCP only, so the test reads the statement from the server's log), so that a dead
# follower host's session, and its lock, end within a minute.
cat >"$WORK/proxy.py" <<'PY'
import socket, sys, threading
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
open(sys.argv[2], "w").write(str(ls.getsockname()[1]))
def pump(a, b):
    try:
        while (d := a.recv(65536)):
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.socket(socket.AF_UNIX); u.connect(sys.argv[1])
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
PY
rm -f "$WORK/proxy.port"
python3 "$WORK/proxy.py" "$PGHOST/.s.PGSQL.5432" "$WORK/proxy.port" &
FPID[proxy]=$!
wait_for 5 test -s "$WORK/proxy.port"
pport=$(cat "$WORK/proxy.port")
pg_psql "CREATE ROLE follow_ka LOGIN SUPERUSER; ALTER ROLE follow_ka SET log_statement = 'all'" >/dev/null
: >"$WORK/ka.log"
"$CTL" --database "host=127.0.0.1 port=$pport user=follow_ka dbname=milterd" follow --exec "$PROG" >>"$WORK/ka.log" 2>&1 &
FPID[ka]=$!
wait_eq 5 1 actives ka
timer=$(ss -tnoH state established "( dport = :$pport )" | grep -o 'timer:(keepalive,[^,]*' | head -n 1)
stop_follower ka
stop_follower proxy
case "$timer" in
*,[0-9]sec|*,1[0-9]sec|*,20sec) ok "keepalives: the follower's socket probes after 20 s ($timer)" ;;
*) not_ok "keepalives: the follower's socket: '${timer:-no keepalive timer}'" ;;
esac
if grep -q "tcp_keepalives_idle', '20'.*tcp_keepalives_interval', '10'.*tcp_keepalives_count', '3'" "$PG_DIR/server.log"; then
	ok "keepalives: the follower asks the server for them in its session (20 s, 3 x 10 s)"
else
	not_ok "keepalives: no tcp_keepalives_* set by the follower in the server's log"
fi

# ------------------------------------------------------- session lost during a run
# The active follower's session ends (failover, pg_terminate_backend) while its program
# runs for dora's verification: a follower takes the lock and runs dora's events. The
# first must stop its run and not acknowledge, or dora's verification would be acted on
# after her address change. Which follower takes over is a race: the standby tries the
# lock once a second, the first reconnects after 1 s; it can be either, by milliseconds.
follower la
wait_eq 5 1 actives la
follower lb
wait_for 5 grep -q "standing by" "$WORK/lb.log"
echo 3 >"$F/slow.dora"
sql_verify dora
wait_eq 5 1 runs_of dora
"$CTL" address --account dora --email dora.new@agri.gouv.fr >/dev/null
end_active_session
wait_eq 15 0 pending_of dora
sleep 3.5	# the first run's end, had it gone on
expect_eq "session lost during a run: the run stopped, unacknowledged; one follower took over and ran dora's events once each, in order" \
	"verified address_changed|1|2" \
	"$(awk -F'\t' '$3 == "dora" { print $2 }' "$F/done" | paste -sd ' ')|$(grep -c "stopped: the database connection was lost" "$WORK/la.log")|$(( $(actives la) + $(actives lb) ))"
stop_follower la
stop_follower lb
rm -f "$F/slow.dora"

# Two runs under way (--jobs) when the session ends: both stop, neither is acknowledged,
# and the follower that takes over runs each account's verification once.
follower lc
wait_eq 5 1 actives lc
follower ld
wait_for 5 grep -q "standing by" "$WORK/ld.log"
echo 3 >"$F/slow.nell"
echo 3 >"$F/slow.otto"
sql_verify nell
sql_verify otto
wait_eq 5 1 runs_of nell
wait_eq 5 1 runs_of otto
end_active_session
wait_eq 15 0 pending_of nell
wait_eq 15 0 pending_of otto
sleep 3.5	# the first runs' end, had they gone on
expect_eq "session lost with two runs under way: both stopped, unacknowledged; one follower took over and ran each once" \
	"verified verified|2|2" \
	"$(awk -F'\t' '$3 == "nell" || $3 == "otto" { print $2 }' "$F/done" | paste -sd ' ')|$(grep -c "stopped: the database connection was lost" "$WORK/lc.log")|$(( $(actives lc) + $(actives ld) ))"
stop_follower lc
stop_follower ld
rm -f "$F/slow.nell" "$F/slow.otto"

# --------------------------------------------------------------------- lapses
# pia's certification is past its end and nobody called milterd.lapse() (recertify is
# daily): the follower lapses it at start (and at each rescan), and runs 'lapsed' at once.
# A role that may not lapse (no UPDATE right) gets one line saying so, not one a pass.
sql_verify pia
pg_psql "SELECT milterd.ack_event(id, 'verified') FROM milterd.requests WHERE account = 'pia';
	UPDATE milterd.requests SET valid_until = now() - interval '1 second'
	WHERE account = 'pia' AND state = 'verified'" >/dev/null
: >"$WORK/ro.log"
"$CTL" --database "host=$PGHOST user=follow_ro dbname=milterd" follow --exec "$PROG" \
	>>"$WORK/ro.log" 2>&1 &
FPID[ro]=$!
wait_for 10 grep -q "lapses wait for milterctl recertify" "$WORK/ro.log"
sleep 1	# time for another line, were there one
stop_follower ro
expect_eq "lapse refused to the follower's role: one line with the server's message, nothing lapsed" \
	"1|0" "$(grep -c "milterd.lapse(): ERROR: permission denied.*lapses wait for milterctl recertify" "$WORK/ro.log")|$(pending_of pia)"
# Nothing of pia's is pending before the follower lapses her certification: the wait is
# for the end, lapsed and acknowledged, not for no event (true before the follower starts).
lapse_of() { pg_psql "SELECT state, end_acknowledged_at IS NOT NULL FROM milterd.requests
	WHERE account = '$1' ORDER BY id DESC LIMIT 1" | tr '|' ' '; }
follower lp
if wait_eq 10 "lapsed t" lapse_of pia && [ "$(pending_of pia)" = 0 ] &&
	[ "$(calls_of pia | tail -n 1 | cut -d' ' -f1)" = lapsed ]; then
	ok "a certification past its end: lapsed by the follower at start, 'lapsed' run and acknowledged"
else
	not_ok "a certification past its end: pia's request $(lapse_of pia), $(pending_of pia) events of pia; runs: $(calls_of pia | paste -sd '|')"
fi
stop_follower lp

# Failures to connect are said as what they are, not as a connection lost.
: >"$WORK/nowhere.log"
"$CTL" --database "host=$WORK/nowhere dbname=milterd" follow --exec "$PROG" >>"$WORK/nowhere.log" 2>&1 &
FPID[nowhere]=$!
: >"$WORK/unmigrated.log"
"$CTL" --database "host=$PGHOST dbname=postgres" follow --exec "$PROG" >>"$WORK/unmigrated.log" 2>&1 &
FPID[unmigrated]=$!
# Until each has tried twice (the second "again in 2 s"), however long they take to start.
wait_for 10 grep -q "again in 2 s" "$WORK/nowhere.log"
wait_for 10 grep -q "again in 2 s" "$WORK/unmigrated.log"
stop_follower nowhere
stop_follower unmigrated
expect_eq "a database that cannot be reached, an unmigrated one: each said so, with the retry" \
	"1|1|0" "$(grep -c "follow: cannot connect to the database: .*; again in 1 s" "$WORK/nowhere.log")|$(grep -c "schema is at version 0, this milterctl needs .*: run milterctl db migrate; again in 1 s" "$WORK/unmigrated.log")|$(cat "$WORK/nowhere.log" "$WORK/unmigrated.log" | grep -c "connection lost")"

# ------------------------------------------------------------ systemd units
# The units as make install writes them (SBINDIR, SYSCONFDIR substituted), checked by
# systemd-analyze, and their commands run as the units would run them (--once added).
units="$WORK/units"
mkdir -p "$units/etc"
for u in milterd-follow.service milterd-recertify.service milterd-recertify.timer; do
	sed -e "s|@SBINDIR@|$BUILD|g" -e "s|@SYSCONFDIR@|$units/etc|g" -e "s|@DATADIR@|$TOP|g" \
		"$TOP/milterd/$u" >"$units/$u"
done
if out=$(systemd-analyze verify --man=no "$units"/*.service "$units"/*.timer 2>&1) && [ -z "$out" ]; then
	ok "systemd-analyze verify accepts milterd-follow.service, milterd-recertify.service and .timer"
else
	not_ok "systemd-analyze verify: $(echo "$out" | tr '\n' ' ')"
fi
execstart() { sed -n "s/^ExecStart=//p" "$units/$1"; }
write_config "$units/etc/milterd.conf"
sql_verify olga
$(execstart milterd-follow.service) --once >"$WORK/unit.out" 2>&1; rc=$?
prevent=$(sed -n 's/^RestartPreventExitStatus=//p' "$units/milterd-follow.service")
expect_eq "the follow unit's command without follow_exec: exit $rc, one the unit does not restart on" \
	"yes" "$(case " $prevent " in *" $rc "*) echo yes ;; *) echo "no ($rc; $(cat "$WORK/unit.out"))" ;; esac)"
write_config "$units/etc/milterd.conf" "follow_exec = $PROG"
$(execstart milterd-follow.service) --once >"$WORK/unit.out" 2>&1; rc=$?
expect_eq "the follow unit's command with follow_exec: olga's event run and acknowledged" "0|1|0" \
	"$rc|$(runs_of olga)|$(pending)"
rc=""
while read -r cmd; do $cmd >>"$WORK/unit.out" 2>&1; rc="$rc$?"; done < <(execstart milterd-recertify.service)
expect_eq "the recertify unit's commands (recertify, db prune) succeed" "00" "$rc"
