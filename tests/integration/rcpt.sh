# rcpt.sh — RCPT-time screening of verify+TOKEN recipients against the real database:
# malformed/unknown/expired/revoked refused with the reason, live tokens continue,
# database down gives 451 and milterd recovers by itself.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
# Listening on the unix socket the configuration names, and saying so.
if [ -S "$WORK/milterd.sock" ] && ss -Hxl | awk '{print $5}' | grep -qxF "$WORK/milterd.sock" &&
	grep -qF "milterd started on unix:$WORK/milterd.sock," "$MILTERD_LOG"; then
	ok "milterd starts on a unix socket"
else
	not_ok "milterd starts on a unix socket: $(ls -l "$WORK/milterd.sock" 2>&1); $(tail -n 2 "$MILTERD_LOG" | tr '\n' ' ')"
fi

live=$(new_token alice alice@agri.gouv.fr)
done_tok=$(new_token bob bob@agri.gouv.fr)
pg_psql "UPDATE milterd.requests SET state = 'verified', verified_at = now() WHERE account = 'bob'"
old=$(new_token carol carol@agri.gouv.fr '1 second')
revoked=$(new_token dave dave@agri.gouv.fr)
new_token dave dave@agri.gouv.fr >/dev/null	# supersedes the first
unknown=abcdefghijklmnopqrstuvwxy4
sleep 1.1	# let carol's request expire

# rcpt_case NAME RCPT EXPECT [LOG_REGEX]
rcpt_case() {
	local before; before=$(wc -l <"$MILTERD_LOG")
	if mt rcpt.lua "rcpt=$2" "expect=$3" "qid=${QID:-Q$RANDOM}" >"$WORK/mt.out" 2>&1; then
		if [ -z "${4:-}" ] || tail -n +"$((before + 1))" "$MILTERD_LOG" | grep -Eq -- "$4"; then
			ok "$1"
		else
			not_ok "$1: no /$4/ in milterd's log"
		fi
	else
		not_ok "$1: $(tr '\n' ' ' <"$WORK/mt.out")"
	fi
}

rcpt_case "live token continues" "<verify+$live@certify.test>" continue "state=pending rcpt accepted"
rcpt_case "token and domain are case-insensitive" \
	"<Verify+$(echo "$live" | tr a-z A-Z)@CERTIFY.test>" continue "state=pending"
rcpt_case "already verified token continues (retried copy gets its 250 later)" \
	"<verify+$done_tok@certify.test>" continue "state=verified rcpt accepted"
rcpt_case "unknown token refused 550 unknown_token" "<verify+$unknown@certify.test>" reply \
	"reason=unknown_token reply=550"
rcpt_case "malformed token refused 550 malformed" "<verify+not-a-token@certify.test>" reply \
	"reason=malformed reply=550"
rcpt_case "bare verify address refused 550 malformed" "<verify@certify.test>" reply \
	"reason=malformed reply=550"
rcpt_case "expired token refused 550 expired" "<verify+$old@certify.test>" reply \
	"reason=expired reply=550"
rcpt_case "superseded (revoked) token refused 550 unknown_token" "<verify+$revoked@certify.test>" \
	reply "reason=unknown_token reply=550"
rcpt_case "other recipients pass untouched" "<postmaster@certify.test>" continue
# A token and another recipient never share a message: the end of message's
# answer (550, 451, on_success = discard) would be the other's too. The one
# that comes second gets 452 4.5.3, and its MTA sends it again on its own.
rcpt_case2() {	# NAME RCPT EXPECT RCPT2 EXPECT2 [LOG_REGEX]
	local before; before=$(wc -l <"$MILTERD_LOG")
	if mt rcpt.lua "rcpt=$2" "expect=$3" "rcpt2=$4" "expect2=$5" "qid=Q$RANDOM" >"$WORK/mt.out" 2>&1; then
		if [ -z "${6:-}" ] || tail -n +"$((before + 1))" "$MILTERD_LOG" | grep -Eq -- "$6"; then
			ok "$1"
		else
			not_ok "$1: no /$6/ in milterd's log"
		fi
	else
		not_ok "$1: $(tr '\n' ' ' <"$WORK/mt.out")"
	fi
}
rcpt_case2 "a token, then postmaster: postmaster told 452 4.5.3 (sent again on its own)" \
	"<verify+$live@certify.test>" continue "<postmaster@certify.test>" reply \
	"rcpt=<postmaster@certify.test> reason=malformed reply=452 xcode=4.5.3 detail=a token and other recipients"
rcpt_case2 "postmaster, then a token: the token told 452 4.5.3" \
	"<postmaster@certify.test>" continue "<verify+$live@certify.test>" reply \
	"reason=malformed reply=452 xcode=4.5.3 .*detail=a token and other recipients"
rcpt_case2 "two other recipients pass untouched" \
	"<postmaster@certify.test>" continue "<abuse@certify.test>" continue
rcpt_case2 "a token twice: the same reply, passes" \
	"<verify+$live@certify.test>" continue "<verify+$live@certify.test>" continue
QID=QTAG1 rcpt_case "log lines carry the MTA queue id" "<verify+$unknown@certify.test>" reply \
	"QTAG1: token=[0-9a-f]{12} reason=unknown_token"
if grep -qi -e "$live" -e "$unknown" "$MILTERD_LOG"; then
	not_ok "no token in the log: a token was logged"
else
	ok "no token in the log (hash prefix only)"
fi

# The database goes away: 451, never a pass; it comes back: milterd recovers alone.
pg_stop
rcpt_case "database down gives 451 temporary" "<verify+$live@certify.test>" reply \
	"reason=temporary reply=451"
rcpt_case "database down: malformed still refused 550 without the database" \
	"<verify+nope@certify.test>" reply "reason=malformed reply=550"
pg_start "$PG_TOPWORK" || not_ok "database restarts"
recovered=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	if mt rcpt.lua "rcpt=<verify+$live@certify.test>" expect=continue >/dev/null 2>&1; then
		recovered=$i; break
	fi
	sleep 0.5
done
if [ "$recovered" -gt 0 ]; then
	ok "milterd recovers by itself once the database is back (attempt $recovered)"
else
	not_ok "milterd recovers by itself once the database is back"
fi
kill -0 "$MILTERD_PID" 2>/dev/null && ok "milterd still running after the outage" ||
	not_ok "milterd still running after the outage"
