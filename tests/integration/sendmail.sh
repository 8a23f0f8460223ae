# sendmail.sh — a real Sendmail 8.17 (Debian's, unpacked) in front of milterd with the
# README's INPUT_MAIL_FILTER line unchanged; swaks sends dkimpy-signed replies. A genuine
# reply verifies and is delivered with our Authentication-Results, a forged one gets the
# reason in the SMTP dialogue, an unknown token is refused at RCPT, a 2 MB reply and a
# transaction with several recipients go through, and with milterd down Sendmail answers
# 4xx (F=T) until it is back.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
. "$TOP/tests/lib/postfix.sh"   # swaks_send and the Maildir helpers
. "$TOP/tests/lib/sendmail.sh"
if [ "$(id -u)" != 0 ]; then echo "skip - sendmail: needs root (Sendmail's daemon, namespaces)"; exit 0; fi
cleanup() { milterd_stop; sendmail_stop; }
trap cleanup EXIT
trap 'exit 130' INT TERM
SIGN="$TOP/tests/lib/dkim-sign"
chmod 755 "$WORK"

# The README's line, as an administrator would paste it: its socket, /run/milterd/milterd.sock,
# is $WORK/milterd.sock seen from Sendmail's namespace (sendmail_start).
line=$(grep -m 1 "^INPUT_MAIL_FILTER(\`milterd'" "$TOP/README.md")
[ -n "$line" ] || { not_ok "the README has an INPUT_MAIL_FILTER line for milterd"; exit 1; }
sendmail_fetch || { not_ok "Debian's Sendmail unpacked (apt-get download $SM_DEBS)"; exit 1; }
db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
sendmail_start "$WORK" "$WORK" "$line" || { not_ok "Sendmail starts"; exit 1; }
banner=$(smtp_banner "$SM_PORT")
if [[ "$banner" == "220 mx.certify.test ESMTP Sendmail ${SM_VERSION%%-*}/"* ]]; then
	ok "private Sendmail $SM_VERSION answers on 127.0.0.1:$SM_PORT: $banner"
else
	not_ok "private Sendmail $SM_VERSION on 127.0.0.1:$SM_PORT said '$banner'"
fi
inner=$(sed -n "s/^INPUT_MAIL_FILTER(\`milterd', \`\(.*\)')\$/\1/p" <<<"$line")
if [ -n "$inner" ] && grep -qxF "Xmilterd, $inner" "$SM_CF"; then
	ok "Sendmail's .cf holds the README's filter unchanged: Xmilterd, $inner"
else
	not_ok "Sendmail's .cf holds the README's filter: no 'Xmilterd, $inner' in $SM_CF"
fi

# signed_reply FILE FROM TOKEN [unsigned|SIGNING-DOMAIN] [BODY-FILE]
signed_reply() {
	local d="${4:-agri.gouv.fr}"
	make_reply "$1.raw" "$2" "$3" ${5:+--body-file "$5"}
	if [ "$d" = unsigned ]; then cp "$1.raw" "$1"; else
		"$SIGN" --domain "$d" --selector rsa2048 --key "$DNS_KEYS/$d.rsa2048.key" <"$1.raw" >"$1"; fi
}
state() { pg_psql "SELECT state FROM milterd.verification_status('$1')"; }
# authres FILE: our Authentication-Results header of a delivered copy, unfolded.
authres() {
	awk '/^$/ { exit } /^[^ \t]/ { h = 0 } /^Authentication-Results:/ { h = 1; printf "%s", $0; next }
		h && /^[ \t]/ { sub(/^[ \t]+/, " "); printf "%s", $0 } END { print "" }' "$1"
}
# smtp_line REGEX: the SMTP dialogue of the last swaks_send has a server line matching REGEX.
smtp_line() { grep -Eq -- "^ *<(-|\*\*) +$1" "$WORK/swaks.log"; }

# 1. A genuine reply: 250, verified, delivered with our Authentication-Results.
t=$(new_token alice alice@agri.gouv.fr)
signed_reply "$WORK/m1" alice@agri.gouv.fr "$t"
reply=$(swaks_send "$SM_PORT" alice@agri.gouv.fr "verify+$t@certify.test" "$WORK/m1"); rc=$?
if [ "$rc" = 0 ] && [[ "$reply" == "250 2.0.0 "* ]]; then ok "genuine reply: $reply"
else not_ok "genuine reply: rc=$rc $reply"; fi
expect_eq "the account is verified" verified "$(state alice)"
copy=
postfix_mail_wait "$SM_MAILDIR" 1 10 && copy=$(postfix_mail_last "$SM_MAILDIR")
if [ -z "$copy" ]; then
	not_ok "the genuine reply is delivered: nothing in $SM_MAILDIR/new"
else
	ok "the genuine reply is delivered"
	# The exact first line: "Authentication-Results:", one space, our authserv-id.
	first=$(grep -m 1 '^Authentication-Results:' "$copy")
	expect_eq "the delivered copy's Authentication-Results line" \
		"Authentication-Results: mx.certify.test;" "$first"
	ar=$(authres "$copy")
	re='^Authentication-Results: ?mx\.certify\.test; dkim=pass reason="aligned, token signed" header\.d=agri\.gouv\.fr header\.s=rsa2048 header\.a=rsa-sha256 header\.b=[^ ;]+;.* \(milterd: verified\)$'
	if [[ "$ar" =~ $re ]] && [ "$(grep -c '^Authentication-Results:' "$copy")" = 1 ]; then
		ok "our Authentication-Results says dkim=pass, aligned, verified"
	else
		not_ok "our Authentication-Results: '$ar'"
	fi
fi

# 2. Forgeries: refused in the SMTP dialogue with the reason text, the account stays pending.
t=$(new_token bob bob@agri.gouv.fr)
signed_reply "$WORK/m2" bob@agri.gouv.fr "$t" unsigned
reply=$(swaks_send "$SM_PORT" bob@agri.gouv.fr "verify+$t@certify.test" "$WORK/m2"); rc=$?
expect_eq "unsigned reply refused at end of data with the reason" \
	"26 550 5.7.20 $(reply_text not_authenticated)" "$rc $reply"
signed_reply "$WORK/m3" bob@agri.gouv.fr "$t" interieur.gouv.fr
reply=$(swaks_send "$SM_PORT" bob@agri.gouv.fr "verify+$t@certify.test" "$WORK/m3"); rc=$?
expect_eq "reply signed by another ministry (not aligned) refused with the reason" \
	"26 550 5.7.22 $(reply_text not_authenticated)" "$rc $reply"
expect_eq "the refused account stays pending" pending "$(state bob)"

# 3. An unknown token: refused at RCPT (swaks' exit code 24), before any data.
reply=$(swaks_send "$SM_PORT" bob@agri.gouv.fr "verify+abcdefghijklmnopqrstuvwxy4@certify.test" "$WORK/m2"); rc=$?
if [ "$rc" = 24 ] && [[ "$reply" == "550 5.1.1 "*"$(reply_text unknown_token)"* ]] && ! smtp_line 354; then
	ok "unknown token refused at RCPT: $reply"
else
	not_ok "unknown token refused at RCPT: rc=$rc $reply"
fi

# 4. A 2 MB reply: its whole body reaches milterd (Sendmail sends it in 64 KB chunks), verified.
t=$(new_token carol carol@agri.gouv.fr)
base64 -w 76 </dev/urandom | head -c $((2 * 1024 * 1024)) >"$WORK/big.body"
signed_reply "$WORK/m4" carol@agri.gouv.fr "$t" agri.gouv.fr "$WORK/big.body"
n=$(postfix_mail_count "$SM_MAILDIR")
reply=$(swaks_send "$SM_PORT" carol@agri.gouv.fr "verify+$t@certify.test" "$WORK/m4"); rc=$?
copy=
postfix_mail_wait "$SM_MAILDIR" $((n + 1)) 20 && copy=$(postfix_mail_last "$SM_MAILDIR")
if [ "$rc" = 0 ] && [[ "$reply" == "250 "* ]] && [ "$(state carol)" = verified ] &&
	[ -n "$copy" ] && [ "$(stat -c %s "$copy")" -gt $((2 * 1024 * 1024)) ] &&
	[[ "$(authres "$copy")" == *"(milterd: verified)" ]]; then
	ok "2 MB reply verified and delivered ($(stat -c %s "$copy") bytes)"
else
	not_ok "2 MB reply: rc=$rc $reply, state $(state carol), copy ${copy:-none}"
fi

# 5. Several recipients in one transaction: the verification address, another local one, and a
#    second token: both after the first told 452 4.5.3 (sent again separately: the end of
#    message's answer would be theirs too); the message verifies the first and is delivered
#    to it alone.
t=$(new_token dave dave@agri.gouv.fr)
t2=$(new_token erin erin@agri.gouv.fr)
signed_reply "$WORK/m5" dave@agri.gouv.fr "$t"
n=$(postfix_mail_count "$SM_MAILDIR")
reply=$(swaks_send "$SM_PORT" dave@agri.gouv.fr \
	"verify+$t@certify.test,postmaster@certify.test,verify+$t2@certify.test" "$WORK/m5"); rc=$?
if [[ "$reply" == "250 "* ]] && [ "$(grep -Ec '^ *<(-|\*\*) +452 4\.5\.3 ' "$WORK/swaks.log")" = 2 ] &&
	[ "$(grep -Ec '^ *<- +250 2\.1\.5 ' "$WORK/swaks.log")" = 1 ]; then
	ok "several recipients: the token accepted, postmaster and the second token told 452 4.5.3, the message $reply"
else
	not_ok "several recipients: rc=$rc $reply: $(grep -E '^ *<' "$WORK/swaks.log" | tail -n 6 | tr '\n' ' ')"
fi
expect_eq "several recipients: the first token verified, the second still pending" \
	"verified pending" "$(state dave) $(state erin)"
if postfix_mail_wait "$SM_MAILDIR" $((n + 1)) 10 && sleep 1 && [ "$(postfix_mail_count "$SM_MAILDIR")" = $((n + 1)) ]; then
	ok "several recipients: one copy, for the accepted recipient"
else
	not_ok "several recipients: $(( $(postfix_mail_count "$SM_MAILDIR") - n )) copies delivered, expected 1"
fi

# 6. milterd down: F=T makes Sendmail answer 4xx (the sender's MTA keeps the reply); back up,
#    the same reply verifies.
t=$(new_token frank frank@agri.gouv.fr)
signed_reply "$WORK/m6" frank@agri.gouv.fr "$t"
milterd_stop
mark=$(sendmail_log_mark)
reply=$(swaks_send "$SM_PORT" frank@agri.gouv.fr "verify+$t@certify.test" "$WORK/m6"); rc=$?
if [[ "$reply" == 4[0-9][0-9]" 4."* ]]; then ok "milterd down: Sendmail answers $reply"
else not_ok "milterd down: Sendmail answered rc=$rc $reply"; fi
if sendmail_wait_log 'Milter: initialization failed, temp failing commands' 5 "$mark"; then
	ok "milterd down: Sendmail's log says it temp-fails for want of the filter (F=T)"
else
	not_ok "milterd down: nothing about the filter in Sendmail's log: $(tail -n +"$((mark + 1))" "$SM_LOG" | tail -n 3 | tr '\n' ' ')"
fi
expect_eq "still pending while milterd is down" pending "$(state frank)"
milterd_start "$WORK/milterd.conf" || not_ok "milterd restarts"
reply=$(swaks_send "$SM_PORT" frank@agri.gouv.fr "verify+$t@certify.test" "$WORK/m6"); rc=$?
if [[ "$reply" == "250 "* ]] && [ "$(state frank)" = verified ]; then
	ok "milterd back: the retried reply verifies ($reply)"
else
	not_ok "milterd back: rc=$rc $reply, state $(state frank)"
fi

# 7. Nothing left behind: no process in Sendmail's PID namespace once it is stopped.
sendmail_stop
left=$(sendmail_procs)
if [ -n "$SM_NS" ] && [ -z "$left" ]; then ok "Sendmail stopped, no process of its left"
else not_ok "Sendmail stopped: namespace '${SM_NS}', processes left: '$left'"; fi
