# dkim.sh — the decision at end of message, end to end: replies signed by dkimpy,
# keys served by a real DNS server, driven by miltertest, recorded in PostgreSQL.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT
SIGN="$TOP/tests/lib/dkim-sign"

db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }

# reply FILE FROM TOKEN [make_reply options...]: an agent's reply to a challenge,
# as a mail program writes it (common.sh's make_reply).
reply() {
	local f="$1" a="$2" t="$3"; shift 3
	make_reply "$f" "$a" "$t" --subject "Re: Verification of your account [$t]" \
		--header "MIME-Version: 1.0" --header "Content-Type: text/plain; charset=us-ascii" \
		--body $'Hello,\n\nthis is my reply.\n-- \nAgent' "$@"
}

# sign IN OUT DOMAIN SELECTOR [dkim-sign options...]
sign() {
	local in="$1" out="$2" d="$3" s="$4"; shift 4
	local key="$DNS_KEYS/$d.$s.key"
	[ -f "$key" ] || key="$DNS_KEYS/agri.gouv.fr.rsa2048.key"	# a signer without published key
	"$SIGN" --domain "$d" --selector "$s" --key "$key" "$@" <"$in" >"$out"
}

# Each decision asked of the daemon, as STAGE:REASON, for the evidence check at
# the end: common.sh's deliver is wrapped here, not changed. A refusal at RCPT
# of a token that selects no request (unknown_token, malformed) has no request
# to attach evidence to.
decisions=()
eval "common_$(declare -f deliver)"
deliver() {
	case "$4:$5" in
	rcpt-reply:unknown_token | rcpt-reply:malformed) ;;
	rcpt-reply:*) decisions+=("rcpt:$5") ;;
	*) decisions+=("eom:$5") ;;
	esac
	common_deliver "$@"
}


state() { pg_psql "SELECT state FROM milterd.verification_status('$1')"; }

# 1. A genuine reply verifies the account, leaves evidence, and answers 250.
t1=$(new_token alice alice@agri.gouv.fr)
reply "$WORK/m1" alice@agri.gouv.fr "$t1"
sign "$WORK/m1" "$WORK/m1.s" agri.gouv.fr rsa2048
deliver "genuine reply (rsa2048) verified, 250 with Authentication-Results" "$WORK/m1.s" "$t1" \
	accept verified "ar=dkim=pass reason=\"aligned, token signed\" header.d=agri.gouv.fr header.s=rsa2048"
expect_eq "verification_status shows verified" verified "$(state alice)"
expect_eq "evidence row: reason, signer, key, client" "verified|agri.gouv.fr|rsa2048|rsa-sha256|2048|eom" \
	"$(pg_psql "SELECT reason, dkim_domain, dkim_selector, dkim_algorithm, dkim_key_bits, stage
	  FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'alice' ORDER BY e.id DESC LIMIT 1")"

expect_eq "evidence names the MX host that decided" "milterd@$(hostname | cut -c1-47)" \
	"$(pg_psql "SELECT mta_host FROM milterd.evidence ORDER BY id DESC LIMIT 1")"

# 2. A second copy (the sender's MTA retrying) is answered as already verified.
deliver "second copy answered already_verified with 250" "$WORK/m1.s" "$t1" accept already_verified \
	"ar=(milterd: already_verified)"
expect_eq "still exactly one verification" 1 \
	"$(pg_psql "SELECT count(*) FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id WHERE r.account = 'alice' AND reason = 'verified'")"

# 3. From is not the registered address.
t=$(new_token bob bob@agri.gouv.fr)
reply "$WORK/m3" carol@agri.gouv.fr "$t"
sign "$WORK/m3" "$WORK/m3.s" agri.gouv.fr rsa2048
deliver "From not the registered address: 550 from_mismatch" "$WORK/m3.s" "$t" reply from_mismatch \
	rcode=550 xcode=5.7.1
expect_eq "refused reply leaves the request pending" pending "$(state bob)"

# 4. Signer not aligned: example.com signs for agri.gouv.fr.
reply "$WORK/m4" bob@agri.gouv.fr "$t"
sign "$WORK/m4" "$WORK/m4.s" example.com rsa2048
deliver "signer not aligned (d=example.com): 550 not_authenticated 5.7.22" "$WORK/m4.s" "$t" reply \
	not_authenticated rcode=550 xcode=5.7.22

# 5. Two ministries: interieur.gouv.fr signs for agri.gouv.fr (gouv.fr is a public suffix).
sign "$WORK/m4" "$WORK/m5.s" interieur.gouv.fr rsa2048
deliver "two ministries (d=interieur.gouv.fr, From agri.gouv.fr): 550 not_authenticated" "$WORK/m5.s" \
	"$t" reply not_authenticated rcode=550 xcode=5.7.22

# 6. Unsigned mail.
deliver "unsigned mail: 550 not_authenticated 5.7.20" "$WORK/m4" "$t" reply not_authenticated \
	rcode=550 xcode=5.7.20

# 7. Replay: a genuine signed mail of the victim, the token only in the envelope.
reply "$WORK/m7" bob@agri.gouv.fr "" --subject "Re: Verification of your account [no code here]" \
	--to "<colleague@agri.gouv.fr>"
sign "$WORK/m7" "$WORK/m7.s" agri.gouv.fr rsa2048
deliver "token only in the envelope (replay): 550 token_not_signed" "$WORK/m7.s" "$t" reply \
	token_not_signed rcode=550 xcode=5.7.1

# 8. The token in the Subject only, but Subject not signed.
reply "$WORK/m8" bob@agri.gouv.fr "$t" --to "<colleague@agri.gouv.fr>"
sign "$WORK/m8" "$WORK/m8.s" agri.gouv.fr rsa2048 --headers From:To:Date
deliver "token in an unsigned Subject: 550 token_not_signed" "$WORK/m8.s" "$t" reply token_not_signed \
	rcode=550 xcode=5.7.1

# 9. The token in the body only, signed with l=: anyone could have appended it.
reply "$WORK/m9" bob@agri.gouv.fr "" --subject "Re: Verification of your account [no code]" \
	--to "<colleague@agri.gouv.fr>"
sign "$WORK/m9" "$WORK/m9.s" agri.gouv.fr rsa2048 --length
printf '\nverify+%s@certify.test\n' "$t" >>"$WORK/m9.s"
deliver "token in the body past l=: 550 token_not_signed" "$WORK/m9.s" "$t" reply token_not_signed \
	rcode=550 xcode=5.7.1

# 9b. The token only in the body, signed whole, split across small body chunks.
tq=$(new_token quinn quinn@agri.gouv.fr)
reply "$WORK/m9b" quinn@agri.gouv.fr "" --subject "Re: Verification of your account [no code]" \
	--to "<colleague@agri.gouv.fr>"
printf '\n> verify+%s@certify.test\n' "$tq" >>"$WORK/m9b"
sign "$WORK/m9b" "$WORK/m9b.s" agri.gouv.fr rsa2048
deliver "token in the signed body, split across 7-byte body chunks: verified" "$WORK/m9b.s" \
	"$tq" accept verified chunk=7

# 9c. The same kind of reply with its body's lines ending in bare LF (as some
# MTAs and tools hand them over), in 5-byte chunks: read as CRLF, it verifies.
tl=$(new_token lena lena@agri.gouv.fr)
reply "$WORK/m9c" lena@agri.gouv.fr "" --subject "Re: Verification of your account [no code]" \
	--to "<colleague@agri.gouv.fr>"
printf '\n> verify+%s@certify.test\n\nLena\n' "$tl" >>"$WORK/m9c"
sign "$WORK/m9c" "$WORK/m9c.s" agri.gouv.fr rsa2048
deliver "body with bare LF line ends, in 5-byte chunks: verified" "$WORK/m9c.s" \
	"$tl" accept verified chunk=5 barelf=1

# 10. A signature made before the request existed (t= too old).
reply "$WORK/m10" bob@agri.gouv.fr "$t"
sign "$WORK/m10" "$WORK/m10.s" agri.gouv.fr rsa2048 --timestamp $(( $(date +%s) - 86400 ))
deliver "signature older than the request (t=): 550 token_not_signed" "$WORK/m10.s" "$t" reply \
	token_not_signed rcode=550 xcode=5.7.1

# 11. Key lookup SERVFAIL: 451, and nothing changes.
tb=$(new_token dan dan@broken.gouv.fr)
reply "$WORK/m11" dan@broken.gouv.fr "$tb"
sign "$WORK/m11" "$WORK/m11.s" broken.gouv.fr rsa2048
deliver "key lookup SERVFAIL: 451 temporary" "$WORK/m11.s" "$tb" reply temporary rcode=451 xcode=4.7.5
expect_eq "temporary failure leaves the request pending" pending "$(state dan)"
expect_eq "... its evidence names the signature and what the resolver said" \
	"DKIM key lookup failed temporarily (d=broken.gouv.fr s=rsa2048: key lookup failed: SERVFAIL from the resolver)|broken.gouv.fr/rsa2048" \
	"$(pg_psql "SELECT detail || '|' || dkim_domain || '/' || dkim_selector FROM milterd.evidence e
	  JOIN milterd.requests r ON r.id = e.request_id WHERE r.account = 'dan' ORDER BY e.id DESC LIMIT 1")"

# 12. An expired request: refused at RCPT, and at end of message if it expires meanwhile.
te=$(new_token erin erin@agri.gouv.fr '2 seconds')
reply "$WORK/m12" erin@agri.gouv.fr "$te"
sign "$WORK/m12" "$WORK/m12.s" agri.gouv.fr rsa2048
deliver "request expiring during the transaction: 550 expired" "$WORK/m12.s" "$te" reply expired \
	rcode=550 xcode=5.7.1 pause=2.5
deliver "expired request refused at RCPT" "$WORK/m12.s" "$te" rcpt-reply expired
expect_eq "expired request stays unverified" expired "$(state erin)"

# 13. Two replies for the same token at the same time verify exactly once.
tc=$(new_token frank frank@agri.gouv.fr)
reply "$WORK/m13" frank@agri.gouv.fr "$tc"
sign "$WORK/m13" "$WORK/m13.s" agri.gouv.fr rsa2048
pids=
for i in 1 2 3 4; do
	mt message.lua "file=$WORK/m13.s" "rcpt=<verify+$tc@certify.test>" expect=accept \
		"qid=RACE$i" >"$WORK/race$i" 2>&1 &
	pids="$pids $!"
done
wait $pids
decisions+=(eom:verified eom:already_verified eom:already_verified eom:already_verified)
expect_eq "four simultaneous replies: all 250, one verified, three already_verified" \
	"already_verified:3 verified:1" \
	"$(pg_psql "SELECT string_agg(reason || ':' || n, ' ' ORDER BY reason) FROM (SELECT reason, count(*) n
	  FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'frank' GROUP BY reason) x")"

# 14. Ed25519 and a subdomain signer (relaxed alignment) verify; RSA-1024 too (RFC 8301 minimum).
tg=$(new_token gina gina@agri.gouv.fr)
reply "$WORK/m14" gina@agri.gouv.fr "$tg"
sign "$WORK/m14" "$WORK/m14.s" agri.gouv.fr ed --algo ed25519-sha256
deliver "Ed25519 signature verified" "$WORK/m14.s" "$tg" accept verified "ar=header.a=ed25519-sha256"
th=$(new_token hugo hugo@agri.gouv.fr)
reply "$WORK/m15" hugo@agri.gouv.fr "$th"
sign "$WORK/m15" "$WORK/m15.s" mail.agri.gouv.fr rsa2048
deliver "subdomain signer mail.agri.gouv.fr aligned (relaxed)" "$WORK/m15.s" "$th" accept verified
ti=$(new_token ines ines@agri.gouv.fr)
reply "$WORK/m16" ines@agri.gouv.fr "$ti"
sign "$WORK/m16" "$WORK/m16.s" agri.gouv.fr rsa1024
deliver "RSA-1024 key accepted by the default policy" "$WORK/m16.s" "$ti" accept verified

# 15. Domain rule: fakegouv.fr is not gouv.fr.
tf=$(new_token fake x@fakegouv.fr)
reply "$WORK/m17" x@fakegouv.fr "$tf"
sign "$WORK/m17" "$WORK/m17.s" fakegouv.fr rsa2048
deliver "fakegouv.fr: 550 domain_not_allowed" "$WORK/m17.s" "$tf" reply domain_not_allowed rcode=550 xcode=5.7.1

# 16. Strict From parsing: two From headers, a group, an encoded word in the address.
tj=$(new_token jean jean@agri.gouv.fr)
reply "$WORK/m18" jean@agri.gouv.fr "$tj" --prepend "From: jean@agri.gouv.fr"
sign "$WORK/m18" "$WORK/m18.s" agri.gouv.fr rsa2048
deliver "two From headers: 550 malformed" "$WORK/m18.s" "$tj" reply malformed rcode=550 xcode=5.6.0
reply "$WORK/m19" jean@agri.gouv.fr "$tj" --from "agents: jean@agri.gouv.fr;"
sign "$WORK/m19" "$WORK/m19.s" agri.gouv.fr rsa2048
deliver "group syntax in From: 550 malformed" "$WORK/m19.s" "$tj" reply malformed rcode=550 xcode=5.6.0
reply "$WORK/m20" jean@agri.gouv.fr "$tj" --from "=?utf-8?q?jean?=@agri.gouv.fr"
sign "$WORK/m20" "$WORK/m20.s" agri.gouv.fr rsa2048
deliver "encoded word in the From address: 550 malformed" "$WORK/m20.s" "$tj" reply malformed rcode=550 xcode=5.6.0

# 17. Forged Authentication-Results claiming our authserv-id (in any case) are
#     removed, each of them, and the one another host added is kept; an encoded
#     display name (accents) is fine.
reply "$WORK/m21" jean@agri.gouv.fr "$tj" --from "=?UTF-8?Q?Jean_Fran=C3=A7ois?= <jean@agri.gouv.fr>" \
	--prepend "Authentication-Results: mx.certify.test; dkim=pass header.d=agri.gouv.fr" \
	--prepend "Authentication-Results: mx.agri.gouv.fr; dkim=pass header.d=agri.gouv.fr" \
	--prepend "Authentication-Results: MX.Certify.Test; spf=pass smtp.mailfrom=agri.gouv.fr"
sign "$WORK/m21" "$WORK/m21.s" agri.gouv.fr rsa2048
deliver "both forged Authentication-Results removed, the foreign one kept, encoded display name accepted" \
	"$WORK/m21.s" "$tj" accept verified ardelete=2 ardelete_at=1,3

# ... and twenty of them, all twenty (a fixed list of 16 let the last four through).
tf=$(new_token fabien fabien@agri.gouv.fr)
forged=()
for i in $(seq 1 20); do forged+=(--prepend "Authentication-Results: mx.certify.test; dkim=pass header.d=agri.gouv.fr ($i)"); done
reply "$WORK/m21b" fabien@agri.gouv.fr "$tf" "${forged[@]}"
sign "$WORK/m21b" "$WORK/m21b.s" agri.gouv.fr rsa2048
deliver "twenty forged Authentication-Results: all twenty removed" "$WORK/m21b.s" "$tf" accept verified \
	ardelete=20 ardelete_at=$(seq -s, 1 20)

# 18. A body that changed after signing fails (body hash), the token in a signed To still.
tk=$(new_token kim kim@agri.gouv.fr)
reply "$WORK/m22" kim@agri.gouv.fr "$tk"
sign "$WORK/m22" "$WORK/m22.s" agri.gouv.fr rsa2048
echo "tampered" >>"$WORK/m22.s"
deliver "body changed after signing: 550 not_authenticated" "$WORK/m22.s" "$tk" reply not_authenticated \
	rcode=550 xcode=5.7.20
expect_eq "... its evidence says which signature failed, and why" \
	"no DKIM signature verified (d=agri.gouv.fr s=rsa2048: body hash mismatch)" \
	"$(pg_psql "SELECT detail FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'kim' ORDER BY e.id DESC LIMIT 1")"
# 19. At RCPT: a token nobody asked for, a verification address without a valid one.
deliver "unknown token: 550 5.1.1 unknown_token at RCPT" "$WORK/m1.s" abcdefghijklmnopqrstuvwxy4 \
	rcpt-reply unknown_token
deliver "verification address without a valid token: 550 5.1.1 malformed at RCPT" "$WORK/m1.s" \
	not-a-token rcpt-reply malformed
# 20. Envelope bytes that are not UTF-8 (a Latin-1 HELO name and MAIL FROM) with a
# genuine reply: verified all the same, the evidence keeping those bytes as '?'
# (PostgreSQL takes UTF-8 text only: the row, and with it the decision, failed: 451).
tz=$(new_token zoe zoe@agri.gouv.fr)
reply "$WORK/m23" zoe@agri.gouv.fr "$tz"
sign "$WORK/m23" "$WORK/m23.s" agri.gouv.fr rsa2048
deliver "a Latin-1 HELO name and MAIL FROM: the genuine reply verified" "$WORK/m23.s" "$tz" accept verified \
	helo=$'mx\xe9.agri.gouv.fr' mailfrom=$'<zo\xe9@agri.gouv.fr>'
expect_eq "... its evidence keeps them, the bytes that are not UTF-8 as '?'" "mx?.agri.gouv.fr|zo?@agri.gouv.fr" \
	"$(pg_psql "SELECT helo || '|' || mail_from FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'zoe'" | tr -d '<>')"
# 21. A broken DKIM-Signature (no s=; not a tag list at all) added by a relay above
# the agent's genuine one is judged on its own: the genuine one verifies (RFC 6376,
# 6.1). It used to hide every signature: not_authenticated.
n=0
for junk in 'v=1; a=rsa-sha256; d=agri.gouv.fr; c=relaxed/relaxed; h=from; bh=AAAA; b=AAAA' \
	'this is not a signature'; do
	n=$((n + 1))
	tj=$(new_token "jules$n" "jules$n@agri.gouv.fr")
	reply "$WORK/m24.$n" "jules$n@agri.gouv.fr" "$tj"
	sign "$WORK/m24.$n" "$WORK/m24.$n.s" agri.gouv.fr rsa2048
	{ echo "DKIM-Signature: $junk"; cat "$WORK/m24.$n.s"; } >"$WORK/m24.$n.b"
	deliver "a broken signature ($n) above the genuine one: verified" "$WORK/m24.$n.b" "$tj" accept verified \
		"ar=dkim=pass reason=\"aligned, token signed\" header.d=agri.gouv.fr header.s=rsa2048"
done
# 22. A NUL inside From, which a milter client can send (miltertest, Postfix and
# Sendmail cut a value at it): the value past the NUL is what a reader that does
# not stop there sees, so From is malformed, not read up to the NUL. The daemon
# through a raw client; milterctl check on the same bytes in a file.
tn=$(new_token nina nina@agri.gouv.fr)
got=$(/usr/bin/python3 - "${MILTERD_SOCK#unix:}" "$tn" 2>&1 <<'PY'
import socket, struct, sys
def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data
def answer(s):
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    n, data = struct.unpack(">I", head)[0], b""
    while len(data) < n:
        data += s.recv(n - len(data))
    return data
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20)
tok = sys.argv[2].encode()
steps = [(b"O", struct.pack(">III", 6, 0x1ff, 0)),
    (b"C", b"mx.agri.gouv.fr\0" + b"4" + struct.pack(">H", 25) + b"127.0.0.1\0"),
    (b"H", b"mx.agri.gouv.fr\0"), (b"M", b"<nina@agri.gouv.fr>\0"),
    (b"R", b"<verify+" + tok + b"@certify.test>\0"),
    (b"L", b"From\0 nina@agri.gouv.fr\0 <intruder@example.com>\0"),
    (b"L", b"Subject\0 Re: [" + tok + b"]\0"), (b"N", b""), (b"B", b"Yes, it is me.\r\n")]
for cmd, data in steps:
    s.sendall(pkt(cmd, data))
    a = answer(s)
    if a[:1] not in (b"O", b"c"):
        print("refused at %s: %r" % (cmd.decode(), a)); sys.exit()
s.sendall(pkt(b"E"))
a = answer(s)
print(a[:1].decode(), a[1:].rstrip(b"\0").decode(errors="replace"))
PY
)
decisions+=("eom:malformed")
expect_eq "a NUL inside From (raw milter client): 550 5.6.0 malformed" \
	"y 550 5.6.0 $(reply_text malformed)" "$got"
expect_eq "... the evidence says why" "malformed|NUL in From" \
	"$(pg_psql "SELECT reason || '|' || detail FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'nina'")"
expect_eq "... the request stays pending" pending "$(state nina)"
printf 'From: nina@agri.gouv.fr\0 <intruder@example.com>\nSubject: Re: [%s]\n\nYes, it is me.\n' "$tn" >"$WORK/m25"
"$BUILD/milterctl" -c "$MILTERD_CONF" --json check "$WORK/m25" --client-ip 127.0.0.1 \
	--helo mx.agri.gouv.fr --mail-from '<nina@agri.gouv.fr>' --rcpt "<verify+$tn@certify.test>" \
	>"$WORK/m25.json" 2>&1
expect_eq "... milterctl check on the same bytes: malformed, NUL in From" "malformed|NUL in From" \
	"$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["reason"] + "|" + d["detail"])' "$WORK/m25.json" 2>&1)"

# 23. A key reached through a DNAME (alias.gouv.fr's _domainkey is agri.gouv.fr's:
# tests/lib/dns.sh): the resolver's answer holds the DNAME, its CNAME and the key.
# It used to be 451 on every retry: libopendkim refuses a DNAME in an answer.
ta=$(new_token alix alix@alias.gouv.fr)
reply "$WORK/m26" alix@alias.gouv.fr "$ta"
"$SIGN" --domain alias.gouv.fr --selector rsa2048 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
	<"$WORK/m26" >"$WORK/m26.s"
deliver "a key reached through a DNAME: verified" "$WORK/m26.s" "$ta" accept verified \
	"ar=dkim=pass reason=\"aligned, token signed\" header.d=alias.gouv.fr header.s=rsa2048" \
	mailfrom="<alix@alias.gouv.fr>"
# 24. A selector no DNS name can hold (a 64-character label): no key can exist
# there, so the signature fails for good, 550. It used to be 451 on every retry.
tb=$(new_token bea bea@agri.gouv.fr)
reply "$WORK/m27" bea@agri.gouv.fr "$tb"
sign "$WORK/m27" "$WORK/m27.s" agri.gouv.fr "$(printf 's%.0s' {1..64})"
deliver "a selector the DNS cannot hold: 550 not_authenticated, not 451" "$WORK/m27.s" "$tb" reply \
	not_authenticated rcode=550 xcode=5.7.20

# 25. A relay's signature on top of the agent's, which a footer broke: the log and
# the evidence name the agent's signature, the one the detail speaks of (they
# named the first, the relay's, which cannot even align).
tl=$(new_token lea lea@agri.gouv.fr)
reply "$WORK/m28" lea@agri.gouv.fr "$tl"
sign "$WORK/m28" "$WORK/m28.a" agri.gouv.fr rsa2048
echo "-- footer added by a gateway" >>"$WORK/m28.a"
sign "$WORK/m28.a" "$WORK/m28.s" example.com rsa2048
deliver "a relay's signature over a broken one: 550 not_authenticated" "$WORK/m28.s" "$tl" reply \
	not_authenticated rcode=550 xcode=5.7.20
expect_eq "... the evidence names the agent's signature, as its detail does" \
	"agri.gouv.fr/rsa2048|no DKIM signature verified (d=agri.gouv.fr s=rsa2048: body hash mismatch)" \
	"$(pg_psql "SELECT dkim_domain || '/' || dkim_selector || '|' || detail FROM milterd.evidence e
	  JOIN milterd.requests r ON r.id = e.request_id WHERE r.account = 'lea'")"
expect_grep "... and so does the log line" "account=lea .*dkim=agri.gouv.fr/rsa2048 .*reason=not_authenticated" "$MILTERD_LOG"

# 26. A key in testing mode (t=y): the signature counts (it is the domain's), and
# Authentication-Results and the evidence say the key is in testing mode.
tt=$(new_token theo theo@agri.gouv.fr)
reply "$WORK/m29" theo@agri.gouv.fr "$tt"
sign "$WORK/m29" "$WORK/m29.s" agri.gouv.fr testing
deliver "a key in testing mode (t=y): verified, said in Authentication-Results" "$WORK/m29.s" "$tt" \
	accept verified "ar=dkim=pass reason=\"aligned, token signed, key in testing mode (t=y)\" header.d=agri.gouv.fr header.s=testing"
expect_eq "... and in the evidence" "dkim d=agri.gouv.fr s=testing (key in testing mode, t=y)" \
	"$(pg_psql "SELECT detail FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'theo'")"

# 27. Two key records at one selector (the signing key and a revoked one): which
# applies is undefined, so neither does; refused for good (550), not 451.
tw=$(new_token wim wim@agri.gouv.fr)
reply "$WORK/m30" wim@agri.gouv.fr "$tw"
sign "$WORK/m30" "$WORK/m30.s" agri.gouv.fr two
deliver "two key records at one selector: 550 not_authenticated" "$WORK/m30.s" "$tw" reply \
	not_authenticated rcode=550 xcode=5.7.20
expect_eq "... the evidence says why" "no DKIM signature verified (d=agri.gouv.fr s=two: multiple keys found)" \
	"$(pg_psql "SELECT detail FROM milterd.evidence e JOIN milterd.requests r ON r.id = e.request_id
	  WHERE r.account = 'wim'")"

# 28. A key record over the 1,024 characters libopendkim copies (the key behind
# a long note, n=): it verifies, as with dkimpy; cut, it was "unable to apply
# public key", 550 for good.
tn=$(new_token nina nina@agri.gouv.fr)
reply "$WORK/m31" nina@agri.gouv.fr "$tn"
sign "$WORK/m31" "$WORK/m31.s" agri.gouv.fr notes
expect_eq "dkimpy verifies it with the record as served" "PASS d=agri.gouv.fr s=notes" \
	"$("$TOP/tests/lib/dkim-verify-check" <"$WORK/m31.s")"
deliver "a key record over 1,024 characters (a long note): verified" "$WORK/m31.s" "$tn" \
	accept verified "ar=dkim=pass reason=\"aligned, token signed\" header.d=agri.gouv.fr header.s=notes"

# Each decision, at RCPT or at end of message, left one evidence row with the
# reason the MTA was given: the rows counted by stage and reason.
count_lines() { LC_ALL=C sort | uniq -c | awk '{printf "%s=%s ", $2, $1}'; }
expect_eq "each of the ${#decisions[@]} decisions left one evidence row with its stage and reason" \
	"$(printf '%s\n' "${decisions[@]}" | count_lines)" \
	"$(pg_psql "SELECT stage || ':' || reason FROM milterd.evidence" | count_lines)"

