#!/bin/bash
# selftest-postfix.sh - self-test of tests/lib/postfix.sh (private Postfix receiver/sender, swaks helpers) without milterd.
#
# tests/run runs it ("lib/selftest-postfix"); alone, as root: bash tests/lib/selftest-postfix.sh
# (KEEP_WORK=1 keeps the work directory). Prints "ok - NAME" or "not ok - NAME" per check.
# The "milter" is either none (MILTER "") or a socket nothing listens on (milter_default_action = tempfail).
set -u
if [ "$(id -u)" != 0 ]; then echo "skip - selftest-postfix: needs root (Postfix's master)"; exit 0; fi
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$LIB/common.sh"
. "$LIB/postfix.sh"
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/selftest-postfix.XXXXXX")
chmod 755 "$WORK"
STAMP="$WORK/.stamp"; : >"$STAMP"; sleep 0.01
cleanup() { postfix_stop_all; [ -n "${KEEP_WORK:-}" ] && echo "work dir kept: $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
npass=0 nfail=0
ok()   { echo "ok - $*"; npass=$((npass + 1)); }
bad()  { echo "not ok - $*"; nfail=$((nfail + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
ms()   { echo $(( (${EPOCHREALTIME/./} - ${T0/./}) / 1000 )); }
T_ALL=$EPOCHREALTIME

# Postfix's additions at the top of a delivered file: Return-Path, X-Original-To, Delivered-To, Received (folded).
strip_prefix() {
    awk 'p { print; next }
         /^(Return-Path|X-Original-To|Delivered-To|Received):/ { next }
         /^[ \t]/ { next }
         { p = 1; print }' "$1"
}
same_file() { cmp -s "$1" "$2" || { diff "$1" "$2" | head -n 10 | sed 's/^/#   /'; return 1; }; }

# A message meant to break a sloppy sender: swaks' own --data fix-up would expand "\n" and %TOKENS%,
# and add a blank line at the end; dot-stuffing is needed for the "." lines.
MSG="$WORK/msg.eml"
cat >"$MSG" <<'EOF'
From: Alice <alice@agri.gouv.fr>
To: Verify <verify+TOK123@certify.test>
Subject: selftest %DATE% literal \n and %TO_ADDRESS%
Date: Mon, 01 Jan 2024 10:00:00 +0000
Message-ID: <selftest-postfix@agri.gouv.fr>
DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=agri.gouv.fr; s=rsa2048;
	h=from:to:subject; bh=AAAA; b=BBBB
X-Folded: first
  second

.leading dot
..two dots
.
From the body (a leading "From " line of the message would become X-Mailbox-Line: in Postfix's cleanup)
a literal backslash-n: \n, %NEWLINE%, %FROM_ADDRESS%
8bit: é à ü
trailing spaces   
last line
EOF
LONGLINE=$(printf 'x%.0s' $(seq 1 1200))
echo "$LONGLINE" >>"$MSG"
sed 's/$/\r/' "$MSG" >"$WORK/msg-crlf.eml"
FROM=alice@agri.gouv.fr TO=verify+TOK123@certify.test
TO_RE=$(postfix_regex_quote "$TO")

# --- receiver without milter, sender
T0=$EPOCHREALTIME
check "postfix_receiver_start (no milter)" postfix_receiver_start "$WORK" ""
echo "# receiver on 127.0.0.1:$PF_RECV_PORT in $(ms) ms, log $PF_RECV_LOG"
T0=$EPOCHREALTIME
check "postfix_sender_start" postfix_sender_start "$WORK"
echo "# sender on 127.0.0.1:$PF_SEND_PORT in $(ms) ms, log $PF_SEND_LOG"
MASTERS="$(awk '{print $1}' "$PF_RECV_QUEUE/pid/master.pid") $(awk '{print $1}' "$PF_SEND_QUEUE/pid/master.pid")"
listen() { ss -lntH "( sport = :$PF_RECV_PORT or sport = :$PF_SEND_PORT )" | awk '{print $4}' | sort | tr '\n' ' '; }
check "both listen on 127.0.0.1 only: $(listen)" \
    eval '[ "$(listen)" = "$(printf "127.0.0.1:%s\n" $PF_RECV_PORT $PF_SEND_PORT | sort | tr "\n" " ")" ]'

conf_is() { [ "$(postconf -c "$1" -h "$2")" = "$3" ] || { echo "# $2 = '$(postconf -c "$1" -h "$2")'"; return 1; }; }
for kv in "myhostname=mx.certify.test" "smtpd_milters=" "non_smtpd_milters=" "milter_default_action=tempfail" \
          "milter_protocol=6" 'message_reject_characters=\0' "strict_rfc821_envelopes=yes" \
          "smtpd_forbid_bare_newline=yes" "smtpd_forbid_bare_newline_exclusions=" "mynetworks=127.0.0.0/8" \
          "recipient_delimiter=+" "virtual_mailbox_domains=certify.test"; do
    check "receiver: ${kv%%=*} = ${kv#*=}" conf_is "$PF_RECV_CONF" "${kv%%=*}" "${kv#*=}"
done
check "sender: relayhost = [127.0.0.1]:$PF_RECV_PORT" conf_is "$PF_SEND_CONF" relayhost "[127.0.0.1]:$PF_RECV_PORT"
check "sender: myhostname = mx.agri.gouv.fr" conf_is "$PF_SEND_CONF" myhostname mx.agri.gouv.fr
check "no warnings/errors in the logs so far" eval '! grep -Eq "(warning|error|fatal|panic):" "$PF_RECV_LOG" "$PF_SEND_LOG"'

# (1) swaks -> receiver, delivered, headers, byte-exact
T0=$EPOCHREALTIME
reply=$(swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$MSG"); rc=$?
check "(1) swaks -> receiver: rc 0, '$reply' ($(ms) ms)" eval '[ $rc = 0 ] && [[ "$reply" == "250 2.0.0 Ok: queued as "* ]]'
check "(1) swaks_send sets SWAKS_CODE=250 outside a subshell" \
    eval 'swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$MSG" >/dev/null && [ "$SWAKS_CODE" = 250 ]'
check "(1) transcript: CRLF on the wire, dot-stuffing, no %TOKEN% expansion" \
    eval 'grep -qxF $'"'"' -> ..leading dot\r'"'"' "$WORK/swaks.log" && grep -qxF $'"'"' -> ..\r'"'"' "$WORK/swaks.log" && grep -q "%FROM_ADDRESS%" "$WORK/swaks.log"'
check "(1) 2 messages delivered to \$PF_RECV_MAILDIR/new" postfix_mail_wait "$PF_RECV_MAILDIR" 2 10
f=$(postfix_mail_last "$PF_RECV_MAILDIR")
echo "# delivered: $f"
check "(1) headers: Delivered-To: $TO" grep -qx "Delivered-To: $TO" "$f"
check "(1) headers: Return-Path: <$FROM>" grep -qx "Return-Path: <$FROM>" "$f"
check "(1) headers: Received ... by mx.certify.test" grep -q "^	by mx.certify.test (Postfix) with ESMTP id" "$f"
check "(1) headers: original DKIM-Signature kept" grep -q "^DKIM-Signature: v=1; a=rsa-sha256" "$f"
strip_prefix "$f" >"$WORK/got.eml"
check "(1) delivered message (minus Postfix's prepended headers) == source, byte for byte" same_file "$MSG" "$WORK/got.eml"
check "(1) postfix_mail_grep finds it by Message-ID" eval '[ -n "$(postfix_mail_grep "$PF_RECV_MAILDIR" "^Message-ID: <selftest-postfix@")" ]'
swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$WORK/msg-crlf.eml" >/dev/null
postfix_mail_wait "$PF_RECV_MAILDIR" 3 10
strip_prefix "$(postfix_mail_last "$PF_RECV_MAILDIR")" >"$WORK/got-crlf.eml"
check "(1) the same message with CRLF line endings arrives identical" same_file "$MSG" "$WORK/got-crlf.eml"

# receiver policy details
reply=$(swaks_send "$PF_RECV_PORT" "$FROM" bob@example.com "$MSG"); rc=$?
check "receiver does not relay: rc $rc, '$reply'" eval '[ $rc = 24 ] && [[ "$reply" == "554 5.7.1 <bob@example.com>: Relay access denied" ]]'
printf 'From: a@agri.gouv.fr\nSubject: nul\n\nbad \0 byte\n' >"$WORK/nul.eml"
reply=$(swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$WORK/nul.eml"); rc=$?
check "message_reject_characters = \\0: rc $rc, '$reply'" eval '[ $rc = 26 ] && [[ "$reply" == 550\ 5.7.1* ]]'
reply=$(swaks_send "$PF_RECV_PORT" "" "$TO" "$MSG"); rc=$?
check "null sender (FROM \"\") accepted: '$reply'" eval '[ $rc = 0 ] && grep -q "^ -> MAIL FROM:<>" "$WORK/swaks.log"'
postfix_mail_wait "$PF_RECV_MAILDIR" 4 10
# SMTP smuggling: <LF>.<CR><LF> must not end DATA (smtpd_forbid_bare_newline = yes, no exclusions).
printf 'From: a@agri.gouv.fr\r\nSubject: outer\r\n\r\nbody\n.\r\nMAIL FROM:<evil@agri.gouv.fr>\r\nRCPT TO:<smuggled@certify.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n' >"$WORK/smuggle.eml"
n0=$(postfix_mail_count "$PF_RECV_MAILDIR")
reply=$(swaks_send_raw "$PF_RECV_PORT" "$FROM" "$TO" "$WORK/smuggle.eml"); rc=$?
postfix_mail_wait "$PF_RECV_MAILDIR" $((n0 + 1)) 10; sleep 0.3
check "smuggling attempt from 127.0.0.1 is one message, nothing smuggled ('$reply')" \
    eval '[ $rc = 0 ] && [ $(postfix_mail_count "$PF_RECV_MAILDIR") = $((n0 + 1)) ] && [ -z "$(postfix_mail_grep "$PF_RECV_MAILDIR" "^Delivered-To: smuggled@")" ]'
T0=$EPOCHREALTIME
postfix_reconfig recv 'smtpd_forbid_bare_newline_exclusions = $mynetworks'
echo "# postfix_reconfig (reload) in $(ms) ms"
swaks_send_raw "$PF_RECV_PORT" "$FROM" "$TO" "$WORK/smuggle.eml" >/dev/null
check "(why the exclusions must be empty) with the default exclusions (\$mynetworks) the smuggled message IS delivered" \
    eval 'postfix_mail_wait "$PF_RECV_MAILDIR" $((n0 + 3)) 10 && [ -n "$(postfix_mail_grep "$PF_RECV_MAILDIR" "^Delivered-To: smuggled@")" ]'
postfix_reconfig recv 'smtpd_forbid_bare_newline_exclusions ='

# (2) dead milter -> 451 directly
DEAD="unix:$WORK/nothing-listens.sock"
T0=$EPOCHREALTIME
check "postfix_receiver_set_milter $DEAD" postfix_receiver_set_milter "$DEAD"
echo "# set_milter (reload) in $(ms) ms"
n0=$(postfix_mail_count "$PF_RECV_MAILDIR")
reply=$(swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$MSG"); rc=$?
check "(2) dead milter: swaks -> receiver rc $rc (23 = MAIL), '$reply'" \
    eval '[ $rc = 23 ] && [ "$reply" = "451 4.7.1 Service unavailable - try again later" ]'
# postlogd writes the line on its own time: wait for it rather than grep at once.
check "(2) receiver log: connect to Milter service ... failed" \
    postfix_wait_log "$PF_RECV_LOG" "warning: connect to Milter service $(postfix_regex_quote "$DEAD"): No such file or directory" 5
check "(2) the <> sender gets 451 too" eval '[ "$(swaks_send "$PF_RECV_PORT" "" "$TO" "$MSG")" = "451 4.7.1 Service unavailable - try again later" ]'
postfix_receiver_set_milter "inet:127.0.0.1:$(free_port)"
check "(2) dead inet: milter -> 451 too" eval '[ "$(swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$MSG")" = "451 4.7.1 Service unavailable - try again later" ]'
postfix_receiver_set_milter "$DEAD"

# (3) swaks -> sender -> receiver (dead milter): deferred; milter back; flush; delivered
mark=$(postfix_log_mark "$PF_SEND_LOG")
reply=$(swaks_send "$PF_SEND_PORT" "$FROM" "$TO" "$MSG"); rc=$?
QID=$(postfix_queue_id_of "$reply")
check "(3) swaks -> sender accepted: '$reply' (queue id $QID)" eval '[ $rc = 0 ] && [ -n "$QID" ]'
check "(3) sender log: $QID deferred by 451 4.7.1" \
    postfix_wait_log "$PF_SEND_LOG" " $QID: to=<$TO_RE>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$PF_RECV_PORT, .*status=deferred \(host .* said: 451 4\.7\.1 " 10 "$mark"
check "(3) postfix_sender_wait_queue 1 (deferred)" postfix_sender_wait_queue 1 5
check "(3) postfix_sender_queue_count = 1, all queues = 1" \
    eval '[ "$(postfix_sender_queue_count)" = 1 ] && [ "$(postfix_sender_queue_count all)" = 1 ]'
check "(3) nothing delivered" eval '[ "$(postfix_mail_count "$PF_RECV_MAILDIR")" = $n0 ]'
mark=$(postfix_log_mark "$PF_SEND_LOG")
T0=$EPOCHREALTIME
check "(3) flush while the milter is still dead: retried and deferred again" \
    eval 'postfix_sender_flush 10 && postfix_wait_log "$PF_SEND_LOG" " $QID: .*status=deferred" 1 "$mark"'
echo "# flush (retry + deferral) in $(ms) ms"
check "(3) still 1 deferred" postfix_sender_wait_queue 1 5
check "(3) no automatic retry within 2 s (backoff $(postconf -c "$PF_SEND_CONF" -h minimal_backoff_time))" \
    eval 'm=$(postfix_log_mark "$PF_SEND_LOG"); ! postfix_wait_log "$PF_SEND_LOG" " $QID: to=" 2 "$m"'
postfix_receiver_set_milter ""
mark=$(postfix_log_mark "$PF_SEND_LOG")
T0=$EPOCHREALTIME
check "(3) milter back (set_milter \"\"), postfix_sender_flush 10" postfix_sender_flush 10
echo "# flush (retry + delivery) in $(ms) ms"
check "(3) sender log: $QID status=sent" postfix_wait_log "$PF_SEND_LOG" " $QID: to=<$TO_RE>, .*status=sent \(250 2\.0\.0 Ok: queued as " 5 "$mark"
check "(3) delivered" postfix_mail_wait "$PF_RECV_MAILDIR" $((n0 + 1)) 10
check "(3) sender queue empty (all queues)" eval '[ "$(postfix_sender_queue_count all)" = 0 ]'
f=$(postfix_mail_last "$PF_RECV_MAILDIR")
check "(3) relayed message: Received from mx.agri.gouv.fr by mx.certify.test" grep -q "^Received: from mx.agri.gouv.fr (localhost \[127.0.0.1\])" "$f"
check "(3) relayed message: sender's Received (id $QID) below it" grep -q "by mx.agri.gouv.fr (Postfix) with ESMTP id $QID" "$f"
strip_prefix "$f" >"$WORK/got-relayed.eml"
check "(3) relayed message == source, byte for byte (1200-char line not folded)" same_file "$MSG" "$WORK/got-relayed.eml"

# restart (same port, same Maildir), back to the dead milter and again without
T0=$EPOCHREALTIME
check "postfix_receiver_restart $DEAD" postfix_receiver_restart "$DEAD"
echo "# postfix_receiver_restart in $(ms) ms"
check "after restart: same port $PF_RECV_PORT, dead milter -> 451" \
    eval '[ "$(swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$MSG")" = "451 4.7.1 Service unavailable - try again later" ]'
n0=$(postfix_mail_count "$PF_RECV_MAILDIR")
postfix_receiver_restart ""
check "after restart without milter: 250 and delivered next to the earlier mail" \
    eval '[[ "$(swaks_send "$PF_RECV_PORT" "$FROM" "$TO" "$MSG")" == 250* ]] && postfix_mail_wait "$PF_RECV_MAILDIR" $((n0 + 1)) 10'
MASTERS="$MASTERS $(awk '{print $1}' "$PF_RECV_QUEUE/pid/master.pid")"

# sender's own bounces stay local
mark=$(postfix_log_mark "$PF_RECV_LOG")
reply=$(swaks_send "$PF_SEND_PORT" "$FROM" bob@example.com "$MSG"); rc=$?
check "bounce: 554 from the receiver -> DSN in \$PF_SEND_MAILDIR" \
    eval 'postfix_mail_wait "$PF_SEND_MAILDIR" 1 10 && grep -q "Relay access denied" "$(postfix_mail_last "$PF_SEND_MAILDIR")"'
check "bounce: the DSN was not sent to the receiver" eval '! tail -n +$((mark + 1)) "$PF_RECV_LOG" | grep -q "from=<>"'
check "sender queue empty" eval '[ "$(postfix_sender_queue_count all)" = 0 ]'
check "swaks connect failure: rc 2 and a *** line" \
    eval 'r=$(swaks_send "$(free_port)" "$FROM" "$TO" "$MSG"); [ $? = 2 ] && [[ "$r" == "*** "* ]]'

check "no fatal/panic in the logs" eval '! grep -Eq "(fatal|panic):" "$PF_RECV_LOG" "$PF_SEND_LOG"'
grep -E "warning:" "$PF_RECV_LOG" "$PF_SEND_LOG" | grep -v "connect to Milter service" | sed 's/^/# /'

# stop
T0=$EPOCHREALTIME
postfix_stop_all
echo "# postfix_stop_all in $(ms) ms"
alive() { local p; for p in $MASTERS; do ps -o pid=,stat=,comm= -s "$p" | awk '$2 !~ /^Z/'; done; }
check "no process left (sessions of masters $MASTERS)" eval '[ -z "$(alive)" ]'
check "ports closed" eval '[ -z "$(listen)" ]'
check "postfix_stop_all again is a no-op" postfix_stop_all
# Postfix's log files only in /var/log: the machine's other logs (dpkg.log...) may move meanwhile.
check "nothing written to /etc/postfix /var/spool/postfix /var/lib/postfix /var/log/{mail,postfix}*" \
    eval '[ -z "$(find /etc/postfix /var/spool/postfix /var/lib/postfix /var/log/mail* /var/log/postfix* \
        -newer "$STAMP" 2>/dev/null | head)" ]'
T0=$T_ALL
echo "# selftest-postfix: $npass passed, $nfail failed ($(ms) ms)"
[ "$nfail" = 0 ]
