# service-metrics.sh — counters: written to stats_file for milterctl stats (kept
# across a reload) and served in Prometheus text on a loopback listener only.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

db_reset || { not_ok "database reset"; exit 1; }
port=$(free_port)
write_config "$WORK/milterd.conf" "stats_listen = 127.0.0.1:$port"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts with stats_listen"; exit 1; }
rcpt_ok "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>" reply

# The Prometheus listener, on loopback only.
out=$(/usr/bin/python3 -c "import urllib.request,sys; r=urllib.request.urlopen('http://127.0.0.1:$port/metrics'); print(r.headers['Content-Type']); sys.stdout.write(r.read().decode())" 2>&1)
if grep -q '^text/plain; version=0.0.4' <<<"$out" &&
	grep -q 'milterd_decisions_total{reason="unknown_token",stage="rcpt"} 1' <<<"$out" &&
	grep -q '^# TYPE milterd_dkim_results_total counter' <<<"$out"; then
	ok "Prometheus text served on 127.0.0.1:$port/metrics (libmicrohttpd)"
else
	not_ok "Prometheus listener: $(head -c 600 <<<"$out")"
fi
write_config "$WORK/bad.conf" "stats_listen = 0.0.0.0:$port"
out=$("$BUILD/milterd" -n -c "$WORK/bad.conf" 2>&1)
expect_eq "the listener is refused off loopback" \
	"$WORK/bad.conf:12: stats_listen: the statistics listener must be on loopback (127.0.0.0/8)" "$out"

# milterctl stats reads the stats file (written every 10 s); the decision above
# was taken before a reload, which keeps the counters.
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "configuration and policy reloaded" "$MILTERD_LOG"
wait_for 12 test -s "$WORK/stats"
out=$("$BUILD/milterctl" -c "$WORK/milterd.conf" stats)
if grep -Eq '^milterd_decisions_total\{reason="unknown_token",stage="rcpt"\} +[1-9]' <<<"$out" &&
	grep -q '^milterd_messages_in_flight' <<<"$out"; then
	ok "milterctl stats shows the decisions taken (unknown tokens refused at RCPT)"
else
	not_ok "milterctl stats: $out"
fi
# Seconds keep their fraction, as text and in JSON (a number with a fraction).
if grep -Eq '^milterd_group_wait_seconds_total +[0-9]+\.[0-9]{6}$' <<<"$out" &&
	[ "$("$BUILD/milterctl" -c "$WORK/milterd.conf" --json stats | /usr/bin/python3 -c \
		'import json, sys; print(type(json.load(sys.stdin)["milterd_group_wait_seconds_total"]).__name__)')" = float ]; then
	ok "milterctl stats shows seconds with their fraction (text and --json)"
else
	not_ok "milterctl stats, seconds: $(grep group_wait <<<"$out")"
fi
