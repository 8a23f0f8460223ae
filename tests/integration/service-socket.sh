# service-socket.sh — milterd's socket and privileges: dropped to `user` after
# binding, socket mode and owner set; a live socket is not taken over, a stale one
# is replaced, and at exit milterd removes its socket only if it is still its own.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

db_reset || { not_ok "database reset"; exit 1; }
tok=$(new_token alice alice@agri.gouv.fr)

# Privilege drop after binding (as root only).
if [ "$(id -u)" = 0 ]; then
	chmod 777 "$WORK"
	write_config "$WORK/milterd.conf" "user = nobody" "socket_owner = nobody:nogroup" "socket_mode = 0600"
	milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts with user = nobody"; exit 0; }
	expect_eq "privileges dropped to user nobody" "$(id -u nobody)" \
		"$(awk '/^Uid:/ {print $2}' /proc/$MILTERD_PID/status)"
	expect_eq "unix socket mode and owner set" "600 nobody nogroup" \
		"$(stat -c '%a %U %G' "$WORK/milterd.sock")"
	rcpt_ok "<verify+$tok@certify.test>" continue && ok "answers after dropping privileges" ||
		not_ok "answers after dropping privileges: $(tail -n 2 "$MILTERD_LOG")"
	milterd_stop
	# Started as that user already (a unit with User=, a test run): nothing to
	# drop, and initgroups() would fail with EPERM.
	MILTERD_WRAPPER="setpriv --reuid=nobody --regid=nogroup --init-groups" \
		milterd_start "$WORK/milterd.conf" &&
		ok "milterd started as user nobody, with user = nobody, runs" ||
		not_ok "milterd started as user nobody, with user = nobody: $(grep -v debug "$MILTERD_LOG" | tail -n 2 | tr '\n' ' ')"
	rcpt_ok "<verify+$tok@certify.test>" continue && ok "... and answers" ||
		not_ok "... and answers: $(tail -n 2 "$MILTERD_LOG")"
	milterd_stop
else
	echo "skip - privilege drop: tests not run as root"
fi

# The socket: a live one is not taken over; a stale one is replaced; at exit a
# milterd removes its socket only if it is still its own.
write_config "$WORK/milterd.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 0; }
first=$MILTERD_PID
out=$(timeout 10 "$BUILD/milterd" -f -c "$WORK/milterd.conf" 2>&1); rc=$?
if [ "$rc" = 1 ] && grep -q "another process is listening on it" <<<"$out" &&
	rcpt_ok "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>" reply; then
	ok "a second milterd on a live socket exits 1 and the first one keeps answering"
else
	not_ok "second milterd on a live socket: rc $rc: $out"
fi
# A restart where the old process is still finishing: it must not remove the
# new process's socket when it finally exits.
mv "$WORK/milterd.sock" "$WORK/old.sock"
"$BUILD/milterd" -f -c "$WORK/milterd.conf" 2>>"$WORK/second.log" &
second=$!
wait_for 10 grep -q "milterd started on" "$WORK/second.log"
kill "$first"; wait "$first" 2>/dev/null
MILTERD_PID=$second
if [ -S "$WORK/milterd.sock" ] && rcpt_ok "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>" reply; then
	ok "an old milterd exiting leaves the new one's socket alone"
else
	not_ok "an old milterd exiting removed the new one's socket"
fi
milterd_stop
[ ! -e "$WORK/milterd.sock" ] && ok "milterd removes its own socket at exit" ||
	not_ok "milterd left its socket behind"
# A socket file nobody listens on (a crash) is replaced.
/usr/bin/python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$WORK/milterd.sock"
"$BUILD/milterd" -f -c "$WORK/milterd.conf" 2>>"$WORK/third.log" &
MILTERD_PID=$!
if wait_for 10 grep -q "milterd started on" "$WORK/third.log" &&
	rcpt_ok "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>" reply; then
	ok "a stale socket file is replaced"
else
	not_ok "stale socket: $(tail -n 2 "$WORK/third.log")"
fi
milterd_stop
