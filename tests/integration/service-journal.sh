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

# milterd -n (ExecStartPre=, ExecReload=) prints a broken file's errors before
# logging starts: under the journal each line is <3> too, elsewhere as it was.
printf 'workers = many\nbogus = 1\n' >>"$WORK/run.conf"
log="$WORK/check.log"
: >"$log"
JOURNAL_STREAM="$(stat -c '%d:%i' "$log")" "$BUILD/milterd" -n -c "$WORK/run.conf" 2>>"$log"
n=$(wc -l <"$WORK/run.conf")
expect_eq "journal: milterd -n's errors, each line <3>" \
	"<3>$WORK/run.conf:$((n - 1)): workers: 'many' is not a whole number from 1 to 1024
<3>$WORK/run.conf:$n: bogus: unknown key" "$(cat "$log")"
env -u JOURNAL_STREAM "$BUILD/milterd" -n -c "$WORK/run.conf" 2>"$WORK/check-plain.log"
expect_eq "not the journal: milterd -n's errors without a prefix" \
	"$(sed 's/^<3>//' "$log")" "$(cat "$WORK/check-plain.log")"
