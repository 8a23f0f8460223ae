# spf.sh — SPF in the decision, end to end (miltertest, real DNS, PostgreSQL): an
# agency section with require = dkim-or-spf verifies an unsigned mail its SPF
# authorises; the default policy refuses the same mail; SPF's limits.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT
SIGN="$TOP/tests/lib/dkim-sign"

db_reset || { not_ok "database reset"; exit 1; }
cat >"$WORK/policy.conf" <<'POL'
# Test policy: interieur.gouv.fr may verify by SPF, broken.gouv.fr too,
# agri.gouv.fr needs both.
[default]
allow = gouv.fr
require = dkim

[domain interieur.gouv.fr]
require = dkim-or-spf
max_attempts = 3

[domain broken.gouv.fr]
require = dkim-or-spf

[domain agri.gouv.fr]
require = dkim-and-spf
POL
write_config "$WORK/milterd.conf" "policy = $WORK/policy.conf" "internal_networks = 203.0.113.0/24"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }

t=$(new_token ivan ivan@interieur.gouv.fr)
make_reply "$WORK/u1" ivan@interieur.gouv.fr "$t"
deliver "dkim-or-spf: unsigned mail from an SPF-authorised address verifies" "$WORK/u1" "$t" \
	accept verified "mailfrom=<ivan@interieur.gouv.fr>" client_ip=198.51.100.7 \
	"ar=spf=pass reason=\"aligned with From\" smtp.mailfrom=interieur.gouv.fr"
expect_eq "the SPF verification left evidence with the SPF result" \
	"verified|mailfrom=pass(aligned) helo=skipped" \
	"$(pg_psql "SELECT reason, spf_result FROM milterd.evidence ORDER BY id DESC LIMIT 1")"

# A fresh request (and address: one address, one account) for each refusal:
# interieur.gouv.fr allows three failed attempts.
fresh() { t=$(new_token "ivan$1" "ivan$1@interieur.gouv.fr"); make_reply "$WORK/u1" "ivan$1@interieur.gouv.fr" "$t"; }
fresh 2
deliver "dkim-or-spf: an address SPF does not authorise is refused" "$WORK/u1" "$t" \
	reply not_authenticated "mailfrom=<ivan@interieur.gouv.fr>" client_ip=192.0.2.9 \
	rcode=550 xcode=5.7.20
fresh 3
deliver "dkim-or-spf: loopback never passes SPF" "$WORK/u1" "$t" reply not_authenticated \
	"mailfrom=<ivan@interieur.gouv.fr>" client_ip=127.0.0.1 rcode=550 xcode=5.7.20
fresh 4
deliver "dkim-or-spf: internal_networks never pass SPF" "$WORK/u1" "$t" reply not_authenticated \
	"mailfrom=<ivan@interieur.gouv.fr>" client_ip=203.0.113.5 rcode=550 xcode=5.7.20
fresh 5
deliver "dkim-or-spf: MAIL FROM:<> has no SPF path" "$WORK/u1" "$t" reply not_authenticated \
	"mailfrom=<>" client_ip=198.51.100.7 helo=mx.interieur.gouv.fr rcode=550 xcode=5.7.20
fresh 6
deliver "dkim-or-spf: SPF pass for an unaligned MAIL FROM does not count" "$WORK/u1" "$t" reply \
	not_authenticated "mailfrom=<bounce@example.com>" client_ip=198.51.100.7 rcode=550 xcode=5.7.20
expect_eq "an unaligned MAIL FROM is not even evaluated (skipped)" \
	"mailfrom=skipped helo=skipped" \
	"$(pg_psql "SELECT spf_result FROM milterd.evidence ORDER BY id DESC LIMIT 1")"
fresh 7
deliver "dkim-or-spf: two SPF records (permerror) do not pass" "$WORK/u1" "$t" reply not_authenticated \
	"mailfrom=<bounce@two.interieur.gouv.fr>" client_ip=198.51.100.7 rcode=550 xcode=5.7.20
expect_eq "... the evidence says what is wrong with SPF" \
	"no DKIM signature, no aligned SPF pass (spf=permerror: Multiple SPF or TXT records for domain.)" \
	"$(pg_psql "SELECT detail FROM milterd.evidence ORDER BY id DESC LIMIT 1")"
fresh 7
deliver "dkim-or-spf: a HELO pass is recorded, never a pass" "$WORK/u1" "$t" reply \
	not_authenticated "mailfrom=<ivan@mx.interieur.gouv.fr>" helo=interieur.gouv.fr \
	client_ip=198.51.100.7 rcode=550 xcode=5.7.20
expect_eq "the HELO result is in the evidence" "mailfrom=fail(aligned) helo=pass" \
	"$(pg_psql "SELECT spf_result FROM milterd.evidence ORDER BY id DESC LIMIT 1")"

# max_attempts: after three failed replies the request is dead, even for a good
# one: refused at RCPT, before anything else is read.
tm=$(new_token mia mia@interieur.gouv.fr)
make_reply "$WORK/u4" mia@interieur.gouv.fr "$tm"
for i in 1 2 3; do
	mt message.lua "file=$WORK/u4" "rcpt=<verify+$tm@certify.test>" expect=reply rcode=550 \
		xcode=5.7.20 "text=$(reply_text not_authenticated)" \
		"mailfrom=<mia@interieur.gouv.fr>" client_ip=192.0.2.9 >/dev/null 2>&1
done
deliver "max_attempts = 3: a good reply after three failures is refused as expired at RCPT" \
	"$WORK/u4" "$tm" rcpt-reply expired "mailfrom=<mia@interieur.gouv.fr>" client_ip=198.51.100.7
expect_eq "the evidence says why" "expired|too many failed attempts" \
	"$(pg_psql "SELECT reason, detail FROM milterd.evidence ORDER BY id DESC LIMIT 1")"

tb=$(new_token bea bea@broken.gouv.fr)
make_reply "$WORK/u2" bea@broken.gouv.fr "$tb"
deliver "dkim-or-spf: SPF temperror gives 451" "$WORK/u2" "$tb" reply temporary \
	"mailfrom=<bea@broken.gouv.fr>" client_ip=198.51.100.7 rcode=451 xcode=4.7.5

# dkim-and-spf: both, or nothing.
ta=$(new_token anne anne@agri.gouv.fr)
make_reply "$WORK/a1" anne@agri.gouv.fr "$ta"
"$SIGN" --domain agri.gouv.fr --selector rsa2048 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
	<"$WORK/a1" >"$WORK/a1.s"
deliver "dkim-and-spf: signed but from an address SPF refuses: 550 5.7.23" "$WORK/a1.s" "$ta" \
	reply not_authenticated "mailfrom=<anne@agri.gouv.fr>" client_ip=198.51.100.7 \
	rcode=550 xcode=5.7.23
deliver "dkim-and-spf: SPF alone is not enough" "$WORK/a1" "$ta" reply not_authenticated \
	"mailfrom=<anne@agri.gouv.fr>" client_ip=192.0.2.20 rcode=550 xcode=5.7.20
deliver "dkim-and-spf: signed and SPF-authorised verifies" "$WORK/a1.s" "$ta" accept verified \
	"mailfrom=<anne@agri.gouv.fr>" client_ip=192.0.2.20 "ar=spf=pass"

# The shipped default policy refuses the SPF-only mail.
milterd_stop
db_reset
write_config "$WORK/milterd.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd restarts with the default policy"; exit 1; }
t=$(new_token ivan ivan@interieur.gouv.fr)
make_reply "$WORK/u3" ivan@interieur.gouv.fr "$t"
deliver "default policy (dkim): the same SPF-authorised unsigned mail is refused" "$WORK/u3" "$t" \
	reply not_authenticated "mailfrom=<ivan@interieur.gouv.fr>" client_ip=198.51.100.7 \
	rcode=550 xcode=5.7.20
