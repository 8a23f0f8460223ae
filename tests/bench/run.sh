#!/usr/bin/env bash
# run.sh — `make bench`: what an administrator will see. milterd against OpenDKIM (and
# OpenDKIM + an SPF milter), same client, same corpus, same machine, same run, with
# PostgreSQL as production runs it.
#
# Production-like (the headline, and the only figures the README quotes):
#   - its own PostgreSQL with the server's default durability: fsync, synchronous_commit and
#     full_page_writes on (checked, and printed in the result); tests/lib/pg.sh's fsync=off
#     is not used. The requests table holds BENCH_HISTORY live certifications of other
#     accounts besides the corpus's requests, as a production table holds mostly those.
#   - the workload is first verifications: BENCH_REPLIES pending requests, one signed reply
#     each, delivered once; one message in BENCH_DUP_EVERY (5%) is a copy of a reply
#     delivered 100 messages earlier (already_verified). Before each milterd row the
#     corpus's requests are turned back to pending (after a CHECKPOINT; then VACUUM
#     ANALYZE), so that every reply is again the first for its request.
#   - milterd and OpenDKIM (verify-only) on the same messages, unix socket, at 1, 8 and 32
#     connections, in BENCH_ROUNDS paired rounds (back to back, which goes first
#     alternating; the ratio is taken within each round, the median round quoted).
#   - pgbench -N on the same PostgreSQL (its own database, scale 1) at 1, 8 and 32
#     clients: the database's own reference for the CPU of a transaction.
#   - per row: whole-message and end-of-message latency (p50/p99), CPU per message of
#     milterd, of PostgreSQL and of the client, WAL syncs per message (pg_stat_wal), and
#     the decisions the evidence table got (verified, already_verified, verifications per
#     transaction).
# CPU of PostgreSQL: utime+stime of the postmaster's children before and after a row, plus
# the postmaster's cutime+cstime, where the kernel adds the whole CPU time of each child it
# reaps: a backend or autovacuum worker that exits during the row still counts, in full.
#
# Labelled rows that are not production-like (never the headline):
#   junk          milterd refusing unknown tokens at RCPT, 1, 8 and 32 connections (from its
#                 set of issued tokens, without a lookup, while that set is current)
#   copies only   every reply already verified: the previous headline's workload
#   fsync=off     first verifications with PostgreSQL not flushing (what tests/lib/pg.sh does)
#   active 16     first verifications with active_workers = 16 instead of two per core
#   chain         OpenDKIM then Debian's pyspf-milter, chained (8 connections)
#   c1000         milterd (fresh), then opendkim, under 1000 concurrent connections: peak RSS
#   long          milterd (fresh) over BENCH_LONG_MESSAGES messages (copies): RSS growth
# The table goes to stdout and to tests/bench/results/RESULT-<date>.txt, with the load
# average of the machine before and after (a busy machine skews every row). Exit 1 when a
# milterd run had errors or answers other than expected, or a request did not verify
# exactly once.
#
# Sizes (environment): BENCH_REPLIES (8000 signed replies, one per request), BENCH_HISTORY
# (20000), BENCH_DUP_EVERY (20), BENCH_ROUNDS (3), BENCH_ONE_MESSAGES (1500: the 1-connection
# rows), BENCH_PER_CONNECTION (10 messages per milter connection), BENCH_JUNK (500 junk
# envelopes), BENCH_JUNK_MESSAGES (20000), BENCH_CHAIN_MESSAGES (2000), BENCH_PGBENCH_SECONDS
# (8), BENCH_C1000_SECONDS (15), BENCH_LONG_MESSAGES (100000; BENCH_LONG=1 makes it
# 1,000,000). KEEP_WORK=1 keeps the work directory.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export TOP BUILD="${BUILD:-$TOP/build}"
BENCH="$TOP/tests/bench"
LOAD="${MILTERLOAD:-$BUILD/bench/milterload}"

REPLIES=${BENCH_REPLIES:-8000}
HISTORY=${BENCH_HISTORY:-20000}
DUP_EVERY=${BENCH_DUP_EVERY:-20}
ROUNDS=${BENCH_ROUNDS:-3}
ONE_MESSAGES=${BENCH_ONE_MESSAGES:-1500}
PER=${BENCH_PER_CONNECTION:-10}
JUNK=${BENCH_JUNK:-500}
JUNK_MESSAGES=${BENCH_JUNK_MESSAGES:-20000}
CHAIN_MESSAGES=${BENCH_CHAIN_MESSAGES:-2000}
PGBENCH_SECONDS=${BENCH_PGBENCH_SECONDS:-8}
C1000_SECONDS=${BENCH_C1000_SECONDS:-15}
if [ -n "${BENCH_LONG:-}" ] && [ "${BENCH_LONG}" != 0 ]; then
	LONG_MESSAGES=${BENCH_LONG_MESSAGES:-1000000}
else
	LONG_MESSAGES=${BENCH_LONG_MESSAGES:-100000}
fi
LONG_SEGMENTS=10
CONNS_LIST="1 8 32"

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
BAD=0	# set when a milterd row failed its checks

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
for p in opendkim pyspf-milter python3-cryptography; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		note "note: Debian package $p is not installed (make bench-deps)$([ "$p" = python3-cryptography ] && echo ': the corpus is signed in pure Python, slowly' || echo ': its rows are skipped')"
done
command -v pgbench >/dev/null || note "note: pgbench is not installed (postgresql-contrib): no reference rows"
# 1000 connections: a descriptor per connection in milterd and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] ||
	note "note: descriptor limit $(ulimit -n) is low for 1000 connections"

# The machine may be shared: how busy is it before the bench starts anything?
# The machine's CPU ticks: busy (steal included: time the host gave to other guests), all.
machine() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r b0 t0 < <(machine); sleep 3; read -r b1 t1 < <(machine)
BACKGROUND=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN { printf "%.0f%%", t ? 100 * b / t : 0 }')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

# ------------------------------------------------------------ PostgreSQL
say "PostgreSQL (default durability) and DNS ($WORK)"
# As the tests start it (private, unix socket only), without their fsync=off: the
# server's own defaults for everything that makes a commit durable.
PG_DURABLE=1 pg_start "$WORK" || die "PostgreSQL did not start"
db_reset || die "database reset failed"
# Slow statements and lock waits go to PostgreSQL's log, counted at the end.
psql -d postgres -q -c "ALTER SYSTEM SET log_min_duration_statement = 100" \
	-c "ALTER SYSTEM SET log_lock_waits = on" -c "SELECT pg_reload_conf()" >/dev/null ||
	note "note: cannot set PostgreSQL logging"
pg_setting() { psql -d postgres -Atc "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name) FROM pg_settings WHERE name IN ($1)"; }
DURABILITY=$(pg_setting "'fsync', 'synchronous_commit', 'full_page_writes'")
[ "$DURABILITY" = "fsync=on full_page_writes=on synchronous_commit=on" ] ||
	die "PostgreSQL is not durable as in production: $DURABILITY"
PG_OTHER=$(pg_setting "'server_version', 'wal_sync_method', 'shared_buffers', 'commit_delay', 'checkpoint_timeout', 'max_wal_size'")
PG_FS="$(stat -f -c %T "$PG_DIR/data") on $(df --output=source "$PG_DIR/data" | tail -n 1)"

# A production table holds mostly live certifications: HISTORY of them (other accounts, one
# evidence row each), so that the planner's statistics and the indexes look like one.
# The bench's own statements (this one, the resets, pgbench) stay out of the slow-statement
# count at the end, which is about milterd's.
QUIET_PG="-c log_min_duration_statement=-1"
PGOPTIONS="$QUIET_PG" psql -v ON_ERROR_STOP=1 -q -c "INSERT INTO milterd.requests (account, email, token_hash, state,
		created_at, expires_at, verified_at, valid_until, acknowledged_at)
	SELECT 'agent-' || n, 'agent' || n || '@agri.gouv.fr', sha256(convert_to('history ' || n, 'UTF8')),
		'verified', now() - interval '200 days', now() - interval '193 days',
		now() - interval '199 days', now() + interval '165 days', now() - interval '199 days'
	  FROM generate_series(1, $HISTORY) n" \
	-c "INSERT INTO milterd.evidence (request_id, decided_at, reason, stage, header_from)
	SELECT id, verified_at, 'verified', 'eom', email FROM milterd.requests" \
	-c "VACUUM ANALYZE" >/dev/null || die "history rows failed"

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

# ---------------------------------------------------------------- corpus
say "Corpus: $REPLIES signed replies (one per pending request), $JUNK junk envelopes"
PGOPTIONS="$QUIET_PG" "$BENCH/corpus.sh" "$WORK/corpus" "$REPLIES" "$JUNK" 2>&1 | tee "$WORK/corpus.log" >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "corpus.sh failed"
CORPUS_LINE=$(grep '^corpus:' "$WORK/corpus.log")
REP="$WORK/corpus/replies" JNK="$WORK/corpus/junk" SEQ="$WORK/corpus/sequence"

# The delivery order of the main rows: each reply once, in order; after every DUP_EVERY-1
# of them a copy of the reply delivered 100 before (long answered at 32 connections).
# SEQ/kinds says which is which (F first delivery, D copy), one line per message.
/usr/bin/python3 - "$REP" "$SEQ" "$DUP_EVERY" <<'EOF' || die "cannot write the delivery order"
import os, sys
rep, seq, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(seq)
files, out = sorted(os.listdir(rep)), []
for i, f in enumerate(files):
    out.append(("F", f))
    if every > 1 and (i + 1) % (every - 1) == 0 and i >= 100:
        out.append(("D", files[i - 100]))
with open(os.path.join(seq, "..", "kinds"), "w") as k:
    for n, (kind, f) in enumerate(out, 1):
        os.symlink(os.path.join(rep, f), os.path.join(seq, "%06d.eml" % n))
        k.write(kind + "\n")
EOF
KINDS="$WORK/corpus/kinds"
SEQ_LEN=$(wc -l <"$KINDS")
SEQ_DUPS=$(grep -c D "$KINDS")
fresh_in() { head -n "$1" "$KINDS" | grep -c F; }	# first deliveries among the first N

# The corpus's requests back to pending: every reply is again the first for its request.
# The CHECKPOINT comes first, so that the page images PostgreSQL writes after one are
# taken by this UPDATE, as they are once per checkpoint in a server's steady state.
reset_requests() {
	PGOPTIONS="$QUIET_PG" psql -v ON_ERROR_STOP=1 -q -c "CHECKPOINT" \
		-c "UPDATE milterd.requests SET state = 'pending', verified_at = NULL, attempts = 0,
			valid_until = NULL, ended_at = NULL, acknowledged_at = NULL
		     WHERE account LIKE 'bench-%' AND state <> 'pending'" \
		-c "VACUUM ANALYZE milterd.requests" >/dev/null || die "reset of the requests failed"
}

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

declare -A SOCK=() NAME_OF=()

retry_start() {
	local i
	for i in 1 2 3; do "$@" && return 0; note "note: $2 did not start (try $i)"; done
	die "$2 did not start"
}

_start_milterd() {	# NAME [CONFIG LINES...]
	local name="$1" spec="unix:$WORK/$1.sock"; shift
	# As tests' write_config, with milterd's defaults for the database (pool 8, timeout 5 s)
	# and the log level an installation runs with.
	write_config "$WORK/$name.conf" "socket = $spec" "log_level = info" "db_timeout = 5" "$@"
	"$BUILD/milterd" -f -c "$WORK/$name.conf" 2>>"$WORK/$name.log" &
	PIDS[$name]=$!
	SOCK[$name]=$spec NAME_OF[$spec]=$name
	wait_spec "$spec" "${PIDS[$name]}" || { tail -n 5 "$WORK/$name.log" >&2; stop_one "$name"; return 1; }
}
start_milterd() { retry_start _start_milterd "$@"; }

HAVE_OPENDKIM=; [ -x /usr/sbin/opendkim ] && HAVE_OPENDKIM=1
_start_opendkim() {	# NAME
	local name="$1" spec="unix:$WORK/$1.sock"
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
start_opendkim() { retry_start _start_opendkim "$@"; }

HAVE_PYSPF=; [ -x /usr/bin/pyspf-milter ] && HAVE_PYSPF=1
_start_pyspf() {	# NAME
	local name="$1" dir="$WORK/$1" spec
	mkdir -p "$dir"
	chown pyspf-milter: "$dir" 2>/dev/null	# it drops to that user before binding
	spec="unix:$dir/$name.sock"
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
start_pyspf() { retry_start _start_pyspf "$@"; }

status_of() {	# NAME FIELD: a /proc status field in kB (or count)
	awk -v f="$2:" '$1 == f {print $2}' "/proc/${PIDS[$1]}/status" 2>/dev/null
}

# ------------------------------------------------------------ measuring
declare -A R=()	# R[label.key]=value
HZ=$(getconf CLK_TCK)

ticks() {	# PID...: CPU time (utime + stime, clock ticks) of those processes
	local t=0 p v
	for p in "$@"; do
		v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$(( t + ${v:-0} ))
	done
	echo "$t"
}
# PostgreSQL's CPU so far: its live (and not yet reaped) processes, plus what the kernel
# added to the postmaster's cutime/cstime for each child it reaped. Read again if a child
# was reaped during the reading (it could be counted twice, or not at all).
pg_ticks() {
	local pm a b kids
	pm=$(head -n 1 "$PG_DIR/data/postmaster.pid")
	for _ in 1 2 3 4 5; do
		a=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}')
		# shellcheck disable=SC2046
		kids=$(ticks $(pgrep -P "$pm"))
		b=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}')
		[ "$a" = "$b" ] && break
	done
	echo $(( b + kids ))
}
wal_syncs() { psql -d postgres -Atc "SELECT wal_sync FROM pg_stat_wal"; }
evidence_top() { pg_psql "SELECT coalesce(max(id), 0) FROM milterd.evidence"; }
per_msg() {	# TICKS MESSAGES: CPU ms per message
	awk -v t="${1:-0}" -v n="${2:-0}" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.3f", t / hz * 1000 / n; else printf "-" }'
}

# snap_begin LABEL PID... / snap_end LABEL: CPU of those processes and of PostgreSQL, WAL
# syncs and evidence rows, across a row. A busy backend reports its statistics
# (pg_stat_wal) at most once a second, and the rest 10 s after it went idle: up to a
# second of a row's WAL syncs can land in the next row's count, unless SETTLE=11 waits
# for them before and after the row (the copies and junk rows the targets quote).
SETTLE=1.2
snap_begin() {
	local l="$1"; shift
	SNAP_PIDS=("$@")
	[ "$SETTLE" = 1.2 ] || sleep "$SETTLE"
	R[$l.srv0]=$(ticks "$@") R[$l.db0]=$(pg_ticks) R[$l.wal0]=$(wal_syncs) R[$l.ev0]=$(evidence_top)
	read -r R[$l.busy0] R[$l.all0] < <(machine)
	R[$l.dns0]=$(ticks "$DNS_PID")
}
snap_end() {
	local l="$1" line
	sleep "$SETTLE"
	R[$l.srv_ticks]=$(( $(ticks "${SNAP_PIDS[@]}") - R[$l.srv0] ))
	R[$l.db_ticks]=$(( $(pg_ticks) - R[$l.db0] ))
	R[$l.wal]=$(( $(wal_syncs) - R[$l.wal0] ))
	read -r R[$l.busy] R[$l.all] < <(machine)
	R[$l.busy]=$(( R[$l.busy] - R[$l.busy0] )) R[$l.all]=$(( R[$l.all] - R[$l.all0] ))
	R[$l.dns]=$(( $(ticks "$DNS_PID") - R[$l.dns0] ))
	line=$(pg_psql "SELECT count(*) FILTER (WHERE reason = 'verified'),
		count(*) FILTER (WHERE reason = 'already_verified'),
		count(*) FILTER (WHERE reason NOT IN ('verified', 'already_verified')),
		count(DISTINCT decided_at) FILTER (WHERE reason = 'verified')
		FROM milterd.evidence WHERE id > ${R[$l.ev0]}")
	IFS='|' read -r R[$l.verified] R[$l.copies] R[$l.refused] R[$l.vtx] <<<"$line"
}

# load LABEL EXPECT CORPUS CONNECTIONS MESSAGES SOCKET... [-- extra milterload options]
load() {
	local label="$1" expect="$2" corpus="$3" conns="$4" messages="$5" rc line kv; shift 5
	local socks=() extra=() srv=() i
	while [ $# -gt 0 ] && [ "$1" != -- ]; do socks+=(--socket "$1"); shift; done
	[ "${1:-}" = -- ] && { shift; extra=("$@"); }
	for ((i = 1; i < ${#socks[@]}; i += 2)); do srv+=("${PIDS[${NAME_OF[${socks[i]}]}]}"); done
	snap_begin "$label" "${srv[@]}"
	"$LOAD" "${socks[@]}" --corpus "$corpus" --label "$label" --expect "$expect" \
		--connections "$conns" --messages-per-connection "$PER" --messages "$messages" \
		-v "${extra[@]}" >"$WORK/$label.out" 2>"$WORK/$label.err"
	rc=$?
	snap_end "$label"
	sed 's/^/    /' "$WORK/$label.out" | sed -n '3,6p' >&2
	[ -s "$WORK/$label.err" ] && sed 's/^/    client: /' "$WORK/$label.err" | head -n 8 >&2
	line=$(grep '^milterload ' "$WORK/$label.out")
	for kv in $line; do
		case "$kv" in *=*) R[$label.${kv%%=*}]=${kv#*=} ;; esac
	done
	R[$label.rc]=$rc
	[ "$rc" = 0 ] || note "note: $label: milterload exit $rc (errors=${R[$label.errors]:-?} unexpected=${R[$label.unexpected]:-?}, codes ${R[$label.codes]:-?})"
	return 0
}
milterd_ok() {	# LABEL: a milterd row must not fail
	[ "${R[$1.rc]:-1}" = 0 ] || BAD=1
}

# first LABEL NAME CONNECTIONS MESSAGES: first verifications on milterd NAME (after a reset);
# each request delivered in the row must verify exactly once.
first() {
	local label="$1" name="$2" conns="$3" n="$4" want g0
	reset_requests
	g0=$(group_metrics "$MPORT")
	load "$label" accept "$SEQ" "$conns" "$n" "${SOCK[$name]}"
	R[$label.group]="$g0 $(group_metrics "$MPORT")"
	milterd_ok "$label"
	want=$(fresh_in "${R[$label.messages]:-0}")
	if [ "${R[$label.verified]:-}" != "$want" ]; then
		note "note: $label: ${R[$label.verified]:-?} requests verified for $want first deliveries (exactly once?)"
		BAD=1
	fi
}

# AR: of the Authentication-Results headers a milter added in a warm-up (--print-headers),
# how many say PATTERN; a note unless all do.
declare -A AR=()
ar_check() {	# LABEL WHO PATTERN [MILTER]
	local all pass sel="milter ${4:-0} [a-z]* header: Authentication-Results:"
	all=$(grep -c -- "$sel" "$WORK/$1.err")
	pass=$(grep -- "$sel" "$WORK/$1.err" | grep -c -- "$3")
	AR[$2]="$pass of $all Authentication-Results with $3"
	[ "$all" -gt 0 ] && [ "$pass" = "$all" ] ||
		note "note: $2: ${AR[$2]}; e.g. $(grep -- "$sel" "$WORK/$1.err" | grep -v -m1 -- "$3")"
}

# ------------------------------------------------------- production-like
say "milterd and opendkim: first verifications, $ROUNDS paired rounds at $CONNS_LIST connections"
MPORT=$(free_port)
start_milterd milterd "stats_listen = 127.0.0.1:$MPORT"
# Warm-up (DNS caches, PostgreSQL connections): 200 first verifications, whose
# Authentication-Results show the DKIM checks passed; the reset before each row undoes them.
load warmup-milterd accept "$SEQ" 8 200 "${SOCK[milterd]}" -- --print-headers 200
ar_check warmup-milterd milterd 'dkim=pass'
if [ -n "$HAVE_OPENDKIM" ]; then
	start_opendkim opendkim
	load warmup-opendkim mixed "$SEQ" 8 500 "${SOCK[opendkim]}" -- --print-headers 500
	ar_check warmup-opendkim opendkim 'dkim=pass'
fi
for c in $CONNS_LIST; do
	n=$SEQ_LEN; [ "$c" = 1 ] && n=$ONE_MESSAGES
	for i in $(seq 1 "$ROUNDS"); do
		if [ $((i % 2)) = 1 ] || [ -z "$HAVE_OPENDKIM" ]; then
			first "fv.$c.$i" milterd "$c" "$n"
			[ -n "$HAVE_OPENDKIM" ] && load "od.$c.$i" accept "$SEQ" "$c" "$n" "${SOCK[opendkim]}"
		else
			load "od.$c.$i" accept "$SEQ" "$c" "$n" "${SOCK[opendkim]}"
			first "fv.$c.$i" milterd "$c" "$n"
		fi
	done
done

# The database's own reference: pgbench -N (an UPDATE, a SELECT, an INSERT, a commit per
# transaction, simple protocol, as pgbench runs by default) on the same server.
if command -v pgbench >/dev/null; then
	say "pgbench -N on the same PostgreSQL: $CONNS_LIST clients, $PGBENCH_SECONDS s each"
	export PGOPTIONS="$QUIET_PG"
	psql -d postgres -qc "CREATE DATABASE pgbench" >/dev/null &&
		pgbench -i -s 1 -q pgbench >"$WORK/pgbench-init.log" 2>&1 ||
		note "note: pgbench -i failed: $(tail -n 2 "$WORK/pgbench-init.log" | tr '\n' ' ')"
	for c in $CONNS_LIST; do
		l="pgb.$c"
		psql -d pgbench -qc "CHECKPOINT" -c "VACUUM ANALYZE" >/dev/null
		snap_begin "$l"
		pgbench -n -N -c "$c" -j "$(( c < 2 ? 1 : 2 ))" -T "$PGBENCH_SECONDS" pgbench \
			>"$WORK/$l.out" 2>&1 || note "note: $l: pgbench failed: $(tail -n 2 "$WORK/$l.out" | tr '\n' ' ')"
		snap_end "$l"
		R[$l.tx]=$(awk '/number of transactions actually processed/ {split($6, a, "/"); print a[1]}' "$WORK/$l.out")
		R[$l.tps]=$(grep -o 'tps = [0-9.]*' "$WORK/$l.out" | head -n 1 | awk '{printf "%.0f", $3}')
		R[$l.lat]=$(grep -o 'latency average = [0-9.]* ms' "$WORK/$l.out" | awk '{print $4}')
		echo "    $l: ${R[$l.tps]:-?} tps, PostgreSQL $(per_msg "${R[$l.db_ticks]}" "${R[$l.tx]:-0}") ms CPU per transaction" >&2
	done
	unset PGOPTIONS
fi

# ------------------------------------------------------ labelled, not production-like
say "junk: unknown tokens refused at RCPT"
jlog="$WORK/milterd.log"
spared() {	# refusals milterd took from its set of issued tokens, without a lookup
	metrics "$MPORT" | awk '$1 == "milterd_token_filter_refusals_total" {print $2}'
}
for c in $CONNS_LIST; do
	j0=$(wc -l <"$jlog"); n=$JUNK_MESSAGES; [ "$c" = 1 ] && n=$(( JUNK_MESSAGES / 4 ))
	[ "$c" = 32 ] && SETTLE=11
	s0=$(spared)
	load "junk.$c" reject "$JNK" "$c" "$n" "${SOCK[milterd]}" -- --rcpt-only
	R[junk.$c.fromset]=$(( $(spared) - ${s0:-0} ))
	SETTLE=1.2
	milterd_ok "junk.$c"
	# Each refusal must be the database's answer (unknown_token), not a cheaper one.
	R[junk.$c.unknown]=$(tail -n +"$((j0 + 1))" "$jlog" | grep -c 'reason=unknown_token reply=550')
	[ "${R[junk.$c.unknown]}" = "${R[junk.$c.reject]:-x}" ] || {
		note "note: junk.$c: ${R[junk.$c.unknown]} of ${R[junk.$c.reject]:-?} refusals logged as unknown_token"
		BAD=1
	}
done

# The last production-like row verified every request: each delivery now is a copy.
say "copies only: every reply already verified (the previous headline's workload)"
SETTLE=11
load copies.32 accept "$SEQ" 32 "$SEQ_LEN" "${SOCK[milterd]}"
SETTLE=1.2
milterd_ok copies.32
[ "${R[copies.32.verified]:-x}" = 0 ] || { note "note: copies.32: ${R[copies.32.verified]:-?} requests verified by copies"; BAD=1; }

say "first verifications with active_workers = 16 (default: two per core)"
start_milterd milterd-a16 "active_workers = 16"
load warmup-a16 accept "$SEQ" 8 100 "${SOCK[milterd-a16]}"
first a16.32 milterd-a16 32 "$SEQ_LEN"
stop_one milterd-a16

say "first verifications with fsync=off (as tests/lib/pg.sh runs PostgreSQL)"
psql -d postgres -qc "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
R[nofsync.setting]=$(psql -d postgres -Atc "SHOW fsync")
first nofsync.32 milterd 32 "$SEQ_LEN"
psql -d postgres -qc "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
[ "$(psql -d postgres -Atc 'SHOW fsync')" = on ] || die "fsync did not come back on"

if [ -n "$HAVE_OPENDKIM" ] && [ -n "$HAVE_PYSPF" ]; then
	say "opendkim + pyspf-milter chained, 8 connections"
	start_pyspf pyspf
	load warmup-chain mixed "$SEQ" 8 200 "${SOCK[opendkim]}" "${SOCK[pyspf]}" -- --print-headers 400
	ar_check warmup-chain pyspf-milter 'spf=pass' 1
	load chain.8 accept "$SEQ" 8 "$CHAIN_MESSAGES" "${SOCK[opendkim]}" "${SOCK[pyspf]}"
	stop_one pyspf
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
	load "$label" accept "$REP" 1000 0 "${SOCK[$name]}" -- --duration "$C1000_SECONDS" \
		--messages-per-connection 1000000000
	touch "$WORK/$label.done"; wait "$sampler"
	read -r C1K[$label.threads] C1K[$label.rss] C1K[$label.fds] <"$WORK/$label.sample"
	C1K[$label.hwm]=$(status_of "$name" VmHWM)
	kill -0 "$pid" 2>/dev/null || note "note: $name died under 1000 connections: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ')"
	stop_one "$name"
}

say "milterd under 1000 concurrent connections (fresh process; copies)"
start_milterd milterd-c1000
c1000 milterd-c1000 c1000.milterd
milterd_ok c1000.milterd
if [ -n "$HAVE_OPENDKIM" ]; then
	say "opendkim under 1000 concurrent connections (fresh process)"
	start_opendkim opendkim-c1000
	c1000 opendkim-c1000 c1000.opendkim
fi

say "milterd long run: $LONG_MESSAGES messages (fresh process; copies), RSS after each tenth"
start_milterd milterd-long
long_rss=()
seg=$(( LONG_MESSAGES / LONG_SEGMENTS ))
long_msgs=0 long_err=0 long_secs=0
for i in $(seq 1 "$LONG_SEGMENTS"); do
	load "long.$i" accept "$REP" 20 "$seg" "${SOCK[milterd-long]}"
	milterd_ok "long.$i"
	long_rss+=("$(status_of milterd-long VmRSS)")
	long_msgs=$(( long_msgs + ${R[long.$i.messages]:-0} ))
	long_secs=$(awk -v a="$long_secs" -v b="${R[long.$i.seconds]:-0}" 'BEGIN { print a + b }')
	long_err=$(( long_err + ${R[long.$i.errors]:-0} + ${R[long.$i.unexpected]:-0} ))
	kill -0 "${PIDS[milterd-long]}" 2>/dev/null || { note "note: milterd died during the long run (segment $i)"; BAD=1; break; }
done
long_hwm=$(status_of milterd-long VmHWM)
long_fds=$(ls "/proc/${PIDS[milterd-long]}/fd" 2>/dev/null | wc -l)
long_threads=$(status_of milterd-long Threads)

# -------------------------------------------------------------- evidence
for n in milterd milterd-long; do
	kill -0 "${PIDS[$n]:-0}" 2>/dev/null || { note "note: $n is not running at the end (crash?): $(tail -n 3 "$WORK/$n.log" | tr '\n' ' ')"; BAD=1; }
done
reasons=$(pg_psql "SELECT string_agg(reason || ' ' || n, ', ' ORDER BY n DESC) FROM
	(SELECT reason, count(*) n FROM milterd.evidence WHERE header_from NOT LIKE 'agent%' OR header_from IS NULL GROUP BY reason) x")
warnings=$(cat "$WORK"/milterd*.log | grep -c -E ' (warning|err|crit|alert|emerg)[: ]|reason=temporary')
[ "$warnings" -gt 0 ] && note "note: milterd logged $warnings warning/error/temporary lines, e.g.: $(cat "$WORK"/milterd*.log | grep -E ' (warning|err|crit)[: ]|reason=temporary' | head -n 3 | tr '\n' ' ')"
pg_slow=$(grep -c 'LOG:  duration: ' "$PG_DIR/server.log")
pg_waits=$(grep -c 'still waiting for' "$PG_DIR/server.log")
pg_worst=$(grep -o 'LOG:  duration: [0-9.]* ms' "$PG_DIR/server.log" | awk '{print $3}' | sort -n | tail -n 1)
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(date +%s)

# ----------------------------------------------------------------- table
r1() { awk -v v="$1" 'BEGIN { printf (v < 10 ? "%.2f" : "%.1f"), v }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
sum() { local s=0 v; for v in "$@"; do s=$(( s + ${v:-0} )); done; echo "$s"; }
labels_of() { local i; for i in $(seq 1 "$ROUNDS"); do [ -n "${R[$1.$i.messages]:-}" ] && echo "$1.$i"; done; }
vals() { local key="$1" l; shift; for l in "$@"; do echo "${R[$l.$key]:-}"; done; }

# others LABEL...: the share of the machine's CPU that other processes took during those
# rows (busy ticks, steal included, less the milter's, PostgreSQL's, the DNS server's and
# the client's).
others() {
	local l b=0 a=0 ours=0
	for l in "$@"; do
		b=$(( b + ${R[$l.busy]:-0} )) a=$(( a + ${R[$l.all]:-0} ))
		ours=$(awk -v o="$ours" -v s="${R[$l.srv_ticks]:-0}" -v d="${R[$l.db_ticks]:-0}" \
			-v u="${R[$l.dns]:-0}" -v c="${R[$l.client_cpu_s]:-0}" -v hz="$HZ" \
			'BEGIN { print o + s + d + u + c * hz }')
	done
	awk -v b="$b" -v a="$a" -v o="$ours" 'BEGIN { if (a > 0) printf "%.0f%%", 100 * (b - o > 0 ? b - o : 0) / a; else printf "-" }'
}
# cpu LABEL...: milter + PostgreSQL + client CPU per message over those rows
cpu() {
	local msgs
	msgs=$(sum $(vals messages "$@"))
	awk -v s="$(sum $(vals srv_ticks "$@"))" -v d="$(sum $(vals db_ticks "$@"))" -v n="$msgs" \
		-v c="$(vals client_cpu_s "$@" | awk '{t += $1} END {print t + 0}')" -v hz="$HZ" \
		'BEGIN { if (n > 0) printf "%.3f", ((s + d) / hz + c) * 1000 / n; else printf "-" }'
}

# agg PREFIX WHO CONNS: one line for the rounds PREFIX.1..ROUNDS: median msgs/s and
# latencies, CPU per message over all the rounds' messages.
FMT='%-5s %-26s %8s %7s %7s %7s %8s %7s %6s %6s %6s %6s %-15s\n'
agg() {
	local p="$1" ls
	mapfile -t ls < <(labels_of "$p")
	if [ "${#ls[@]}" = 0 ]; then printf "$FMT" "$3" "$2" - - - - - - - - - - -; return; fi
	line "$2" "$3" "$(median $(vals msgs_per_s "${ls[@]}"))" "$(median $(vals msg_p50_ms "${ls[@]}"))" \
		"$(median $(vals msg_p99_ms "${ls[@]}"))" "$(median $(vals p99_ms "${ls[@]}"))" "${ls[@]}"
}
# row LABEL WHO CONNS: one measured row, same columns.
row() {
	local l="$1"
	if [ -z "${R[$l.messages]:-}" ]; then printf "$FMT" "$3" "$2" - - - - - - - - - - -; return; fi
	line "$2" "$3" "${R[$l.msgs_per_s]}" "${R[$l.msg_p50_ms]}" "${R[$l.msg_p99_ms]}" "${R[$l.p99_ms]}" "$l"
}
line() {	# WHO CONNS MSGS/S MSG_P50 MSG_P99 EOM_P99 LABEL...
	local who="$1" c="$2" rate="$3" m50="$4" m99="$5" e99="$6" msgs v t; shift 6
	msgs=$(sum $(vals messages "$@"))
	v=$(sum $(vals verified "$@")) t=$(sum $(vals vtx "$@"))
	printf "$FMT" "$c" "$who" "$rate" "$(r1 "$m50")" "$(r1 "$m99")" "$(r1 "$e99")" \
		"$(per_msg "$(sum $(vals srv_ticks "$@"))" "$msgs")" "$(per_msg "$(sum $(vals db_ticks "$@"))" "$msgs")" \
		"$(awk -v c="$(vals client_cpu_s "$@" | awk '{s += $1} END {print s + 0}')" -v n="$msgs" 'BEGIN { printf "%.3f", n ? c * 1000 / n : 0 }')" \
		"$(awk -v w="$(sum $(vals wal "$@"))" -v n="$msgs" 'BEGIN { printf "%.2f", n ? w / n : 0 }')" \
		"$(others "$@")" "$(( $(sum $(vals errors "$@")) + $(sum $(vals unexpected "$@")) ))" \
		"$( [ "$(( v + $(sum $(vals copies "$@")) ))" -gt 0 ] && echo "$v/$(sum $(vals copies "$@")) x$(awk -v v="$v" -v t="$t" 'BEGIN { printf "%.1f", t ? v / t : 0 }')")"
}
# pairs C: "ratios a b c, median m"
pairs() {
	local i rs=()
	for i in $(seq 1 "$ROUNDS"); do
		[ -n "${R[fv.$1.$i.msgs_per_s]:-}" ] && [ -n "${R[od.$1.$i.msgs_per_s]:-}" ] || continue
		rs+=("$(ratio "${R[fv.$1.$i.msgs_per_s]}" "${R[od.$1.$i.msgs_per_s]}")")
	done
	[ "${#rs[@]}" -gt 0 ] || { echo "-"; return; }
	echo "$(median "${rs[@]}") (rounds ${rs[*]})"
}
# PostgreSQL CPU per first verification (all of its CPU in the rows, copies' included,
# over the requests verified), and per pgbench transaction.
pg_per_verification() {
	local ls; mapfile -t ls < <(labels_of "fv.$1")
	per_msg "$(sum $(vals db_ticks "${ls[@]}"))" "$(sum $(vals verified "${ls[@]}"))"
}
pg_per_tx() { per_msg "${R[pgb.$1.db_ticks]:-0}" "${R[pgb.$1.tx]:-0}"; }
# group_line C: milterd's group commit in the rows fv.C.* (its metrics before and after
# each row): per group, the leader's gather, write and durable times; per verification,
# its time from queueing to its result.
group_line() {
	local ls; mapfile -t ls < <(labels_of "fv.$1")
	vals group "${ls[@]}" | awk -v c="$1" '
		NF == 12 { for (i = 1; i <= 6; i++) d[i] += $(i + 6) - $i }
		END {
			if (!d[1] || !d[2]) { print "  " c ": -"; exit }
			printf "  %s: %.1f verifications per group; per group gather %.2f, write %.2f, durable %.2f ms;" \
				" a verification %.2f ms in the group commit\n", c, d[2] / d[1], d[3] / d[1] / 1000,
				d[4] / d[1] / 1000, d[5] / d[1] / 1000, d[6] / d[2] / 1000 }'
}
kb_mb() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "-" || v == "") print "not measured"; else if ((op == ">=" && v + 0 >= t) || (op == "<=" && v + 0 <= t)) print "met"; else print "MISSED" }'; }
c1000_line() {	# LABEL WHO
	local l="$1"
	[ -n "${R[$l.messages]:-}" ] || return 0
	echo "  $2: ${R[$l.messages]} messages, ${R[$l.msgs_per_s]} msgs/s, errors ${R[$l.errors]};" \
		"RSS idle $(kb_mb "${C1K[$l.rss0]}"), peak VmHWM $(kb_mb "${C1K[$l.hwm]}"), threads up to ${C1K[$l.threads]}, descriptors up to ${C1K[$l.fds]}"
}

mkdir -p "$BENCH/results"
stamp=$(date +%Y-%m-%dT%H%M%S)
result="$BENCH/results/RESULT-$stamp.txt"
{
	echo "milterd benchmark — $(date -R)"
	echo "CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores;" \
		"memory $(awk '/^MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo);" \
		"$(uname -sr); commit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)$(git -C "$TOP" diff --quiet HEAD 2>/dev/null || echo '+changes')"
	echo "machine: load average $LOADAVG before the bench (CPU busy $BACKGROUND), $LOADAVG_END at its end;" \
		"$(( T_END - T_START )) s; processes outside the bench took $(others $(for c in $CONNS_LIST; do labels_of "fv.$c"; labels_of "od.$c"; done))"
	echo "  of the CPU during the production-like rows (column 'other procs'): every msgs/s figure is what was left."
	echo "PostgreSQL: $DURABILITY; $PG_OTHER; data on $PG_FS"
	echo "milterd: defaults (db_pool_size 8, db_timeout 5, workers 16, active_workers two per core), log_level info;" \
		"opendkim $(dpkg-query -W -f='${Version}' opendkim 2>/dev/null) verify-only;" \
		"pyspf-milter $(dpkg-query -W -f='${Version}' pyspf-milter 2>/dev/null)"
	echo "$CORPUS_LINE"
	echo "requests table: the corpus's requests and $HISTORY live certifications of other accounts"
	echo "workload: $SEQ_LEN messages, each of the $REPLIES replies once and $SEQ_DUPS copies (one in $DUP_EVERY) of a reply"
	echo "  delivered 100 messages before; every request pending again before each milterd row."
	echo "client: milterload over the unix socket, $PER messages per milter connection;" \
		"1-connection rows $ONE_MESSAGES messages, others $SEQ_LEN; median of $ROUNDS rounds"
	echo
	echo "PRODUCTION-LIKE: first verifications, PostgreSQL durable (fsync, synchronous_commit, full_page_writes on)"
	printf "$FMT" "" "" "" "msg" "msg" "eom" "milter" "PgSQL" "client" "WAL" "other" "" "verified/"
	printf "$FMT" conns system "msgs/s" "p50 ms" "p99 ms" "p99 ms" "ms/msg" "ms/msg" "ms/msg" "syncs" "procs" errors "copies xgroup"
	for c in $CONNS_LIST; do
		agg "fv.$c" "milterd (full decision)" "$c"
		agg "od.$c" "opendkim (verify only)" "$c"
	done
	echo
	echo "ratio milterd / opendkim, msgs/s (median of the paired rounds):"
	for c in $CONNS_LIST; do echo "  $c connection(s): $(pairs "$c")"; done
	echo "CPU per message, milter + PostgreSQL + client, and the ratio the cores would allow if the"
	echo "  bench had them to itself (opendkim's CPU per message over milterd's):"
	for c in $CONNS_LIST; do
		echo "  $c: milterd $(cpu $(labels_of "fv.$c")) ms, opendkim $(cpu $(labels_of "od.$c")) ms:" \
			"$(ratio "$(cpu $(labels_of "od.$c"))" "$(cpu $(labels_of "fv.$c"))")"
	done
	if [ -n "${R[pgb.1.tx]:-}" ]; then
		echo "pgbench -N on the same PostgreSQL (scale 1, simple protocol, $PGBENCH_SECONDS s):"
		for c in $CONNS_LIST; do
			echo "  $c client(s): ${R[pgb.$c.tps]:-?} tps, latency ${R[pgb.$c.lat]:-?} ms," \
				"PostgreSQL $(pg_per_tx "$c") ms CPU and $(awk -v w="${R[pgb.$c.wal]:-0}" -v n="${R[pgb.$c.tx]:-0}" 'BEGIN { printf "%.2f", n ? w / n : 0 }') WAL syncs per transaction"
		done
	fi
	echo "PostgreSQL CPU per first verification (all of its CPU in the rows over the requests verified)"
	echo "  and its ratio to a pgbench -N transaction at as many clients:"
	for c in $CONNS_LIST; do
		echo "  $c: $(pg_per_verification "$c") ms, $(ratio "$(pg_per_verification "$c")" "$(pg_per_tx "$c")") x pgbench -N"
	done
	echo "milterd's group commit (milterd_group_* metrics, all rounds): the leader's time per group"
	echo "  gathering the verifications still to come, writing the group, waiting for its flush;"
	echo "  a verification's time from queueing to its result (compare the msg p50):"
	for c in $CONNS_LIST; do group_line "$c"; done
	echo
	echo "NOT PRODUCTION-LIKE (labelled; never the headline):"
	printf "$FMT" conns system "msgs/s" "p50 ms" "p99 ms" "p99 ms" "ms/msg" "ms/msg" "ms/msg" "syncs" "procs" errors "copies xgroup"
	for c in $CONNS_LIST; do row "junk.$c" "milterd junk RCPT refusals" "$c"; done
	row copies.32 "milterd, copies only" 32
	row a16.32 "milterd, active_workers 16" 32
	row nofsync.32 "milterd, fsync=${R[nofsync.setting]:-?}" 32
	row chain.8 "opendkim + pyspf-milter" 8
	echo
	printf '%s' "junk refused from milterd's set of issued tokens, without a lookup:"
	for c in $CONNS_LIST; do printf ' %s of %s at %s;' "${R[junk.$c.fromset]:-?}" "${R[junk.$c.reject]:-?}" "$c"; done
	echo " the rest were looked up (the set not current)."
	echo "msg: the whole message, from MAIL (CONNECT for a connection's first) to the final answer; eom:"
	echo "  from the EOM command (for junk: the RCPT answer). milterd takes the no-reply flags for headers"
	echo "  and body, so their work lands in its eom time: compare milters on msg."
	echo "milter / PgSQL / client ms/msg: CPU per message of the milter process(es), of PostgreSQL (every"
	echo "  process of the server, exited ones included), of milterload; all share the $(nproc) cores."
	echo "other procs: the share of the machine's CPU (steal included) that processes outside the bench"
	echo "  took during the row: what the row's milter, PostgreSQL and client could not have."
	echo "WAL syncs: pg_stat_wal.wal_sync per message, the walwriter's included (it flushes"
	echo "  asynchronous commits every 200 ms at most); up to a second of a row's count can land in"
	echo "  the next row's (the copies and junk rows wait 11 s for it). verified/copies: evidence rows verified and"
	echo "  already_verified; xgroup: verifications per transaction (milterd commits those of"
	echo "  concurrent workers together)."
	echo
	echo "targets (production-like rows):"
	for c in 8 32; do
		v=$(pairs "$c" | cut -d' ' -f1)
		echo "  full decision >= 2 x opendkim verify-only at $c connections: $v -> $(verdict "$v" '>=' 2)"
	done
	for c in 8 32; do
		v=$(ratio "$(pg_per_verification "$c")" "$(pg_per_tx "$c")")
		echo "  PostgreSQL CPU per first verification <= 0.75 x pgbench -N transaction at $c: $v -> $(verdict "$v" '<=' 0.75)"
	done
	echo "  a refusal or copy waits for no synchronous commit: WAL syncs (walwriter's) per copy" \
		"$(awk -v w="${R[copies.32.wal]:-0}" -v n="${R[copies.32.messages]:-0}" 'BEGIN { printf "%.3f", n ? w / n : 0 }')," \
		"per junk refusal $(awk -v w="${R[junk.32.wal]:-0}" -v n="${R[junk.32.messages]:-0}" 'BEGIN { printf "%.3f", n ? w / n : 0 }')" \
		"(a verification: $(awk -v w="$(sum $(vals wal $(labels_of fv.32)))" -v n="$(sum $(vals verified $(labels_of fv.32)))" 'BEGIN { printf "%.2f", n ? w / n : 0 }'))"
	v=$(median $(vals msg_p99_ms $(labels_of fv.32)))
	echo "  whole-message p99 <= 20 ms at 32 connections: $(r1 "$v") ms -> $(verdict "$v" '<=' 20)"
	echo "  junk >= 20,000 refusals/s: ${R[junk.32.msgs_per_s]:-?} at 32, ${R[junk.8.msgs_per_s]:-?} at 8 -> $(verdict "${R[junk.32.msgs_per_s]:-}" '>=' 20000)"
	echo "  1000 connections under 64 MB: VmHWM $(kb_mb "${C1K[c1000.milterd.hwm]:-}") -> $(verdict "${C1K[c1000.milterd.hwm]:-}" '<=' 65536)"
	echo
	echo "1000 concurrent connections held for $C1000_SECONDS s (unix socket; copies):"
	c1000_line c1000.milterd milterd
	c1000_line c1000.opendkim opendkim
	printf '%s' "long run (copies): $long_msgs messages in $(awk -v s="$long_secs" 'BEGIN{printf "%.0f", s}') s of load ($(awk -v n="$long_msgs" -v s="$long_secs" 'BEGIN{printf "%.0f", s ? n/s : 0}') msgs/s), errors/unexpected $long_err; VmRSS after each tenth (MB):"
	for r in "${long_rss[@]}"; do printf ' %s' "$(awk -v k="$r" 'BEGIN{printf "%.1f", k/1024}')"; done; echo
	if [ "${#long_rss[@]}" -ge 3 ]; then
		awk -v a="${long_rss[1]}" -v b="${long_rss[${#long_rss[@]}-1]}" -v n="$(( seg * (${#long_rss[@]} - 2) ))" \
			'BEGIN { printf "  growth after the first tenth: %+.1f MB over %d messages (%+.2f KB per 1000)\n", (b-a)/1024, n, n ? (b-a)/n*1000 : 0 }'
	fi
	echo "  VmHWM $(kb_mb "$long_hwm"), threads at end $long_threads, fds at end $long_fds"
	echo "evidence rows by reason (the bench's, history aside): $reasons"
	echo "PostgreSQL: $pg_slow statements over 100 ms (worst ${pg_worst:-0} ms), $pg_waits lock waits over 1 s"
	echo "warm-up checks: milterd ${AR[milterd]:-?}; opendkim ${AR[opendkim]:-?}; pyspf-milter ${AR[pyspf-milter]:-?}"
	[ -s "$NOTES" ] && { echo; cat "$NOTES"; }
} >"$result"
echo >&2
cat "$result"
echo "(written to $result)" >&2
exit "$BAD"
