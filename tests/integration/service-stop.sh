# service-stop.sh — SIGTERM lets a transaction under way finish with its answer,
# turns new ones away with 421 at RCPT, then milterd exits and removes its pidfile.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT

db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf" "pidfile = $WORK/milterd.pid"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
tok=$(new_token alice alice@agri.gouv.fr)

# SIGTERM in the middle of a transaction: it gets its answer, then milterd exits.
reply="$WORK/reply"
make_reply - alice@agri.gouv.fr "$tok" --name "" --subject "Re: [$tok]" --body yes |
	"$TOP/tests/lib/dkim-sign" --domain agri.gouv.fr --selector rsa2048 \
	--key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" >"$reply"
before=$(grep -c "rcpt accepted" "$MILTERD_LOG")
mt message.lua "file=$reply" "rcpt=<verify+$tok@certify.test>" expect=accept pause=2 >"$WORK/late.out" 2>&1 &
late=$!
# Under way once milterd took its RCPT (a fixed sleep races on a loaded machine).
wait_for 10 sh -c "[ \$(grep -c 'rcpt accepted' '$MILTERD_LOG') -gt $before ]"
kill -TERM "$MILTERD_PID"
# Meanwhile a new transaction is told to come back later: miltertest does not
# wait for a reply to MAIL, so milterd's 421 comes at RCPT, even for a live token.
sleep 0.2
if mt rcpt.lua "rcpt=<verify+$tok@certify.test>" expect=reply >"$WORK/drain.out" 2>&1; then
	ok "while stopping, a new transaction gets a reply code at RCPT"
else
	not_ok "while stopping, a new transaction: $(cat "$WORK/drain.out")"
fi
expect_grep "the reply is milterd's 421, logged" "told 421 4.3.2 milterd is restarting" "$MILTERD_LOG"
if wait "$late"; then
	ok "SIGTERM lets the running transaction finish with its answer"
else
	not_ok "SIGTERM lets the running transaction finish: $(cat "$WORK/late.out")"
fi
wait_for 10 sh -c "! kill -0 $MILTERD_PID 2>/dev/null" && ok "milterd exits after SIGTERM" ||
	not_ok "milterd exits after SIGTERM"
expect_eq "the account verified by that transaction" verified \
	"$(pg_psql "SELECT state FROM milterd.verification_status('alice')")"
[ ! -e "$WORK/milterd.pid" ] && ok "pidfile removed at exit" || not_ok "pidfile removed at exit"
MILTERD_PID=
