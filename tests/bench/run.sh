#!/usr/bin/env bash
# run.sh — `make bench`: milterd against OpenDKIM (and OpenDKIM + an SPF milter), same
# client, same corpus, same machine, same run.
#
# Starts a private PostgreSQL and the test DNS server (unbound) as tests/run does, makes a
# corpus (corpus.sh), then measures with milterload:
#   milterd       full decision (DKIM, SPF, policy, database)    unix socket and TCP loopback
#   opendkim      Debian's OpenDKIM, verify-only mode              unix socket and TCP loopback
#   opendkim+spf  OpenDKIM then Debian's pyspf-milter, chained     unix socket and TCP loopback
#                 (each at 20 connections; milterd and opendkim on unix also at 4, below
#                 saturation; TCP also as "tcp-qa": the client acks at once, no delayed ACK)
#   junk          milterd refusing unknown tokens at RCPT (refusals per second)
#   c1000         milterd (fresh), then opendkim, under 1000 concurrent connections: peak RSS
#                 (VmHWM), threads, descriptors
#   long          milterd (fresh) over BENCH_LONG_MESSAGES messages: RSS growth
# and prints one table, also written to tests/bench/results/RESULT-<date>.txt. Before the
# measured milterd rows a warm-up delivers every reply once (its "first verification" row):
# each verifies its account, so every later delivery is answered already_verified (250),
# through the same DKIM/SPF/policy/database path. Exit 1 when a milterd run had errors or
# answers other than expected (the other milters' errors are only noted).
#
# Sizes (environment): BENCH_REPLIES (1000 signed replies), BENCH_JUNK (500 junk envelopes),
# BENCH_MESSAGES (20000 per system and transport), BENCH_CONNECTIONS (20),
# BENCH_PER_CONNECTION (10 messages per milter connection), BENCH_CHAIN_MESSAGES (4000),
# BENCH_JUNK_MESSAGES (20000), BENCH_ROUNDS (5 paired rounds of milterd and OpenDKIM
# back to back, unix and tcp-qa), BENCH_C1000_SECONDS (15: 1000 connections held open that long,
# messages back to back on each), BENCH_LONG_MESSAGES (100000;
# BENCH_LONG=1 makes it 1,000,000). KEEP_WORK=1 keeps the work directory.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export TOP BUILD="${BUILD:-$TOP/build}"
BENCH="$TOP/tests/bench"
LOAD="${MILTERLOAD:-$BUILD/bench/milterload}"

REPLIES=${BENCH_REPLIES:-1000}
JUNK=${BENCH_JUNK:-500}
MESSAGES=${BENCH_MESSAGES:-20000}
CONNS=${BENCH_CONNECTIONS:-20}
PER=${BENCH_PER_CONNECTION:-10}
CHAIN_MESSAGES=${BENCH_CHAIN_MESSAGES:-4000}
JUNK_MESSAGES=${BENCH_JUNK_MESSAGES:-20000}
C1000_SECONDS=${BENCH_C1000_SECONDS:-15}
if [ -n "${BENCH_LONG:-}" ] && [ "${BENCH_LONG}" != 0 ]; then
	LONG_MESSAGES=${BENCH_LONG_MESSAGES:-1000000}
else
	LONG_MESSAGES=${BENCH_LONG_MESSAGES:-100000}
fi
LONG_SEGMENTS=10
ROUNDS=${BENCH_ROUNDS:-5}

WORK=$(mktemp -d /tmp/milterd-bench.XXXXXX)
export WORK
chmod 755 "$WORK"
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
. "$TOP/tests/lib/dns.sh"
export MILTERD_SQLDIR="$TOP/milterd/sql"

declare -A PIDS=()
NOTES="$WORK/notes"
: >"$NOTES"
note() { echo "$*" | tee -a "$NOTES" >&2; }
say() { printf '\n== %s\n' "$*" >&2; }

stop_one() {
	local pid="${PIDS[$1]:-}"
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "PIDS[$1]"
}

cleanup() {
	local n
	for n in "${!PIDS[@]}"; do stop_one "$n"; done
	dns_stop 2>/dev/null
	pg_stop
	if [ -n "${KEEP_WORK:-}" ]; then echo "(kept $WORK)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------- build
[ -x "$BUILD/milterd" ] && [ -x "$BUILD/milterctl" ] || die "build milterd first (make)"
if [ ! -x "$LOAD" ] || [ "$BENCH/milterload.c" -nt "$LOAD" ]; then
	mkdir -p "$(dirname "$LOAD")"
	${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread \
		-o "$LOAD" "$BENCH/milterload.c" || die "cannot build milterload"
fi
for p in opendkim pyspf-milter; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		note "note: Debian package $p is not installed (apt-get install $p): its rows are skipped"
done
# 1000 connections: a descriptor per connection in milterd and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] ||
	note "note: descriptor limit $(ulimit -n) is low for 1000 connections"

# The machine may be shared: how busy is it before the bench starts anything?
busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r b0 t0 < <(busy); sleep 3; read -r b1 t1 < <(busy)
BACKGROUND=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN { printf "%.0f%%", t ? 100 * b / t : 0 }')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------- services, corpus
say "PostgreSQL and DNS ($WORK)"
pg_start "$WORK" || die "PostgreSQL did not start"
db_reset || die "database reset failed"
# Slow statements and lock waits go to PostgreSQL's log, counted at the end.
psql -d postgres -q -c "ALTER SYSTEM SET log_min_duration_statement = 100" \
	-c "ALTER SYSTEM SET log_lock_waits = on" -c "ALTER SYSTEM SET deadlock_timeout = 100" \
	-c "SELECT pg_reload_conf()" >/dev/null || note "note: cannot set PostgreSQL logging"
# SPF as tests/run publishes it, and the ministries' shared relays (192.0.2.0/25, HELO
# smtp.rie.gouv.fr) the corpus's replies come from, allowed for both ministries.
dns_add_record 'agri.gouv.fr. 60 IN TXT "v=spf1 ip4:192.0.2.0/25 -all"'
dns_add_record 'interieur.gouv.fr. 60 IN TXT "v=spf1 ip4:192.0.2.0/25 ip4:198.51.100.0/24 -all"'
dns_add_record 'mx.interieur.gouv.fr. 60 IN TXT "v=spf1 a -all"'
dns_add_record 'example.com. 60 IN TXT "v=spf1 ip4:198.51.100.0/24 ?all"'
dns_add_record 'smtp.rie.gouv.fr. 60 IN TXT "v=spf1 ip4:192.0.2.0/25 -all"'
dns_add_record 'smtp.rie.gouv.fr. 60 IN A 192.0.2.1'
mkdir -p "$WORK/dns"
dns_start "$WORK/dns" || die "unbound did not start"
export DNS_SPEC DNS_KEYS DNS_PORT

say "Corpus: $REPLIES signed replies, $JUNK junk envelopes"
"$BENCH/corpus.sh" "$WORK/corpus" "$REPLIES" "$JUNK" 2>&1 | tee "$WORK/corpus.log" >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "corpus.sh failed"
CORPUS_LINE=$(grep '^corpus:' "$WORK/corpus.log")

# --------------------------------------------------------------- daemons
wait_spec() {	# SPEC PID: wait for the socket while the process lives
	local spec="$1" pid="$2" i
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		case "$spec" in
		unix:*|local:*) [ -S "${spec#*:}" ] && return 0 ;;
		inet:*) p=${spec#inet:}; p=${p%@*}; ss -Htln "sport = :$p" | grep -q . && return 0 ;;
		esac
		sleep 0.1
	done
	return 1
}

spec_for() {	# NAME KIND: a socket spec
	if [ "$2" = unix ]; then echo "unix:$WORK/$1.sock"; else echo "inet:$(free_port)@127.0.0.1"; fi
}

declare -A SOCK=() NAME_OF=()

# start_X NAME KIND: a daemon on a fresh socket; a TCP port another process took
# between free_port and bind gets two more tries on other ports.
retry_start() {
	local i
	for i in 1 2 3; do "$@" && return 0; note "note: $2 did not start (try $i)"; done
	die "$2 did not start"
}
start_milterd() { retry_start _start_milterd "$@"; }
start_opendkim() { retry_start _start_opendkim "$@"; }
start_pyspf() { retry_start _start_pyspf "$@"; }

_start_milterd() {	# NAME KIND
	local name="$1" spec; spec=$(spec_for "$1" "$2")
	# As tests' write_config, with milterd's defaults for the database (pool 8, timeout 5 s)
	# and the log level an installation runs with.
	write_config "$WORK/$name.conf" "socket = $spec" "log_level = info" "db_timeout = 5"
	"$BUILD/milterd" -f -c "$WORK/$name.conf" 2>>"$WORK/$name.log" &
	PIDS[$name]=$!
	SOCK[$name]=$spec NAME_OF[$spec]=$name
	wait_spec "$spec" "${PIDS[$name]}" || { tail -n 5 "$WORK/$name.log" >&2; stop_one "$name"; return 1; }
}

HAVE_OPENDKIM=; command -v opendkim >/dev/null || [ -x /usr/sbin/opendkim ] && HAVE_OPENDKIM=1
_start_opendkim() {	# NAME KIND
	local name="$1" spec; spec=$(spec_for "$1" "$2")
	# Verify-only; keys from the bench DNS server (libunbound forwarder IP@port);
	# foreground, no syslog (this machine has none): its errors go to stderr.
	cat >"$WORK/$name.conf" <<-EOF
	Mode			v
	Socket			$spec
	Syslog			no
	Background		no
	Nameservers		127.0.0.1@$DNS_PORT
	AuthservID		mx.certify.test
	MinimumKeyBits		1024
	UMask			000
	SoftwareHeader		no
	EOF
	/usr/sbin/opendkim -f -x "$WORK/$name.conf" 2>>"$WORK/$name.log" &
	PIDS[$name]=$!
	SOCK[$name]=$spec NAME_OF[$spec]=$name
	wait_spec "$spec" "${PIDS[$name]}" || { tail -n 5 "$WORK/$name.log" >&2; stop_one "$name"; return 1; }
}

HAVE_PYSPF=; [ -x /usr/bin/pyspf-milter ] && HAVE_PYSPF=1
_start_pyspf() {	# NAME KIND
	local name="$1" spec dir="$WORK/$1"; spec=$(spec_for "$1" "$2")
	mkdir -p "$dir"
	chown pyspf-milter: "$dir" 2>/dev/null	# it drops to that user before binding
	[ "$2" = unix ] && spec="unix:$dir/$name.sock"
	cat >"$dir/$name.conf" <<-EOF
	debugLevel = 1
	TestOnly = 1
	HELO_reject = Fail
	Mail_From_reject = Fail
	PermError_reject = False
	TempError_Defer = False
	skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1
	Socket = ${spec/unix:/local:}
	PidFile = $dir/$name.pid
	UserID = pyspf-milter
	InternalHosts = 127.0.0.1
	Authserv_Id = mx.certify.test
	EOF
	BENCH_DNS="127.0.0.1@$DNS_PORT" "$BENCH/pyspf-milter-run" "$dir/$name.conf" 2>>"$WORK/$name.log" &
	PIDS[$name]=$!
	SOCK[$name]=$spec NAME_OF[$spec]=$name
	wait_spec "$spec" "${PIDS[$name]}" || { tail -n 5 "$WORK/$name.log" >&2; stop_one "$name"; return 1; }
}

status_of() {	# NAME FIELD: a /proc status field in kB (or count)
	awk -v f="$2:" '$1 == f {print $2}' "/proc/${PIDS[$1]}/status" 2>/dev/null
}

# ---------------------------------------------------------------- runs
declare -A R=()	# R[label.key]=value from milterload's key=value line

ticks() {	# PID...: CPU time (utime + stime, clock ticks) of those processes
	local t=0 p v
	for p in "$@"; do
		v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$(( t + ${v:-0} ))
	done
	echo "$t"
}
pg_pids() {	# the PostgreSQL server and its backends
	local pm; pm=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || return
	echo "$pm" $(pgrep -P "$pm")
}
HZ=$(getconf CLK_TCK)

load() {	# LABEL EXPECT CORPUS SOCKETS... [-- extra milterload options]
	local label="$1" expect="$2" corpus="$3" rc line kv; shift 3
	local socks=() extra=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do socks+=(--socket "$1"); shift; done
	[ "${1:-}" = -- ] && { shift; extra=("$@"); }
	local srv=() i c0 d0
	for ((i = 1; i < ${#socks[@]}; i += 2)); do srv+=("${PIDS[${NAME_OF[${socks[i]}]}]}"); done
	# shellcheck disable=SC2046
	c0=$(ticks "${srv[@]}") d0=$(ticks $(pg_pids))
	"$LOAD" "${socks[@]}" --corpus "$corpus" --label "$label" --expect "$expect" \
		--connections "$CONNS" --messages-per-connection "$PER" --messages "$MESSAGES" \
		-v "${extra[@]}" >"$WORK/$label.out" 2>"$WORK/$label.err"
	rc=$?
	R[$label.srv_ticks]=$(( $(ticks "${srv[@]}") - c0 ))
	# shellcheck disable=SC2046
	R[$label.db_ticks]=$(( $(ticks $(pg_pids)) - d0 ))	# backends opened meanwhile count whole
	sed 's/^/    /' "$WORK/$label.out" | tail -n +3 >&2
	[ -s "$WORK/$label.err" ] && sed 's/^/    client: /' "$WORK/$label.err" | head -n 8 >&2
	line=$(grep '^milterload ' "$WORK/$label.out")
	for kv in $line; do
		case "$kv" in *=*) R[$label.${kv%%=*}]=${kv#*=} ;; esac
	done
	R[$label.rc]=$rc
	[ "$rc" = 0 ] || note "note: $label: milterload exit $rc (errors=${R[$label.errors]:-?} unexpected=${R[$label.unexpected]:-?}, codes ${R[$label.codes]:-?})"
	return 0
}

REP="$WORK/corpus/replies" JNK="$WORK/corpus/junk"

# ar_check LABEL WHO PATTERN [MILTER]: of the Authentication-Results headers that milter
# (index in the chain, default 0) added in the warm-up (--print-headers), how many say
# PATTERN; a note unless all do.
ar_check() {
	local all pass sel="milter ${4:-0} [a-z]* header: Authentication-Results:"
	all=$(grep -c -- "$sel" "$WORK/$1.err")
	pass=$(grep -- "$sel" "$WORK/$1.err" | grep -c -- "$3")
	AR[$2]="$pass of $all Authentication-Results with $3"
	[ "$all" -gt 0 ] && [ "$pass" = "$all" ] ||
		note "note: $2: ${AR[$2]}; e.g. $(grep -- "$sel" "$WORK/$1.err" | grep -v -m1 -- "$3")"
}
declare -A AR=()

say "milterd: unix socket and TCP loopback"
start_milterd milterd-unix unix
start_milterd milterd-tcp tcp
# Warm-up: the first delivery of each reply verifies its account (UPDATE + NOTIFY); every
# measured run after it is answered already_verified, through the same whole path.
load warmup-verify accept "$REP" "${SOCK[milterd-unix]}" -- --messages "$REPLIES" --print-headers "$REPLIES"
ar_check warmup-verify milterd 'dkim=pass'
verified=$(pg_psql "SELECT count(*) FROM milterd.requests WHERE state = 'verified'")
[ "$verified" = "$REPLIES" ] || note "note: after the warm-up $verified of $REPLIES accounts are verified"
load milterd.unix accept "$REP" "${SOCK[milterd-unix]}"
load milterd.unix4 accept "$REP" "${SOCK[milterd-unix]}" -- --connections 4
load milterd.tcp accept "$REP" "${SOCK[milterd-tcp]}"
load milterd.tcpqa accept "$REP" "${SOCK[milterd-tcp]}" -- --quickack

say "junk: unknown tokens refused at RCPT"
jlog="$WORK/milterd-unix.log"; j0=$(wc -l <"$jlog")
load junk.unix reject "$JNK" "${SOCK[milterd-unix]}" -- --rcpt-only --messages "$JUNK_MESSAGES"
# Each refusal must be the database's answer (unknown_token), not a cheaper one.
R[junk.unix.unknown]=$(tail -n +"$((j0 + 1))" "$jlog" | grep -c 'reason=unknown_token reply=550')
[ "${R[junk.unix.unknown]}" = "${R[junk.unix.reject]:-x}" ] || {
	note "note: junk: ${R[junk.unix.unknown]} of ${R[junk.unix.reject]:-?} refusals logged as unknown_token"
	R[junk.unix.rc]=1
}

if [ -n "$HAVE_OPENDKIM" ]; then
	say "opendkim (verify-only): unix socket and TCP loopback"
	start_opendkim opendkim-unix unix
	start_opendkim opendkim-tcp tcp
	# Warm-up (DNS caches); its Authentication-Results show that OpenDKIM verified.
	load warmup-opendkim mixed "$REP" "${SOCK[opendkim-unix]}" -- --messages 500 --print-headers 500
	ar_check warmup-opendkim opendkim 'dkim=pass'
	load opendkim.unix accept "$REP" "${SOCK[opendkim-unix]}"
	load opendkim.unix4 accept "$REP" "${SOCK[opendkim-unix]}" -- --connections 4
	load opendkim.tcp accept "$REP" "${SOCK[opendkim-tcp]}"
	load opendkim.tcpqa accept "$REP" "${SOCK[opendkim-tcp]}" -- --quickack
fi

if [ -n "$HAVE_OPENDKIM" ] && [ -n "$HAVE_PYSPF" ]; then
	say "opendkim + pyspf-milter chained: unix socket and TCP loopback"
	start_pyspf pyspf-unix unix
	start_pyspf pyspf-tcp tcp
	load warmup-chain mixed "$REP" "${SOCK[opendkim-unix]}" "${SOCK[pyspf-unix]}" -- --messages 200 --print-headers 400
	ar_check warmup-chain pyspf-milter 'spf=pass' 1
	load chain.unix accept "$REP" "${SOCK[opendkim-unix]}" "${SOCK[pyspf-unix]}" -- --messages "$CHAIN_MESSAGES"
	load chain.tcp accept "$REP" "${SOCK[opendkim-tcp]}" "${SOCK[pyspf-tcp]}" -- --messages "$CHAIN_MESSAGES"
	load chain.tcpqa accept "$REP" "${SOCK[opendkim-tcp]}" "${SOCK[pyspf-tcp]}" -- --messages "$CHAIN_MESSAGES" --quickack
elif [ -n "$HAVE_OPENDKIM" ]; then
	note "note: opendkim+spf chain skipped: pyspf-milter (Debian package pyspf-milter) is not installed"
fi

# Paired rounds: on a shared machine one row can meet a busy neighbour the other row did
# not. Each round measures milterd and OpenDKIM back to back (which goes first alternates),
# and the ratio is taken within the round; the median round is the figure to quote.
if [ -n "$HAVE_OPENDKIM" ] && [ "$ROUNDS" -gt 0 ]; then
	say "paired rounds: milterd and opendkim back to back, $ROUNDS rounds"
	for i in $(seq 1 "$ROUNDS"); do
		for t in unix tcpqa; do
			qa=(); [ "$t" = tcpqa ] && qa=(--quickack)
			sm=${SOCK[milterd-${t%qa}]} so=${SOCK[opendkim-${t%qa}]}
			if [ $((i % 2)) = 1 ]; then
				load "pair$i.milterd.$t" accept "$REP" "$sm" -- "${qa[@]}"
				load "pair$i.opendkim.$t" accept "$REP" "$so" -- "${qa[@]}"
			else
				load "pair$i.opendkim.$t" accept "$REP" "$so" -- "${qa[@]}"
				load "pair$i.milterd.$t" accept "$REP" "$sm" -- "${qa[@]}"
			fi
		done
	done
fi

# c1000 NAME LABEL: NAME (a fresh process) under 1000 connections held open for
# C1000_SECONDS, messages back to back on each; samples threads, RSS and descriptors.
declare -A C1K=()
c1000() {
	local name="$1" label="$2" pid="${PIDS[$1]}" sampler
	C1K[$label.rss0]=$(status_of "$name" VmRSS)
	rm -f "$WORK/$label.done"
	( maxt=0 maxr=0 maxf=0
	  while kill -0 "$pid" 2>/dev/null && [ ! -e "$WORK/$label.done" ]; do
		t=$(awk '$1 == "Threads:" {print $2}' "/proc/$pid/status" 2>/dev/null)
		r=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status" 2>/dev/null)
		f=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
		[ -n "$t" ] && [ "$t" -gt "$maxt" ] && maxt=$t
		[ -n "$r" ] && [ "$r" -gt "$maxr" ] && maxr=$r
		[ "$f" -gt "$maxf" ] && maxf=$f
		sleep 0.2
	  done; echo "$maxt $maxr $maxf" >"$WORK/$label.sample" ) &
	sampler=$!
	load "$label" accept "$REP" "${SOCK[$name]}" -- --connections 1000 \
		--messages 0 --duration "$C1000_SECONDS" --messages-per-connection 1000000000
	touch "$WORK/$label.done"; wait "$sampler"
	read -r C1K[$label.threads] C1K[$label.rss] C1K[$label.fds] <"$WORK/$label.sample"
	C1K[$label.hwm]=$(status_of "$name" VmHWM)
	kill -0 "$pid" 2>/dev/null || note "note: $name died under 1000 connections: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ')"
	stop_one "$name"
}
c1000_line() {	# LABEL WHO
	local l="$1"
	[ -n "${R[$l.messages]:-}" ] || return 0
	echo "  $2: ${R[$l.messages]} messages, ${R[$l.msgs_per_s]} msgs/s; end of message p50 ${R[$l.p50_ms]} ms p99 ${R[$l.p99_ms]} ms max ${R[$l.max_ms]} ms;" \
		"whole message p50 ${R[$l.msg_p50_ms]} ms p99 ${R[$l.msg_p99_ms]} ms;" \
		"accept ${R[$l.accept]} tempfail ${R[$l.tempfail]} reject ${R[$l.reject]} other ${R[$l.other]}, errors ${R[$l.errors]};" \
		"srv cpu $(per_msg "${R[$l.srv_ticks]}" "${R[$l.messages]}") ms/msg"
	echo "    RSS idle $(kb_mb "${C1K[$l.rss0]}"), peak VmHWM $(kb_mb "${C1K[$l.hwm]}"), threads up to ${C1K[$l.threads]}, descriptors up to ${C1K[$l.fds]}"
}

say "milterd under 1000 concurrent connections (fresh process)"
start_milterd milterd-c1000 unix
c1000 milterd-c1000 c1000.milterd
if [ -n "$HAVE_OPENDKIM" ]; then
	say "opendkim under 1000 concurrent connections (fresh process)"
	start_opendkim opendkim-c1000 unix
	c1000 opendkim-c1000 c1000.opendkim
fi

say "milterd long run: $LONG_MESSAGES messages (fresh process), RSS after each tenth"
start_milterd milterd-long unix
long_rss=()
seg=$(( LONG_MESSAGES / LONG_SEGMENTS ))
t_long0=$(date +%s.%N)
long_msgs=0 long_err=0
for i in $(seq 1 "$LONG_SEGMENTS"); do
	load "long.$i" accept "$REP" "${SOCK[milterd-long]}" -- --messages "$seg"
	long_rss+=("$(status_of milterd-long VmRSS)")
	long_msgs=$(( long_msgs + ${R[long.$i.messages]:-0} ))
	long_err=$(( long_err + ${R[long.$i.errors]:-0} + ${R[long.$i.unexpected]:-0} ))
	kill -0 "${PIDS[milterd-long]}" 2>/dev/null || { note "note: milterd died during the long run (segment $i)"; break; }
done
t_long1=$(date +%s.%N)
long_hwm=$(status_of milterd-long VmHWM)
long_fds=$(ls "/proc/${PIDS[milterd-long]}/fd" 2>/dev/null | wc -l)
long_threads=$(status_of milterd-long Threads)

# -------------------------------------------------------------- evidence
for n in milterd-unix milterd-tcp milterd-long; do
	kill -0 "${PIDS[$n]:-0}" 2>/dev/null || note "note: $n is not running at the end (crash?): $(tail -n 3 "$WORK/$n.log" | tr '\n' ' ')"
done
reasons=$(pg_psql "SELECT string_agg(reason || ' ' || n, ', ' ORDER BY n DESC) FROM
	(SELECT reason, count(*) n FROM milterd.evidence GROUP BY reason) x")
warnings=$(cat "$WORK"/milterd-*.log | grep -c -E ' (warning|err|crit|alert|emerg)[: ]|reason=temporary')
[ "$warnings" -gt 0 ] && note "note: milterd logged $warnings warning/error/temporary lines, e.g.: $(cat "$WORK"/milterd-*.log | grep -E ' (warning|err|crit)[: ]|reason=temporary' | head -n 3 | tr '\n' ' ')"

pg_slow=$(grep -c 'LOG:  duration: ' "$PG_DIR/server.log")
pg_waits=$(grep -c 'still waiting for' "$PG_DIR/server.log")
pg_ext=$(grep 'still waiting for' "$PG_DIR/server.log" | grep -c 'on extension of relation')
pg_worst=$(grep -o 'LOG:  duration: [0-9.]* ms' "$PG_DIR/server.log" | awk '{print $3}' | sort -n | tail -n 1)

# ----------------------------------------------------------------- table
FMT='%-27s %-6s %5s %8s %7s %7s %7s %7s %7s %7s %6s %7s %7s %6s\n'
r1() { awk -v v="$1" 'BEGIN { printf (v < 10 ? "%.2f" : "%.1f"), v }'; }
per_msg() {	# TICKS MESSAGES: CPU ms per message
	awk -v t="${1:-0}" -v n="${2:-0}" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.3f", t / hz * 1000 / n; else printf "-" }'
}
row() {	# LABEL SYSTEM TRANSPORT
	local l="$1"
	if [ -z "${R[$l.messages]:-}" ]; then
		printf "$FMT" "$2" "$3" - - - - - - - - - - - -
		return
	fi
	printf "$FMT" "$2" "$3" "${R[$l.connections]}" "${R[$l.msgs_per_s]}" \
		"$(r1 "${R[$l.p50_ms]}")" "$(r1 "${R[$l.p99_ms]}")" "$(r1 "${R[$l.max_ms]}")" \
		"$(r1 "${R[$l.msg_p50_ms]}")" "$(r1 "${R[$l.msg_p99_ms]}")" "${R[$l.messages]}" \
		"$(( ${R[$l.errors]:-0} + ${R[$l.unexpected]:-0} ))" \
		"$(per_msg "${R[$l.srv_ticks]}" "${R[$l.messages]}")" \
		"$(per_msg "${R[$l.db_ticks]}" "${R[$l.messages]}")" \
		"$(awk -v c="${R[$l.client_cpu_s]:-0}" -v s="${R[$l.seconds]:-0}" 'BEGIN { if (s > 0) printf "%.0f%%", 100 * c / s }')"
}
ratio() { awk -v a="${R[$1.msgs_per_s]:-0}" -v b="${R[$2.msgs_per_s]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
# pairs TRANSPORT: "ratios a b c, median m (milterd median x msgs/s, opendkim y)"
pairs() {
	local i rs=() ms=() os=()
	for i in $(seq 1 "$ROUNDS"); do
		[ -n "${R[pair$i.milterd.$1.msgs_per_s]:-}" ] && [ -n "${R[pair$i.opendkim.$1.msgs_per_s]:-}" ] || continue
		rs+=("$(ratio "pair$i.milterd.$1" "pair$i.opendkim.$1")")
		ms+=("${R[pair$i.milterd.$1.msgs_per_s]}") os+=("${R[pair$i.opendkim.$1.msgs_per_s]}")
	done
	[ "${#rs[@]}" -gt 0 ] || { echo "-"; return; }
	echo "ratios ${rs[*]}, median $(median "${rs[@]}") (milterd median $(median "${ms[@]}") msgs/s, opendkim $(median "${os[@]}"))"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# budget LABEL: "m + p + c = t ms -> at most n msgs/s": CPU per message of the milter(s),
# PostgreSQL and the client, and the rate at which they would fill every core.
budget() {
	local l="$1"
	[ -n "${R[$l.messages]:-}" ] || { echo "-"; return; }
	awk -v m="$(per_msg "${R[$l.srv_ticks]}" "${R[$l.messages]}")" \
	    -v p="$(per_msg "${R[$l.db_ticks]}" "${R[$l.messages]}")" \
	    -v c="${R[$l.client_cpu_s]:-0}" -v n="${R[$l.messages]}" -v cores="$(nproc)" \
	    -v got="${R[$l.msgs_per_s]}" 'BEGIN {
		c = c * 1000 / n; t = m + p + c
		printf "%.3f + %.3f + %.3f = %.3f ms -> at most %.0f msgs/s on %d cores (measured %s)", m, p, c, t, cores * 1000 / t, cores, got
	}'
}
kb_mb() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

mkdir -p "$BENCH/results"
stamp=$(date +%Y-%m-%dT%H%M%S)
result="$BENCH/results/RESULT-$stamp.txt"
{
	echo "milterd benchmark — $(date -R)"
	echo "CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores;" \
		"memory $(awk '/^MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo);" \
		"$(uname -sr); commit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)$(git -C "$TOP" diff --quiet 2>/dev/null || echo '+changes')"
	echo "milterd: db_pool_size 8, db_timeout 5, log_level info (stderr to a file);" \
		"opendkim $(dpkg-query -W -f='${Version}' opendkim 2>/dev/null); pyspf-milter $(dpkg-query -W -f='${Version}' pyspf-milter 2>/dev/null)"
	echo "machine before the bench: load average $LOADAVG, CPU busy $BACKGROUND (other work on a shared machine skews the rows)"
	echo "$CORPUS_LINE"
	echo "client: milterload, $CONNS connections (4 on the rows that say so), $PER messages per connection, $MESSAGES messages per row" \
		"(chain rows $CHAIN_MESSAGES); latency = end-of-message answer (RCPT answer for junk)"
	echo
	printf "$FMT" "" "" "" "" "eom" "eom" "eom" "msg" "msg" "" "" "milter" "PgSQL" ""
	printf "$FMT" system transport conns "msgs/s" "p50 ms" "p99 ms" "max ms" "p50 ms" "p99 ms" messages errors "ms/msg" "ms/msg" client
	row milterd.unix "milterd (full decision)" unix
	row milterd.unix4 "milterd (full decision)" unix
	row milterd.tcp "milterd (full decision)" tcp
	row milterd.tcpqa "milterd (full decision)" tcp-qa
	row opendkim.unix "opendkim (verify only)" unix
	row opendkim.unix4 "opendkim (verify only)" unix
	row opendkim.tcp "opendkim (verify only)" tcp
	row opendkim.tcpqa "opendkim (verify only)" tcp-qa
	row chain.unix "opendkim + pyspf-milter" unix
	row chain.tcp "opendkim + pyspf-milter" tcp
	row chain.tcpqa "opendkim + pyspf-milter" tcp-qa
	row junk.unix "milterd junk RCPT refusals" unix
	row warmup-verify "milterd first verification" unix
	echo
	echo "ratio milterd/opendkim (msgs/s):          unix $(ratio milterd.unix opendkim.unix)   tcp $(ratio milterd.tcp opendkim.tcp)   tcp-qa $(ratio milterd.tcpqa opendkim.tcpqa)   unix, 4 conns $(ratio milterd.unix4 opendkim.unix4)"
	if [ "$ROUNDS" -gt 0 ] && [ -n "$HAVE_OPENDKIM" ]; then
		echo "paired rounds ($ROUNDS, $CONNS connections, milterd and opendkim back to back, ratio within each round):"
		echo "  unix:   $(pairs unix)"
		echo "  tcp-qa: $(pairs tcpqa)"
	fi
	echo "CPU per message, milter + PostgreSQL + client (the rows share the cores, so this bounds msgs/s):"
	echo "  milterd unix:  $(budget milterd.unix)"
	echo "  opendkim unix: $(budget opendkim.unix)"
	echo "ratio milterd/(opendkim+pyspf) (msgs/s):  unix $(ratio milterd.unix chain.unix)   tcp $(ratio milterd.tcp chain.tcp)   tcp-qa $(ratio milterd.tcpqa chain.tcpqa)"
	echo "eom: from the EOM command to the final answer (for junk: the RCPT answer); msg: the whole"
	echo "  message, from MAIL (CONNECT for a connection's first) to that answer. A milter that takes"
	echo "  SMFIP_NR_HDR/NR_BODY (milterd does) gets headers and body without round trips and does their"
	echo "  work before its EOM answer, so compare whole-message times across milters. milterd also"
	echo "  takes SMFIP_NR_CONN/HELO/MAIL and SMFIP_NODATA: no round trip for CONNECT, HELO, MAIL or DATA."
	echo "milter / PgSQL ms/msg: CPU time per message of the milter process(es) / of PostgreSQL;"
	echo "  client: milterload's share of one core (client, milters, PostgreSQL share the $(nproc) cores)."
	echo "tcp-qa: the client acknowledges every TCP segment at once (TCP_QUICKACK). libmilter (OpenDKIM,"
	echo "  pymilter) writes an Authentication-Results insertion and the final answer as two small writes; unless the"
	echo "  milter turns Nagle off on its connections (milterd does, OpenDKIM and pymilter don't),"
	echo "  over plain tcp the second waits for the MTA's delayed ACK (~40 ms), which caps a tcp row"
	echo "  at about connections / 40 ms; tcp-qa shows the same milter without that wait."
	echo "junk: ${R[junk.unix.msgs_per_s]:-?} RCPT refusals/s (reject ${R[junk.unix.reject]:-?}, codes ${R[junk.unix.codes]:-?}; logged unknown_token ${R[junk.unix.unknown]:-?}, each after a token lookup)"
	echo "1000 concurrent connections held for $C1000_SECONDS s (unix socket):"
	c1000_line c1000.milterd milterd
	c1000_line c1000.opendkim opendkim
	printf '%s' "long run: $long_msgs messages in $(awk -v a="$t_long0" -v b="$t_long1" 'BEGIN{printf "%.0f", b-a}') s ($(awk -v n="$long_msgs" -v a="$t_long0" -v b="$t_long1" 'BEGIN{printf "%.0f", n/(b-a)}') msgs/s), errors/unexpected $long_err; VmRSS after each tenth (MB):"
	for r in "${long_rss[@]}"; do printf ' %s' "$(awk -v k="$r" 'BEGIN{printf "%.1f", k/1024}')"; done; echo
	if [ "${#long_rss[@]}" -ge 3 ]; then
		awk -v a="${long_rss[1]}" -v b="${long_rss[${#long_rss[@]}-1]}" -v n="$(( seg * (${#long_rss[@]} - 2) ))" \
			'BEGIN { printf "  growth after the first tenth: %+.1f MB over %d messages (%+.2f KB per 1000)\n", (b-a)/1024, n, n ? (b-a)/n*1000 : 0 }'
	fi
	echo "  VmHWM $(kb_mb "$long_hwm"), threads at end $long_threads, fds at end $long_fds"
	echo "evidence rows by reason: $reasons"
	echo "PostgreSQL: $pg_slow statements over 100 ms (worst ${pg_worst:-0} ms), $pg_waits lock waits over 100 ms ($pg_ext on relation extension)"
	echo "warm-up checks: milterd ${AR[milterd]:-?}; opendkim ${AR[opendkim]:-?}; pyspf-milter ${AR[pyspf-milter]:-?}"
	[ -s "$NOTES" ] && { echo; cat "$NOTES"; }
} >"$result"
echo >&2
cat "$result"
echo "(written to $result)" >&2
bad=0
for k in "${!R[@]}"; do
	case "$k" in
	milterd.*.rc|pair*.milterd.*.rc|junk.*.rc|warmup-verify.rc|c1000.milterd.rc|long.*.rc) [ "${R[$k]}" = 0 ] || bad=1 ;;
	esac
done
exit "$bad"
