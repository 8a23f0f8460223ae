# common.sh — shared helpers for test scripts: result lines, milterd start/stop, waiting.
#
# A test script prints one line per check: "ok - NAME" or "not ok - NAME: WHY";
# tests/run counts them. Scripts get from tests/run: TOP (the checkout), BUILD,
# WORK (a private temporary directory) and the database variables of pg.sh.

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; }

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: expected '$2', got '$3'"; fi
}

# expect_grep NAME PATTERN FILE: ok if an extended regex matches in FILE.
expect_grep() {
	if grep -Eq -- "$2" "$3"; then ok "$1"; else not_ok "$1: no /$2/ in $(basename "$3")"; fi
}

# free_port: a port no socket uses, TCP nor UDP (a DNS server binds both), in
# 20000-31999: below Linux's ephemeral range (32768-60999), so no outgoing
# connection takes it between this check and the caller's bind. Another test
# may still pick it: callers that can retry on another port.
free_port() {
	local p i
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		ss -Htuan "sport = :$p" | grep -q . || { echo "$p"; return 0; }
	done
	echo "free_port: no free port found in 100 tries" >&2
	return 1
}

# make_reply FILE FROM TOKEN [OPTION VALUE ...]: an agent's reply to a challenge,
# written to FILE ("-": standard output) with LF line ends. FROM is the agent's
# address; TOKEN goes into the default To and Subject. Options (a later one
# replaces an earlier one, except --prepend and --header, which add):
#   --name NAME        display name in From (default "Agent"; "" for the bare address)
#   --from VALUE       the whole From value instead (a group, an encoded word...)
#   --to VALUE         default <verify+TOKEN@certify.test>
#   --subject VALUE    default "Re: Verification [TOKEN]"
#   --date VALUE       default now
#   --message-id VALUE default <random@FROM's domain>
#   --prepend LINE     a header line above From, as a relay or a forger adds it
#   --header LINE      a header line after Message-ID (MIME-Version, ...)
#   --body TEXT        default "Yes, it is me."; a final newline is added
#   --body-file FILE   the body: FILE's bytes as they are
make_reply() {
	local file="$1" addr="$2" tok="$3" name=Agent from= to= subject= date= msgid=
	local body="Yes, it is me." bodyfile= pre=() post=() h
	shift 3 || { echo "make_reply: FILE FROM TOKEN [OPTION VALUE ...]" >&2; return 1; }
	while [ $# -gt 0 ]; do
		[ $# -ge 2 ] || { echo "make_reply: $1 needs a value" >&2; return 1; }
		case "$1" in
		--name) name="$2" ;;
		--from) from="$2" ;;
		--to) to="$2" ;;
		--subject) subject="$2" ;;
		--date) date="$2" ;;
		--message-id) msgid="$2" ;;
		--prepend) pre+=("$2") ;;
		--header) post+=("$2") ;;
		--body) body="$2" ;;
		--body-file) bodyfile="$2" ;;
		*) echo "make_reply: unknown option $1" >&2; return 1 ;;
		esac
		shift 2
	done
	if [ -z "$from" ]; then
		if [ -n "$name" ]; then from="$name <$addr>"; else from="$addr"; fi
	fi
	if [ "$file" = - ]; then _make_reply_print; else _make_reply_print >"$file"; fi
}
_make_reply_print() {	# make_reply's locals are visible here (bash scoping)
	for h in ${pre[@]+"${pre[@]}"}; do printf '%s\n' "$h"; done
	printf 'From: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: %s\n' "$from" \
		"${to:-<verify+$tok@certify.test>}" "${subject:-Re: Verification [$tok]}" \
		"${date:-$(date -R)}" "${msgid:-<$RANDOM.$RANDOM@${addr##*@}>}"
	for h in ${post[@]+"${post[@]}"}; do printf '%s\n' "$h"; done
	if [ -n "$bodyfile" ]; then printf '\n'; cat "$bodyfile"; else printf '\n%s\n' "$body"; fi
}

# smtp_banner PORT: the first line the SMTP server on 127.0.0.1:PORT says (then QUIT).
smtp_banner() {
	timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -n 1 <&3 | tr -d "\r" &&
		printf "QUIT\r\n" >&3' _ "$1" 2>&1
}

# rcpt_ok RCPT EXPECT: one transaction up to RCPT TO:<RCPT> through miltertest
# (rcpt.lua); true when milterd answered as EXPECTed (continue | reply).
rcpt_ok() { mt rcpt.lua "rcpt=$1" expect="$2" >/dev/null 2>&1; }

# metrics PORT: the Prometheus text milterd serves on 127.0.0.1:PORT (or the error).
metrics() {
	/usr/bin/python3 -c "import urllib.request, sys; print(urllib.request.urlopen(
		'http://127.0.0.1:%s/metrics' % sys.argv[1], timeout=5).read().decode())" "$1" 2>&1
}

# group_metrics PORT: the group commit's counters as "commits rows gather write
# durable wait", the times in microseconds (group.sh, the bench).
group_metrics() {
	metrics "$1" | awk '
		$1 == "milterd_group_commits_total" { c = $2 }
		$1 == "milterd_group_rows_total" { r = $2 }
		$1 == "milterd_group_seconds_total{phase=\"gather\"}" { g = $2 }
		$1 == "milterd_group_seconds_total{phase=\"write\"}" { w = $2 }
		$1 == "milterd_group_seconds_total{phase=\"durable\"}" { d = $2 }
		$1 == "milterd_group_wait_seconds_total" { q = $2 }
		END { printf "%d %d %.0f %.0f %.0f %.0f\n", c, r, g * 1e6, w * 1e6, d * 1e6, q * 1e6 }'
}

# wait_for SECONDS COMMAND...: poll until the command succeeds.
wait_for() {
	local t=$(( $1 * 10 )); shift
	while [ "$t" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		t=$((t - 1))
	done
	return 1
}

# hold_address ADDRESS [SECONDS]: a transaction holding the address's lock as
# milterd's record() takes it, so that a verification from ADDRESS waits: for
# SECONDS (60 by default), or until release_address ADDRESS.
hold_address() {
	PGAPPNAME="hold $1" psql -Atq -c "BEGIN" \
		-c "SELECT pg_advisory_xact_lock(hashtext('milterd.address'), hashtext('$1'))" \
		-c "SELECT pg_sleep(${2:-60})" -c "COMMIT" >/dev/null 2>&1
}
# release_address ADDRESS: ends hold_address's transaction now (its session with it).
release_address() {
	psql -Atq -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'hold $1'" >/dev/null
}

# milterd_lock_waits N: N of milterd's database sessions wait on a lock.
milterd_lock_waits() {
	[ "$(psql -Atq -c "SELECT count(*) FROM pg_stat_activity
		WHERE application_name LIKE 'milterd%' AND wait_event_type = 'Lock'")" = "$1" ]
}

# write_config FILE [key=value ...]: a milterd.conf for tests; extra keys replace defaults.
write_config() {
	local f="$1" kv key; shift
	{
		echo "# milterd.conf written by $(basename "$0")"
		echo "socket = unix:$WORK/milterd.sock"
		echo "database = $MILTERD_DATABASE"
		echo "policy = $TOP/policies/gouv-fr.conf"
		echo "templates = $TOP/templates"
		echo "verify_address = verify@certify.test"
		echo "authserv_id = mx.certify.test"
		echo "db_timeout = 2"
		echo "log_level = debug"
		echo "stats_file = $WORK/stats"
		[ -n "${DNS_SPEC:-}" ] && echo "dns_resolver = $DNS_SPEC"
	} >"$f"
	for kv in "$@"; do
		key=$(echo "${kv%%=*}" | tr -d ' ')
		sed -i "/^$key = /d" "$f"
		echo "$kv" >>"$f"
	done
}

# milterd_start CONF: start milterd in the foreground (background job), wait for its socket.
milterd_start() {
	MILTERD_LOG="$WORK/milterd.log"
	: >"$MILTERD_LOG"
	rm -f "$WORK/milterd.sock"
	MILTERD_CONF="$1"
	${MILTERD_WRAPPER:-} "$BUILD/milterd" -f -c "$1" 2>>"$MILTERD_LOG" &
	MILTERD_PID=$!
	MILTERD_SOCK="unix:$WORK/milterd.sock"
	# Ready once it says so (the socket appears before privileges are dropped).
	wait_for 10 grep -q "milterd started on" "$MILTERD_LOG" || { cat "$MILTERD_LOG" >&2; return 1; }
}

milterd_stop() {
	[ -n "${MILTERD_PID:-}" ] || return 0
	kill "$MILTERD_PID" 2>/dev/null || true
	wait "$MILTERD_PID" 2>/dev/null || true
	MILTERD_PID=
}

# mt SCRIPT [NAME=VALUE ...]: run a miltertest script against the running milterd.
mt() {
	local script="$1"; shift
	local defs=(-D "socket=$MILTERD_SOCK")
	for kv in "$@"; do defs+=(-D "$kv"); done
	miltertest "${defs[@]}" -s "$TOP/tests/integration/$script"
}

# db_reset: an empty database with the current schema applied.
db_reset() {
	psql -d postgres -qc "DROP DATABASE IF EXISTS milterd WITH (FORCE)" >/dev/null &&
	psql -d postgres -qc "CREATE DATABASE milterd" >/dev/null &&
	MILTERD_SQLDIR="$TOP/milterd/sql" "$BUILD/milterctl" db migrate >/dev/null
}

# new_token ACCOUNT EMAIL [TTL]: create a request, print its token.
new_token() {
	"$BUILD/milterctl" request --account "$1" --email "$2" ${3:+--ttl "$3"}
}

# reply_text REASON: the exact SMTP reply text for a reason (golden replies.ref).
reply_text() {
	awk -F'\t' -v r="$1" '$1 == r {print $2}' "$TOP/tests/integration/replies.ref"
}

# check_like_daemon FILE TOKEN [message.lua globals...]: milterctl check --json on
# the message, with the envelope message.lua would give (its defaults, or the
# globals), into $WORK/check.json. With pause=N the message reaches milterctl
# N seconds after RCPT, as it reaches the daemon.
check_like_daemon() {
	local file="$1" tok="$2" ip=127.0.0.1 helo=mx.agri.gouv.fr from='<agent@agri.gouv.fr>' pause=0 kv
	shift 2
	for kv in "$@"; do
		case "$kv" in
		client_ip=*) ip="${kv#*=}" ;;
		helo=*) helo="${kv#*=}" ;;
		mailfrom=*) from="${kv#*=}" ;;
		pause=*) pause="${kv#*=}" ;;
		esac
	done
	{ sleep "$pause"; cat "$file"; } | "$BUILD/milterctl" -c "$MILTERD_CONF" --json check - \
		--client-ip "$ip" --helo "$helo" --mail-from "$from" \
		--rcpt "<verify+$tok@certify.test>" >"$WORK/check.json" 2>"$WORK/check.err"
}

# compare_with_check NAME BEFORE: the daemon's answer (its log line after line
# BEFORE) against milterctl check's ($WORK/check.json): reason, SMTP code and
# enhanced code must be the same. Each agreement is counted in $COMPARED (set by
# tests/run), for the check that every reason code was compared.
compare_with_check() {
	local name="$1" before="$2" line d_reason d_reply d_xcode c_reason c_reply c_xcode
	line=$(tail -n +"$((before + 1))" "$MILTERD_LOG" | grep ' reason=' | tail -n 1)
	d_reason=$(sed -n 's/.* reason=\([a-z_]*\) .*/\1/p' <<<"$line")
	d_reply=$(sed -n 's/.* reply=\([0-9a-z]*\) .*/\1/p' <<<"$line")
	d_xcode=$(sed -n 's/.* xcode=\([0-9.-]*\).*/\1/p' <<<"$line")
	[ "$d_xcode" = - ] && d_xcode=
	read -r c_reason c_reply c_xcode < <(/usr/bin/python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d.get("reason", "?"), d.get("reply", "?"), d.get("xcode") or "-")' "$WORK/check.json" 2>/dev/null)
	[ "$c_xcode" = - ] && c_xcode=
	if [ -z "$d_reason" ] || [ "$d_reason/$d_reply/$d_xcode" != "$c_reason/$c_reply/$c_xcode" ]; then
		not_ok "$name: milterctl check said '$c_reason $c_reply $c_xcode', the daemon '$d_reason $d_reply $d_xcode' ($(head -c 300 "$WORK/check.err" "$WORK/check.json" 2>/dev/null | tr '\n' ' '))"
		return 1
	fi
	[ -n "${COMPARED:-}" ] && echo "$d_reason $d_reply $d_xcode" >>"$COMPARED"
	return 0
}

# deliver NAME FILE TOKEN EXPECT REASON [message.lua globals...]: one whole
# transaction through miltertest; ok when milterd answered as EXPECTed (with the
# exact reply text of REASON for refusals), logged reason=REASON, and milterctl
# check, given the same message and envelope, answered the same reason, SMTP code
# and enhanced code (the same code decides: DESIGN.md, "the one decision"). The
# check runs first (it writes nothing); with pause= both run at once, so that a
# request expiring during the transaction expires for both.
deliver() {
	local name="$1" file="$2" tok="$3" expect="$4" reason="${5:-}" before cpid=; shift 5
	before=$(wc -l <"$MILTERD_LOG")
	case " $* " in
	*" pause="*) check_like_daemon "$file" "$tok" "$@" & cpid=$! ;;
	*) check_like_daemon "$file" "$tok" "$@" ;;
	esac
	if ! mt message.lua "file=$file" "rcpt=<verify+$tok@certify.test>" "expect=$expect" \
		"text=$(reply_text "$reason")" "$@" >"$WORK/mt.out" 2>&1; then
		[ -n "$cpid" ] && wait "$cpid"
		not_ok "$name: $(tr '\n' ' ' <"$WORK/mt.out")"
		return 1
	fi
	[ -n "$cpid" ] && wait "$cpid"
	if [ -n "$reason" ] && ! tail -n +"$((before + 1))" "$MILTERD_LOG" | grep -q "reason=$reason "; then
		not_ok "$name: no reason=$reason in the log: $(tail -n 2 "$MILTERD_LOG" | tr '\n' ' ')"
		return 1
	fi
	compare_with_check "$name" "$before" || return 1
	ok "$name"
}
