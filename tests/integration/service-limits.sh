# service-limits.sh — many MTA connections on few workers (1100 open on 4, past
# a soft descriptor limit of 1024 that milterd raises), a low descriptor limit
# said at start, milter_timeout closing a silent connection.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

db_reset || { not_ok "database reset"; exit 1; }

# Many MTA connections share the workers: 1100 open at once, milterd still
# answers and runs no more threads than workers + its own few. It starts with a
# soft descriptor limit of 1024 (systemd's) and raises it to the hard one; the
# metrics listener (libmicrohttpd) must then take descriptors above 1023 too.
N=1100 wrap="prlimit --nofile=1024:4096"
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 4096 ]; then
	N=500 wrap=
	echo "skip - descriptor limit raised past 1024: hard limit $(ulimit -Hn) here, 500 connections instead"
fi
ulimit -n "$(ulimit -Hn)"
port=$(free_port)
write_config "$WORK/milterd.conf" "workers = 4" "stats_listen = 127.0.0.1:$port"
MILTERD_WRAPPER=$wrap milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts with workers = 4"; exit 0; }
/usr/bin/python3 - "$WORK/milterd.sock" "$WORK/held" "$N" <<'PY' &
import os, socket, sys, time
conns = []
for _ in range(int(sys.argv[3])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    conns.append(s)
open(sys.argv[2], "w").close()
time.sleep(30)
PY
holder=$!
wait_for 20 test -e "$WORK/held"
if [ -n "$wrap" ]; then
	soft=$(awk '/^Max open files/ {print $4}' "/proc/$MILTERD_PID/limits")
	[ "$soft" = 4096 ] && ok "the soft descriptor limit 1024 is raised to the hard one (4096)" ||
		not_ok "descriptor limit: soft $soft, expected 4096"
fi
wait_for 10 sh -c "[ \$(ls /proc/$MILTERD_PID/fd | wc -l) -ge $N ]"
fds=$(ls /proc/$MILTERD_PID/fd | wc -l)
threads=$(awk '$1 == "Threads:" {print $2}' /proc/$MILTERD_PID/status)
if [ "$fds" -ge "$N" ] && [ "$threads" -le 10 ] &&
	rcpt_ok "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>" reply; then
	ok "$N open connections, $threads threads (workers = 4), still answering"
else
	not_ok "$N connections: $fds descriptors, $threads threads"
fi
open=$(metrics "$port" | awk '$1 == "milterd_connections_open" {print $2}')
[ "${open:-0}" -ge "$N" ] && [ "$open" -le $((N + 2)) ] &&
	ok "milterd_connections_open says $open (metrics served past descriptor $N)" ||
	not_ok "milterd_connections_open says '${open:-}'"
kill "$holder"; wait "$holder" 2>/dev/null
milterd_stop
# A hard limit that leaves little room is said at start.
if MILTERD_WRAPPER="prlimit --nofile=1024:1024" milterd_start "$WORK/milterd.conf"; then
	expect_grep "a low descriptor limit is logged at start" "only 1024 descriptors .RLIMIT_NOFILE." "$MILTERD_LOG"
	milterd_stop
else
	not_ok "milterd starts with a descriptor limit of 1024"
fi

# milter_timeout: a connection on which the MTA says nothing is closed; one that
# keeps talking is not. (The sweep runs once a second.)
write_config "$WORK/milterd.conf" "milter_timeout = 2"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts with milter_timeout = 2"; exit 0; }
res=$(/usr/bin/python3 - "$WORK/milterd.sock" <<'PY'
import socket, struct, sys, time
def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data
quiet = socket.socket(socket.AF_UNIX); quiet.connect(sys.argv[1]); quiet.setblocking(False)
talk = socket.socket(socket.AF_UNIX); talk.connect(sys.argv[1]); talk.settimeout(5)
talk.sendall(pkt(b"O", struct.pack(">III", 6, 0x1ff, 0)))   # no no-reply flags: CONNECT is answered
neg = talk.recv(4096)[4:5]
t0, closed = time.time(), None
while time.time() - t0 < 6:
    talk.sendall(pkt(b"D", b"Cj\0mx.certify.test\0"))   # macros: no reply expected
    try:
        if closed is None and quiet.recv(1) == b"":
            closed = time.time() - t0
    except BlockingIOError:
        pass
    time.sleep(0.2)
talk.sendall(pkt(b"C", b"mta.example\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.1\0"))
answer = talk.recv(4096)[4:5]
print("closed=%s negotiated=%s connect=%s" % ("%.1f" % closed if closed else "never",
      neg.decode(), answer.decode()))
PY
)
case "$res" in
closed=[2-4].*" negotiated=O connect=c")
	ok "milter_timeout = 2 closes a silent connection (${res%% *}), a talking one answers on";;
*)	not_ok "milter_timeout: $res";;
esac
expect_grep "the timeout is logged" "closed 1 MTA connection silent for 2 s or more" "$MILTERD_LOG"
milterd_stop
