# service-reload.sh — SIGHUP re-reads configuration and policy: a valid change
# applies, a broken policy or a change that needs a restart is refused and the
# old configuration keeps answering; the pidfile holds milterd's pid.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf" "pidfile = $WORK/milterd.pid"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
expect_eq "pidfile holds milterd's pid" "$MILTERD_PID" "$(cat "$WORK/milterd.pid" 2>/dev/null)"
tok=$(new_token alice alice@agri.gouv.fr)

# A valid change: the verify address moves.
sed -i 's/^verify_address = .*/verify_address = check@certify.test/' "$WORK/milterd.conf"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "configuration and policy reloaded" "$MILTERD_LOG"
# The reload's outcome in the counters (written at once after a SIGHUP).
gauge() { sed -n "s/^milterd_config_last_reload_$1 //p" "$WORK/stats"; }
wait_for 5 test -s "$WORK/stats"
loaded1=$(gauge success_timestamp_seconds)
expect_eq "stats: the reload applied (1), loaded within the last minute" "1|yes" \
	"$(gauge successful)|$([ "$(( $(date +%s) - ${loaded1:-0} ))" -lt 60 ] && echo yes || echo "no: ${loaded1:-none}")"
if rcpt_ok "<check+$tok@certify.test>" continue && rcpt_ok "<check+abcdefghijklmnopqrstuvwxy4@certify.test>" reply &&
	rcpt_ok "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>" continue; then
	ok "SIGHUP applies a valid new configuration (new verify address screened, old one passes)"
else
	not_ok "SIGHUP applies a valid new configuration: $(tail -n 3 "$MILTERD_LOG" | tr '\n' ' ')"
fi
kill -0 "$MILTERD_PID" 2>/dev/null && ok "milterd survives SIGHUP" || not_ok "milterd survives SIGHUP"

# A broken policy: refused with file, line and key; the old configuration answers on.
printf '[default]\nallow = gouv.fr\nrequire = dkim-maybe\n' >"$WORK/bad-policy.conf"
cp "$WORK/milterd.conf" "$WORK/good.conf"
sed -i "s|^policy = .*|policy = $WORK/bad-policy.conf|" "$WORK/milterd.conf"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "reload refused" "$MILTERD_LOG"
expect_grep "a broken policy is refused, naming file, line and key" \
	"bad-policy.conf:3: require: expected dkim" "$MILTERD_LOG"
wait_for 5 grep -q "^milterd_config_last_reload_successful 0" "$WORK/stats"
expect_eq "stats: the refused reload (0), the running configuration's load time kept" "0|$loaded1" \
	"$(gauge successful)|$(gauge success_timestamp_seconds)"
if rcpt_ok "<check+$tok@certify.test>" continue && rcpt_ok "<check+abcdefghijklmnopqrstuvwxy4@certify.test>" reply; then
	ok "after a refused reload milterd keeps answering with the old configuration"
else
	not_ok "after a refused reload milterd keeps answering"
fi
# A change that needs a restart is refused too.
cp "$WORK/good.conf" "$WORK/milterd.conf"
sed -i "s|^socket = .*|socket = unix:$WORK/other.sock|" "$WORK/milterd.conf"
n=$(grep -n '^socket = ' "$WORK/milterd.conf" | cut -d: -f1)
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "socket: changing it needs a restart" "$MILTERD_LOG" &&
	ok "a change of socket on reload is refused: it needs a restart" ||
	not_ok "a change of socket on reload is refused"
# Named with file and line, as every other configuration error.
expect_grep "the refused socket change is named with file and line" \
	"milterd\[err\]: NOQUEUE:   $WORK/milterd.conf:$n: socket: changing it needs a restart\$" "$MILTERD_LOG"
# A key taken out of the file is back to its default: no line to name, the default said.
grep -v '^stats_file ' "$WORK/good.conf" >"$WORK/milterd.conf"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "stats_file: changing it needs a restart" "$MILTERD_LOG"
expect_grep "a key removed on reload: refused, its default named" \
	"$WORK/milterd.conf: stats_file: changing it needs a restart \(removed: back to its default, /run/milterd/stats\)" "$MILTERD_LOG"

# Applied again: 1, with a load time no earlier than the first.
sleep 1
cp "$WORK/good.conf" "$WORK/milterd.conf"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "^milterd_config_last_reload_successful 1" "$WORK/stats"
expect_eq "stats: a reload applied after a refused one: 1, loaded later than the first" "1|yes" \
	"$(gauge successful)|$([ "$(gauge success_timestamp_seconds)" -gt "$loaded1" ] && echo yes || echo no)"
