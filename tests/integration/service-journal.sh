# service-journal.sh — under systemd (stderr is journald's stream: JOURNAL_STREAM
# names fd 2's device and inode) each line starts with <N>, its syslog priority,
# so journald records err as err; elsewhere the lines have no prefix.
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

# No database answers here: the warning at start is one of the lines checked.
port=$(free_port)
write_config "$WORK/milterd.conf" "database = host=127.0.0.1 port=$port dbname=none connect_timeout=1"

# run_milterd LOG [JOURNAL_STREAM]: start, wait for the database warning, make a
# reload be refused (an error), stop.
run_milterd() {
	local log="$1"
	: >"$log"
	cp "$WORK/milterd.conf" "$WORK/run.conf"
	if [ -n "${2:-}" ]; then
		JOURNAL_STREAM="$2" "$BUILD/milterd" -f -c "$WORK/run.conf" 2>>"$log" &
	else
		env -u JOURNAL_STREAM "$BUILD/milterd" -f -c "$WORK/run.conf" 2>>"$log" &
	fi
	MILTERD_PID=$!
	wait_for 10 grep -q "database not usable at start" "$log"
	sed -i "s|^socket = .*|socket = unix:$WORK/other.sock|" "$WORK/run.conf"
	kill -HUP "$MILTERD_PID"
	wait_for 5 grep -q "reload refused" "$log"
	milterd_stop
}

log="$WORK/journal.log"
: >"$log"
run_milterd "$log" "$(stat -c '%d:%i' "$log")"
expect_grep "journal: an error is <3>" '^<3>milterd\[err\]: NOQUEUE: reload refused' "$log"
expect_grep "journal: a warning is <4>" '^<4>milterd\[warning\]: NOQUEUE: database not usable at start' "$log"
expect_grep "journal: information is <6>" '^<6>milterd\[info\]: NOQUEUE: milterd started on' "$log"
bad=$(grep -cv '^<[0-7]>milterd\[' "$log")
expect_eq "journal: every line has its priority prefix" 0 "$bad"

log="$WORK/plain.log"
run_milterd "$log"
expect_grep "not the journal: lines as before" '^milterd\[err\]: NOQUEUE: reload refused' "$log"
expect_eq "not the journal: no line has a prefix" 0 "$(grep -c '^<' "$log")"

# JOURNAL_STREAM inherited, but stderr redirected elsewhere: not the journal.
other="$WORK/other.log"
: >"$other"
log="$WORK/redirected.log"
run_milterd "$log" "$(stat -c '%d:%i' "$other")"
expect_grep "JOURNAL_STREAM of another file: lines as before" '^milterd\[err\]: NOQUEUE: reload refused' "$log"
expect_eq "JOURNAL_STREAM of another file: no line has a prefix" 0 "$(grep -c '^<' "$log")"
