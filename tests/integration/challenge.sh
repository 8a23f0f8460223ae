# challenge.sh — challenge mails: rendered in French and English and checked by an
# independent parser (Python's email package); sent through sendmail -t -i; a
# dkimpy-signed reply to a rendered challenge verifies the account through milterd.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT
C="$BUILD/milterctl"
PY=/usr/bin/python3

db_reset || { not_ok "database reset"; exit 1; }
# A sendmail that records what it is given.
cat >"$WORK/sendmail" <<SH
#!/bin/sh
echo "\$@" >"$WORK/sendmail.args"
cat >"$WORK/sendmail.msg"
SH
chmod +x "$WORK/sendmail"
write_config "$WORK/milterd.conf" "sendmail_path = $WORK/sendmail" "service_name = Mastodon des agents de l'État"
CC="$C -c $WORK/milterd.conf"

# check_challenge FILE LANG ACCOUNT EMAIL: parse and check with Python's email package.
check_challenge() {
	$PY - "$@" <<'PYEOF'
import email, email.policy, sys, re, email.utils
path, lang, account, addr = sys.argv[1:5]
raw = open(path, 'rb').read()
if sys.argv[5:] == ['lf']:     # handed to sendmail: local submission uses LF
    assert b'\r' not in raw, "LF line endings for sendmail"
    raw = raw.replace(b'\n', b'\r\n')
assert b'\r\n' in raw, "CRLF line endings"
assert all(b < 128 for b in raw.split(b'\r\n\r\n', 1)[0]), "header block is ASCII"
msg = email.message_from_bytes(raw, policy=email.policy.default)
for h in ('From', 'To', 'Reply-To', 'Subject', 'Date', 'Message-ID'):
    assert msg[h], f"{h} missing"
subject = str(msg['Subject'])
want = {'fr': f'Vérification de votre compte {account} [', 'en': f'Verify your account {account} ['}[lang]
assert subject.startswith(want), f"Subject decodes to {subject!r}"
token = re.search(r'\[([a-z2-7]{26})\]', subject).group(1)
assert msg['Reply-To'].addresses[0].addr_spec == f'verify+{token}@certify.test', msg['Reply-To']
assert msg['To'].addresses[0].addr_spec == addr
# The service's name (not ASCII here) is the display name; the address stays a mailbox.
sender = msg['From'].addresses[0]
assert (sender.display_name, sender.addr_spec) == ("Mastodon des agents de l'État", 'verify@certify.test'), \
    f"From decodes to {sender.display_name!r} <{sender.addr_spec}>"
assert email.utils.parsedate_to_datetime(str(msg['Date'])) is not None
body = msg.get_content()
assert token in body and f'verify+{token}@certify.test' in body, "token in the body"
assert ('expire' in body), "deadline stated"
print(token)
PYEOF
}

for lang in fr en; do
	$CC request --account "agent-$lang" --email "Agent.$lang@agri.gouv.fr" --lang "$lang" --print \
		>"$WORK/challenge.$lang" 2>"$WORK/err"
	if tok=$(check_challenge "$WORK/challenge.$lang" "$lang" "agent-$lang" "agent.$lang@agri.gouv.fr" 2>&1); then
		ok "challenge ($lang) parses; Subject decodes; token in Subject, Reply-To and body"
	else
		not_ok "challenge ($lang): $tok $(cat "$WORK/err")"
	fi
done

out=$($CC request --account sent --email sent@agri.gouv.fr --send 2>&1); rc=$?
if [ "$rc" = 0 ] && [ "$(cat "$WORK/sendmail.args")" = "-t -i" ] &&
	tok=$(check_challenge "$WORK/sendmail.msg" fr sent sent@agri.gouv.fr lf 2>&1); then
	ok "--send submits the challenge through sendmail -t -i ($out)"
else
	not_ok "--send: rc=$rc $out $tok"
fi
out=$($CC request --account gmail --email someone@gmail.com --send 2>&1); rc=$?
expect_eq "no challenge to a domain the policy does not allow" \
	"1/milterctl: someone@gmail.com: domain not allowed by policy $TOP/policies/gouv-fr.conf" "$rc/$out"
printf '#!/bin/sh\ncat >/dev/null\nexit 75\n' >"$WORK/sendmail"
out=$($CC request --account fail --email fail@agri.gouv.fr --send 2>&1); rc=$?
expect_eq "a failing sendmail is reported, exit 5" \
	"5/milterctl: challenge not sent: $WORK/sendmail -t -i failed (exit 75)" "$rc/$out"
# A sendmail that takes the mail and hangs, with a child of its own (Postfix's
# runs postdrop): killed after sendmail_timeout, child too; the challenge counts
# as not sent and its request is withdrawn.
cat >"$WORK/sendmail.hung" <<SH
#!/bin/sh
cat >/dev/null
sleep 300 &
echo \$! >"$WORK/hung.child"
exec sleep 300
SH
chmod +x "$WORK/sendmail.hung"
write_config "$WORK/hung.conf" "sendmail_path = $WORK/sendmail.hung" "sendmail_timeout = 1"
start=$(date +%s)
out=$(timeout -k 5 60 "$C" -c "$WORK/hung.conf" request --account hung --email hung@agri.gouv.fr --send 2>&1); rc=$?
took=$(( $(date +%s) - start ))
expect_eq "a hung sendmail is killed after sendmail_timeout: exit 5, said, within timeout(1)'s 60 s" \
	"5/milterctl: challenge not sent: $WORK/sendmail.hung -t -i did not finish within sendmail_timeout (1 s); killed/yes" \
	"$rc/$out/$([ "$took" -lt 60 ] && echo yes || echo "no: $took s")"
# running PID: not gone, nor a zombie waiting to be reaped
running() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }
child=$(cat "$WORK/hung.child" 2>/dev/null || echo 0)
wait_for 5 eval "! running $child"
expect_eq "... its child killed with it, the request withdrawn" "gone|0" \
	"$(running "$child" && echo alive || echo gone)|$(pg_psql "SELECT count(*) FROM milterd.requests WHERE account = 'hung'")"
out=$($CC request --account x --email x@agri.gouv.fr --lang de 2>&1); rc=$?
expect_eq "unknown language refused" "2/milterctl: --lang must be fr or en" "$rc/$out"

# The agent answers the French challenge from a mail program: Python builds
# the reply (Re: subject re-encoded its own way), dkimpy signs it.
tok=$(check_challenge "$WORK/challenge.fr" fr agent-fr agent.fr@agri.gouv.fr)
$PY - "$WORK/challenge.fr" >"$WORK/reply" <<'PYEOF'
import email, email.policy, sys
from email.message import EmailMessage
orig = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
r = EmailMessage(policy=email.policy.SMTP)
r['From'] = 'Agent Fr <agent.fr@agri.gouv.fr>'
r['To'] = orig['Reply-To']
r['Subject'] = 'RE: ' + str(orig['Subject'])
r['In-Reply-To'] = orig['Message-ID']
r['Date'] = email.utils.formatdate()
r['Message-ID'] = email.utils.make_msgid(domain='agri.gouv.fr')
r.set_content('Oui, c’est bien moi.\n')
sys.stdout.write(r.as_string().replace('\r\n', '\n'))
PYEOF
if grep -qi '^Subject: .*=?utf-8?' "$WORK/reply"; then ok "the reply's Subject is RFC 2047 encoded by the mail program"
else not_ok "the reply's Subject is RFC 2047 encoded: $(grep -i '^Subject' "$WORK/reply")"; fi
"$TOP/tests/lib/dkim-sign" --domain agri.gouv.fr --selector rsa2048 \
	--key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" <"$WORK/reply" >"$WORK/reply.s"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }
if mt message.lua "file=$WORK/reply.s" "rcpt=<verify+$tok@certify.test>" expect=accept \
	"ar=(milterd: verified)" >"$WORK/mt.out" 2>&1; then
	ok "a reply to the rendered challenge verifies the account through milterd"
else
	not_ok "reply to the challenge: $(tr '\n' ' ' <"$WORK/mt.out")"
fi
expect_eq "the account is verified" verified \
	"$(pg_psql "SELECT state FROM milterd.verification_status('agent-fr')")"
