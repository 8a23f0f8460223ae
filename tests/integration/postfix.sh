# postfix.sh — a real Postfix in front of milterd: a private receiving MX (smtpd_milters,
# milter_default_action = tempfail, strict settings) and an agency's relay; swaks sends
# dkimpy-signed replies. A genuine reply verifies, a refused one gets the reason in the
# SMTP dialogue, and with milterd down the mail waits in the sender's queue until
# Postfix's retry verifies it: nothing lost. Stopping milterd turns new transactions away
# with 421 while the one under way finishes. With smtpd chrooted (Debian's default) and
# the socket inside the chroot, a genuine reply verifies.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
. "$TOP/tests/lib/postfix.sh"
if [ "$(id -u)" != 0 ]; then echo "skip - postfix: needs root (Postfix's master)"; exit 0; fi
cleanup() { milterd_stop; postfix_stop_all; }
trap cleanup EXIT
trap 'exit 130' INT TERM
SIGN="$TOP/tests/lib/dkim-sign"
chmod 755 "$WORK"

db_reset || { not_ok "database reset"; exit 1; }
# smtpd runs as postfix: it must be able to connect to the socket.
write_config "$WORK/milterd.conf" "socket_owner = :postfix" "socket_mode = 0660"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
postfix_receiver_start "$WORK" "unix:$WORK/milterd.sock" || { not_ok "receiving Postfix starts"; exit 1; }
postfix_sender_start "$WORK" || { not_ok "sending Postfix starts"; exit 1; }
recv_banner=$(smtp_banner "$PF_RECV_PORT") send_banner=$(smtp_banner "$PF_SEND_PORT")
recv_milters=$(postconf -c "$PF_RECV_CONF" -h smtpd_milters)
if [ "$recv_banner" = "220 mx.certify.test ESMTP" ] && [ "$send_banner" = "220 mx.agri.gouv.fr ESMTP" ] &&
	[ "$recv_milters" = "unix:$WORK/milterd.sock" ]; then
	ok "private Postfix instances answer: MX on 127.0.0.1:$PF_RECV_PORT (smtpd_milters = milterd), relay on 127.0.0.1:$PF_SEND_PORT"
else
	not_ok "private Postfix instances: MX said '$recv_banner' (smtpd_milters = $recv_milters), relay said '$send_banner'"
fi

# signed_reply FILE FROM TOKEN [unsigned]
signed_reply() {
	make_reply "$1.raw" "$2" "$3"
	if [ "${4:-}" = unsigned ]; then cp "$1.raw" "$1"; else
		"$SIGN" --domain agri.gouv.fr --selector rsa2048 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
			<"$1.raw" >"$1"; fi
}
state() { pg_psql "SELECT state FROM milterd.verification_status('$1')"; }

# 1. A genuine reply, straight to the MX: 250, delivered with our Authentication-Results.
t=$(new_token alice alice@agri.gouv.fr)
signed_reply "$WORK/m1" alice@agri.gouv.fr "$t"
reply=$(swaks_send "$PF_RECV_PORT" alice@agri.gouv.fr "verify+$t@certify.test" "$WORK/m1"); rc=$?
if [ "$rc" = 0 ] && [[ "$reply" == 250* ]]; then ok "genuine reply: $reply"; else not_ok "genuine reply: rc=$rc $reply"; fi
expect_eq "the account is verified" verified "$(state alice)"
if postfix_mail_wait "$PF_RECV_MAILDIR" 1 10 &&
	grep -q '(milterd: verified)' "$(postfix_mail_last "$PF_RECV_MAILDIR")"; then
	ok "delivered with milterd's Authentication-Results"
else
	not_ok "delivered with milterd's Authentication-Results"
fi
# The exact first line: "Authentication-Results:", one space, our authserv-id
# (milterd negotiates SMFIP_HDR_LEADSPC: the value brings its own space).
expect_eq "the delivered copy's Authentication-Results line" \
	"Authentication-Results: mx.certify.test;" \
	"$(grep -m 1 '^Authentication-Results:' "$(postfix_mail_last "$PF_RECV_MAILDIR")" | tr -d '\r')"

# 2. A refused reply: the reason is in the SMTP dialogue.
t=$(new_token bob bob@agri.gouv.fr)
signed_reply "$WORK/m2" bob@agri.gouv.fr "$t" unsigned
reply=$(swaks_send "$PF_RECV_PORT" bob@agri.gouv.fr "verify+$t@certify.test" "$WORK/m2")
if [[ "$reply" == "550 5.7.20 not_authenticated: "* ]]; then ok "unsigned reply refused in the dialogue: $reply"
else not_ok "unsigned reply refused: $reply"; fi
reply=$(swaks_send "$PF_RECV_PORT" bob@agri.gouv.fr "verify+abcdefghijklmnopqrstuvwxy4@certify.test" "$WORK/m2")
if [[ "$reply" == "550 5.1.1 unknown_token: "* ]]; then ok "unknown token refused at RCPT: $reply"
else not_ok "unknown token refused at RCPT: $reply"; fi
expect_eq "the refused account stays pending" pending "$(state bob)"

# Mail for another recipient is none of milterd's business: Postfix, told to send no DATA
# (SMFIP_NODATA), passes it to milterd to its end, and it is delivered as sent, with no
# Authentication-Results of ours, whatever token its content carries.
steps=$(sed -n 's/.*milter: protocol version 6, actions 0x[0-9a-f]*, steps 0x\([0-9a-f]*\).*/\1/p' \
	"$MILTERD_LOG" | tail -n 1)
if [ -n "$steps" ] && (( (16#$steps & 0x200) != 0 )); then ok "Postfix sends no DATA (steps 0x$steps)"
else not_ok "Postfix sends no DATA: steps '${steps}'"; fi
make_reply "$WORK/m6" someone@example.com "$t" --from "<someone@example.com>" --to "<postmaster@certify.test>" \
	--subject "about verify+$t@certify.test" --body "Hello."
reply=$(swaks_send "$PF_RECV_PORT" someone@example.com postmaster@certify.test "$WORK/m6")
if [[ "$reply" == 250* ]]; then ok "mail for another recipient accepted: $reply"
else not_ok "mail for another recipient: $reply"; fi
last=
if postfix_mail_wait "$PF_RECV_MAILDIR" 2 10; then last=$(postfix_mail_last "$PF_RECV_MAILDIR"); fi
if [ -n "$last" ] && grep -q '^Subject: about verify+' "$last" && ! grep -q 'milterd' "$last"; then
	ok "mail for another recipient delivered untouched"
else
	not_ok "mail for another recipient delivered untouched: ${last:-not delivered}"
fi
expect_eq "the token it mentions changes nothing" pending "$(state bob)"

# 3. milterd down: the MX answers 4xx, the relay keeps the reply; milterd back: the
#    relay's retry verifies it.
t=$(new_token carol carol@agri.gouv.fr)
signed_reply "$WORK/m3" carol@agri.gouv.fr "$t"
milterd_stop
reply=$(swaks_send "$PF_RECV_PORT" carol@agri.gouv.fr "verify+$t@certify.test" "$WORK/m3")
if [[ "$reply" == 4* ]]; then ok "milterd down: the MX answers $reply"; else not_ok "milterd down: MX answered $reply"; fi
reply=$(swaks_send "$PF_SEND_PORT" carol@agri.gouv.fr "verify+$t@certify.test" "$WORK/m3")
if [[ "$reply" == 250* ]] && postfix_sender_wait_queue 1 20; then
	ok "the agency's relay keeps the reply deferred ($(grep -c 'status=deferred' "$PF_SEND_LOG") deferral)"
else
	not_ok "relay deferral: $reply, queue $(postfix_sender_queue_count all)"
fi
expect_eq "still pending while milterd is down" pending "$(state carol)"
milterd_start "$WORK/milterd.conf" || not_ok "milterd restarts"
postfix_sender_flush 20
if postfix_sender_wait_queue 0 20 && [ "$(state carol)" = verified ]; then
	ok "milterd back: Postfix's retry delivers and verifies the account (nothing lost)"
else
	not_ok "after milterd is back: queue $(postfix_sender_queue_count all), state $(state carol)"
fi

# 3b. A reply to the verify address and postmaster, through the relay: the MX takes the
#    first recipient and tells the second 452 4.5.3 (the end of message's answer would be
#    its too: the relay may send either first); the relay sends it again on its own. The
#    account is verified, both copies arrive: nothing is lost.
t=$(new_token gus gus@agri.gouv.fr)
signed_reply "$WORK/m3b" gus@agri.gouv.fr "$t"
n=$(postfix_mail_count "$PF_RECV_MAILDIR")
reply=$(swaks_send "$PF_SEND_PORT" gus@agri.gouv.fr "verify+$t@certify.test,postmaster@certify.test" "$WORK/m3b")
# (Postfix's client takes a 452 after an accepted recipient as "too many recipients"
# and sends the rest at once, in a new transaction; a flush in case it deferred.)
postfix_mail_wait "$PF_RECV_MAILDIR" $((n + 2)) 10 || postfix_sender_flush 20
if [[ "$reply" == 250* ]] && postfix_sender_wait_queue 0 20 && postfix_mail_wait "$PF_RECV_MAILDIR" $((n + 2)) 10 &&
	[ "$(state gus)" = verified ] &&
	grep -q "reason=malformed reply=452 xcode=4\.5\.3 .*detail=a token and other recipients" "$MILTERD_LOG"; then
	ok "a reply to the verify address and postmaster: the second told 452, sent again; verified, both delivered"
else
	not_ok "verify address and postmaster: $reply, state $(state gus), $(( $(postfix_mail_count "$PF_RECV_MAILDIR") - n )) copies, queue $(postfix_sender_queue_count all): $(grep -E "452|postmaster" "$MILTERD_LOG" "$PF_RECV_LOG" | tail -n 6 | tr '\n' ' ')"
fi

# 4. SIGTERM while a transaction is under way: that one finishes, and a new one through
#    Postfix is told 421 4.3.2 at RCPT (Postfix does not wait for milterd's reply to MAIL).
t=$(new_token dave dave@agri.gouv.fr)
signed_reply "$WORK/m4" dave@agri.gouv.fr "$t"
before=$(grep -c "rcpt accepted" "$MILTERD_LOG")
mt message.lua "file=$WORK/m4" "rcpt=<verify+$t@certify.test>" expect=accept pause=3 >"$WORK/late.out" 2>&1 &
late=$!
# The transaction is under way once milterd took its RCPT (not after a fixed
# sleep: on a loaded machine miltertest may not have reached MAIL yet).
wait_for 10 sh -c "[ \$(grep -c 'rcpt accepted' '$MILTERD_LOG') -gt $before ]"
kill -TERM "$MILTERD_PID"
sleep 0.2
t=$(new_token erin erin@agri.gouv.fr)
signed_reply "$WORK/m5" erin@agri.gouv.fr "$t"
reply=$(swaks_send "$PF_RECV_PORT" erin@agri.gouv.fr "verify+$t@certify.test" "$WORK/m5")
if [[ "$reply" == "421 4.3.2 milterd is restarting, try again later"* ]]; then
	ok "milterd stopping: Postfix's new transaction is told $reply"
else
	not_ok "milterd stopping: Postfix's new transaction got $reply"
fi
# postlogd writes Postfix's log lines on its own time: wait for the line.
if postfix_wait_log "$PF_RECV_LOG" "milter-reject: RCPT from .*: 421 4\.3\.2 milterd is restarting" 5; then
	ok "milterd stopping: Postfix did not wait for a reply to MAIL, it heard the 421 at RCPT"
else
	not_ok "milterd stopping: Postfix did not wait for a reply to MAIL: no milter-reject 421 at RCPT in its log"
fi
if wait "$late"; then ok "milterd stopping: the transaction under way gets its answer"
else not_ok "milterd stopping: the transaction under way: $(cat "$WORK/late.out")"; fi
expect_eq "milterd stopping: the account under way verified, the new one still pending" \
	"verified pending" "$(state dave) $(state erin)"

# 5. smtpd chrooted in the queue directory (Debian's master.cf: chroot column y):
#    the socket goes inside the chroot, and smtpd_milters names it as smtpd sees
#    it (milterd(8), MTA CONFIGURATION); the path from outside gives 451.
chroot_sock="$PF_RECV_QUEUE/milterd/milterd.sock"
install -d -g postfix -m 0750 "$PF_RECV_QUEUE/milterd"
write_config "$WORK/chroot.conf" "socket = unix:$chroot_sock" "socket_owner = :postfix" "socket_mode = 0660"
milterd_start "$WORK/chroot.conf" || not_ok "milterd starts with its socket in the chroot"
sed -i "s/^\(127\.0\.0\.1:$PF_RECV_PORT inet *n *- *\)n /\1y /" "$PF_RECV_CONF/master.cf"
if grep -Eq "^127\.0\.0\.1:$PF_RECV_PORT +inet +n +- +y " "$PF_RECV_CONF/master.cf"; then
	ok "smtpd chrooted in the receiver's queue directory"
else
	not_ok "smtpd chrooted: $(grep smtpd "$PF_RECV_CONF/master.cf")"
fi
postfix_reconfig recv "smtpd_milters = unix:$chroot_sock"
t=$(new_token frank frank@agri.gouv.fr)
signed_reply "$WORK/m7" frank@agri.gouv.fr "$t"
reply=$(swaks_send "$PF_RECV_PORT" frank@agri.gouv.fr "verify+$t@certify.test" "$WORK/m7")
if [[ "$reply" == "451 4.7.1 Service unavailable"* ]]; then
	ok "chrooted smtpd, the socket's path from outside: $reply"
else
	not_ok "chrooted smtpd, the socket's path from outside: expected 451 4.7.1, got $reply"
fi
postfix_reconfig recv "smtpd_milters = unix:/milterd/milterd.sock"
reply=$(swaks_send "$PF_RECV_PORT" frank@agri.gouv.fr "verify+$t@certify.test" "$WORK/m7"); rc=$?
if [ "$rc" = 0 ] && [[ "$reply" == 250* ]]; then ok "chrooted smtpd, smtpd_milters = unix:/milterd/milterd.sock: $reply"
else not_ok "chrooted smtpd, smtpd_milters = unix:/milterd/milterd.sock: rc=$rc $reply"; fi
expect_eq "chrooted smtpd: the genuine reply verifies the account" verified "$(state frank)"
