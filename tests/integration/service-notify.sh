# service-notify.sh — readiness for systemd (Type=notify): READY=1 once the
# socket listens, RELOADING=1 then READY=1 around a reload (accepted or refused),
# STOPPING=1 at SIGTERM; nothing without NOTIFY_SOCKET. A datagram socket of our
# own stands in for systemd's, which sd_notify(3) speaks to.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap 'milterd_stop; [ -n "${listener:-}" ] && kill "$listener" 2>/dev/null' EXIT

db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf"
# Each datagram on a line of its own, newlines as '|', with whether milterd's
# socket existed when it came.
/usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    msg = s.recv(4096).decode().strip().replace("\n", "|")
    with open(sys.argv[2], "a") as f:
        f.write("%s socket=%s\n" % (msg, "yes" if os.path.exists(sys.argv[3]) else "no"))
' "$WORK/notify" "$WORK/notified" "$WORK/milterd.sock" &
listener=$!
wait_for 5 test -S "$WORK/notify"
: >"$WORK/notified"

NOTIFY_SOCKET="$WORK/notify" milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
wait_for 5 grep -q READY=1 "$WORK/notified"
expect_eq "READY=1 once the socket listens, with a status naming it" \
	"READY=1|STATUS=serving on unix:$WORK/milterd.sock socket=yes" "$(cat "$WORK/notified")"
rcpt_ok "<postmaster@certify.test>" continue &&
	ok "... and milterd answers" || not_ok "milterd answers after READY=1"

: >"$WORK/notified"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q READY=1 "$WORK/notified"
expect_eq "a reload: RELOADING=1, then READY=1" \
	"RELOADING=1 socket=yes
READY=1|STATUS=serving socket=yes" "$(cat "$WORK/notified")"

: >"$WORK/notified"
cp "$WORK/milterd.conf" "$WORK/good.conf"
echo "dns_timeout = never" >>"$WORK/milterd.conf"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q READY=1 "$WORK/notified"
expect_eq "a refused reload: RELOADING=1, then READY=1 and a status that says so" \
	"RELOADING=1 socket=yes
READY=1|STATUS=reload refused, the running configuration stays (see the log) socket=yes" \
	"$(cat "$WORK/notified")"
cp "$WORK/good.conf" "$WORK/milterd.conf"

: >"$WORK/notified"
kill "$MILTERD_PID"
wait "$MILTERD_PID"; rc=$?
MILTERD_PID=
wait_for 5 grep -q STOPPING=1 "$WORK/notified"
# (Whether the socket still existed is not asked: milterd removes it as it
# exits, and the listener may look after that.)
expect_eq "SIGTERM: STOPPING=1 with the messages in flight, then exit 0" \
	"STOPPING=1|STATUS=stopping: 0 message(s) in flight|0" \
	"$(sed 's/ socket=[a-z]*$//' "$WORK/notified")|$rc"

# Without NOTIFY_SOCKET (started by hand, by a script, by the tests) nothing is sent.
: >"$WORK/notified"
milterd_start "$WORK/milterd.conf" || not_ok "milterd starts without NOTIFY_SOCKET"
kill -HUP "$MILTERD_PID"
wait_for 5 grep -q "configuration and policy reloaded" "$MILTERD_LOG"
milterd_stop
expect_eq "without NOTIFY_SOCKET: nothing sent" "" "$(cat "$WORK/notified")"
