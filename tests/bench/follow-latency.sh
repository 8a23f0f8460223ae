#!/usr/bin/env bash
# follow-latency.sh — `make bench-follow`: how soon `milterctl follow` starts the backend's
# program after milterd answers 250 to a verifying reply.
#
# Its own PostgreSQL with the server's default durability (fsync on, synchronous_commit
# on: tests/lib/pg.sh turns fsync off, which would flatter the commit), the test DNS
# server, a corpus of DKIM-signed replies (corpus.sh), milterd, and one follower whose
# program records its start time ($EPOCHREALTIME, once bash has started) and exits 0.
# Each reply is delivered by miltertest (message.lua, as the integration tests do),
# FOLLOW_PARALLEL at a time (default 1: one after the other, with a random pause of
# 0-90 ms between, so that they land at every phase of the follower's work).
#
# The 250 is sent between two instants the bench knows: the request's verified_at (the
# start of milterd's verifying transaction, before its commit) and the end of the
# miltertest process that got the 250. So for each reply
#   start - verified_at    an upper bound of the latency (the figure quoted)
#   start - client exit    a lower bound
# p50, p99 and max of both go to stdout and to results/FOLLOW-<date>.txt.
#
# Environment: FOLLOW_REPLIES (200), FOLLOW_PARALLEL (1), KEEP_WORK=1 keeps the work directory.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export TOP BUILD="${BUILD:-$TOP/build}"
BENCH="$TOP/tests/bench"
N=${FOLLOW_REPLIES:-200}
P=${FOLLOW_PARALLEL:-1}

WORK=$(mktemp -d /tmp/milterd-follow-bench.XXXXXX)
export WORK
chmod 755 "$WORK"
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
. "$TOP/tests/lib/dns.sh"
export MILTERD_SQLDIR="$TOP/milterd/sql"
FOLLOW_PID=

cleanup() {
	[ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null && wait "$FOLLOW_PID" 2>/dev/null
	milterd_stop
	dns_stop 2>/dev/null
	pg_stop
	if [ -n "${KEEP_WORK:-}" ]; then echo "(kept $WORK)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "follow-latency: $*" >&2; exit 1; }

[ -x "$BUILD/milterd" ] && [ -x "$BUILD/milterctl" ] || die "build milterd first (make)"
command -v miltertest >/dev/null || die "miltertest missing (make deps)"

# PostgreSQL as the tests start it (private, unix socket only), but durable: no fsync=off.
PG_DURABLE=1 pg_start "$WORK" || die "PostgreSQL did not start"
db_reset || die "database reset failed"
PG_SETTINGS=$(psql -d postgres -Atc "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name)
	FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version')")
PG_FS=$(stat -f -c %T "$PG_DIR/data")

# DNS and SPF as run.sh publishes them for the corpus's relays.
dns_add_record 'agri.gouv.fr. 60 IN TXT "v=spf1 ip4:192.0.2.0/25 -all"'
dns_add_record 'interieur.gouv.fr. 60 IN TXT "v=spf1 ip4:192.0.2.0/25 ip4:198.51.100.0/24 -all"'
dns_add_record 'smtp.rie.gouv.fr. 60 IN TXT "v=spf1 ip4:192.0.2.0/25 -all"'
dns_add_record 'smtp.rie.gouv.fr. 60 IN A 192.0.2.1'
mkdir -p "$WORK/dns"
dns_start "$WORK/dns" || die "unbound did not start"
export DNS_SPEC DNS_KEYS DNS_PORT

"$BENCH/corpus.sh" "$WORK/corpus" "$N" 0 >"$WORK/corpus.log" 2>&1 ||
	{ cat "$WORK/corpus.log" >&2; die "corpus.sh failed"; }

# The replies without their envelope line, the envelope as message.lua's globals.
mkdir -p "$WORK/msg"
for f in "$WORK"/corpus/replies/r*.eml; do
	env=$(head -n 1 "$f" | tr -d '\r')
	set -- $env	# X-Bench-Envelope: client=IP helo=NAME from=<..> rcpt=<..>
	client=${2#client=} helo=${3#helo=} from=${4#from=} rcpt=${5#rcpt=}
	tail -n +2 "$f" >"$WORK/msg/${f##*/}"
	printf '%s\t%s\t%s\t%s\t%s\n' "$WORK/msg/${f##*/}" "$client" "$helo" "$from" "$rcpt"
done >"$WORK/deliveries"

write_config "$WORK/milterd.conf" "log_level = info" "db_timeout = 5"
milterd_start "$WORK/milterd.conf" || die "milterd did not start"

# The backend's program: its start time and account, nothing else.
cat >"$WORK/prog" <<'SH'
#!/bin/bash
t=$EPOCHREALTIME
printf '%s\t%s\n' "$t" "$2" >>"$FOLLOW_STARTS"
SH
chmod +x "$WORK/prog"
export FOLLOW_STARTS="$WORK/starts"
: >"$FOLLOW_STARTS"
"$BUILD/milterctl" follow --exec "$WORK/prog" 2>"$WORK/follow.log" &
FOLLOW_PID=$!
wait_for 10 grep -q "follow: active" "$WORK/follow.log" || { cat "$WORK/follow.log" >&2; die "follower not active"; }

read_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r b0 t0 < <(read_busy); sleep 2; read -r b1 t1 < <(read_busy)
BACKGROUND=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN { printf "%.0f%%", t ? 100 * b / t : 0 }')

# deliver FILE CLIENT HELO FROM RCPT: one reply; its client's exit time, or FAIL.
deliver_one() {
	IFS='	' read -r file client helo from rcpt <<<"$1"
	sleep "0.0$((RANDOM % 10))"
	if miltertest -D "socket=$MILTERD_SOCK" -D "file=$file" -D "rcpt=$rcpt" -D "client_ip=$client" \
		-D "helo=$helo" -D "mailfrom=$from" -D expect=accept \
		-s "$TOP/tests/integration/message.lua" >/dev/null 2>&1; then
		printf '%s\t%s\n' "$EPOCHREALTIME" "$rcpt"
	else
		printf 'FAIL\t%s\n' "$rcpt"
	fi
}
export -f deliver_one
export MILTERD_SOCK
T0=$EPOCHREALTIME
tr '\n' '\0' <"$WORK/deliveries" | xargs -0 -P "$P" -I{} bash -c 'deliver_one "$1"' _ {} >"$WORK/delivered"
T1=$EPOCHREALTIME
failed=$(grep -c '^FAIL' "$WORK/delivered")
[ "$failed" = 0 ] || die "$failed of $N deliveries were not accepted"
none_left() { [ "$(psql -Atc "SELECT count(*) FROM milterd.events")" = 0 ]; }
wait_for 30 none_left ||
	die "events left unacknowledged: $(tail -n 3 "$WORK/follow.log")"

kill "$FOLLOW_PID"; wait "$FOLLOW_PID" 2>/dev/null; FOLLOW_PID=

# Each reply's verified_at, client exit and program start, joined by token and account.
psql -v ON_ERROR_STOP=1 -qAt >"$WORK/figures" 2>"$WORK/psql.err" <<SQL || die "$(cat "$WORK/psql.err")"
CREATE TEMP TABLE delivered (exit_at float8, rcpt text);
\copy delivered FROM '$WORK/delivered'
CREATE TEMP TABLE starts (start_at float8, account text);
\copy starts FROM '$WORK/starts'
CREATE TEMP TABLE l AS
SELECT r.account, s.start_at - extract(epoch FROM r.verified_at) AS upper,
       s.start_at - d.exit_at AS lower
  FROM delivered d
  JOIN milterd.requests r
    ON r.token_hash = sha256(convert_to(substring(d.rcpt FROM 'verify\+([^@]+)@'), 'UTF8'))
  JOIN starts s ON s.account = r.account;
SELECT (SELECT count(*) FROM starts), (SELECT count(DISTINCT account) FROM starts), count(*),
       round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY upper))::int,
       round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY upper))::int,
       round(1000 * max(upper))::int,
       round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY lower))::int,
       round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY lower))::int,
       round(1000 * max(lower))::int
  FROM l;
SQL
IFS='|' read -r nstarts ndistinct njoined up50 up99 upmax lo50 lo99 lomax <"$WORK/figures"
[ "$nstarts" = "$N" ] && [ "$ndistinct" = "$N" ] && [ "$njoined" = "$N" ] ||
	die "$N replies, $nstarts program starts for $ndistinct accounts, $njoined matched"

mkdir -p "$BENCH/results"
out="$BENCH/results/FOLLOW-$(date +%Y-%m-%dT%H%M%S).txt"
{
	echo "milterctl follow: from milterd's 250 to the program's start"
	echo "date $(date -Iseconds)  commit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$TOP" diff --quiet HEAD 2>/dev/null || echo '+changes')"
	echo "machine: $(nproc) CPUs, busy before the run $BACKGROUND, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "PostgreSQL: $PG_SETTINGS (data on $PG_FS), same machine, unix socket"
	echo "replies: $N through milterd (DKIM, SPF, policy, database), $P at a time, 0-90 ms apart; $(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }') s"
	echo "program: bash, start time taken once bash has started; each run once ($nstarts starts, $ndistinct accounts)"
	echo
	printf '%-44s %8s %8s %8s\n' "ms" p50 p99 max
	printf '%-44s %8s %8s %8s\n' "program start - verified_at (upper bound)" "$up50" "$up99" "$upmax"
	printf '%-44s %8s %8s %8s\n' "program start - client exit (lower bound)" "$lo50" "$lo99" "$lomax"
} | tee "$out"
echo "(written to ${out#"$TOP"/})" >&2
