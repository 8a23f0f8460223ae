# evaluate.sh — only what can matter is evaluated (DESIGN.md): the queries the test
# DNS server receives are counted. A message signed and sent by an attacker's
# domains makes no query under them and is still refused with the right reason;
# the identities that could align are looked up.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
trap milterd_stop EXIT
SIGN="$TOP/tests/lib/dkim-sign"

db_reset || { not_ok "database reset"; exit 1; }
# SPF is in use for agri.gouv.fr: without the rule, its MAIL FROM and HELO would be evaluated.
cat >"$WORK/policy.conf" <<'POL'
[default]
allow = gouv.fr
require = dkim-or-spf
POL
write_config "$WORK/milterd.conf" "policy = $WORK/policy.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts"; exit 1; }

# asked NAME: how many queries for NAME (or under it) the DNS server has logged.
asked() { grep -ci " $1\. " "$DNS_LOG"; }
reply() {	# reply FILE FROM TOKEN
	make_reply "$1" "$2" "$3" --name Alice --message-id "<$RANDOM@agri.gouv.fr>" --body "Yes."
}

evil="evil$RANDOM.example"	# a name nobody asked for before
t=$(new_token alice alice@agri.gouv.fr)
reply "$WORK/m1" alice@agri.gouv.fr "$t"
"$SIGN" --domain "$evil" --selector s1 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
	<"$WORK/m1" >"$WORK/m1.s"
deliver "an attacker's signature, MAIL FROM and HELO: refused, not_authenticated 5.7.22" \
	"$WORK/m1.s" "$t" reply not_authenticated "mailfrom=<bounce@$evil>" "helo=mx.$evil" \
	client_ip=198.51.100.7 rcode=550 xcode=5.7.22
sleep 0.5	# unbound writes its log as it answers; nothing should come
expect_eq "no DNS query under the attacker's domain (key, SPF of MAIL FROM, SPF of HELO)" 0 \
	"$(grep -ci "$evil" "$DNS_LOG")"
expect_eq "the evidence records both SPF identities as skipped, the signature as not aligned" \
	"mailfrom=skipped helo=skipped|$evil|no DKIM signature aligned with the From domain, no aligned SPF pass" \
	"$(pg_psql "SELECT spf_result, dkim_domain, detail FROM milterd.evidence ORDER BY id DESC LIMIT 1")"

# The counting works: an aligned signer's key, an aligned MAIL FROM and HELO are asked for.
sel="sel$RANDOM"
t=$(new_token bea bea@agri.gouv.fr)
reply "$WORK/m2" bea@agri.gouv.fr "$t"
"$SIGN" --domain agri.gouv.fr --selector "$sel" --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
	<"$WORK/m2" >"$WORK/m2.s"
deliver "an aligned signer with no key published: refused, not_authenticated" "$WORK/m2.s" "$t" \
	reply not_authenticated "mailfrom=<bea@mx$sel.agri.gouv.fr>" "helo=h$sel.agri.gouv.fr" \
	client_ip=198.51.100.7 rcode=550 xcode=5.7.20
wait_for 3 grep -qi " $sel._domainkey.agri.gouv.fr. " "$DNS_LOG"
expect_eq "its key was asked for" yes \
	"$([ "$(asked "$sel._domainkey.agri.gouv.fr")" -gt 0 ] && echo yes)"
expect_eq "the aligned MAIL FROM and HELO were evaluated (their SPF records asked for)" "yes yes" \
	"$([ "$(asked "mx$sel.agri.gouv.fr")" -gt 0 ] && echo yes) $([ "$(asked "h$sel.agri.gouv.fr")" -gt 0 ] && echo yes)"

# A dead nameserver for the HELO name: the HELO result is only recorded, so its
# lookups must not hold the decision (each would wait dns_timeout, 5 s here).
milterd_stop
hole=$(free_port)
/usr/bin/python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(4096)' "$hole" &
HOLE_PID=$!
trap 'milterd_stop; kill $HOLE_PID 2>/dev/null; dns_stop' EXIT
. "$TOP/tests/lib/dns.sh"
mkdir -p "$WORK/dns2"
DNS_DEAD_ADDR="127.0.0.1@$hole" dns_start "$WORK/dns2" || { not_ok "a DNS server with a dead zone starts"; exit 1; }
write_config "$WORK/milterd.conf" "policy = $WORK/policy.conf" "dns_resolver = $DNS_SPEC" "dns_timeout = 5"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd restarts"; exit 1; }
t=$(new_token carl carl@agri.gouv.fr)
reply "$WORK/m3" carl@agri.gouv.fr "$t"
"$SIGN" --domain agri.gouv.fr --selector rsa2048 --key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" \
	<"$WORK/m3" >"$WORK/m3.s"
start=$(date +%s%N)
deliver "a genuine reply from a HELO whose nameserver is dead: verified" "$WORK/m3.s" "$t" accept \
	verified "mailfrom=<carl@agri.gouv.fr>" "helo=mx.dead.agri.gouv.fr" client_ip=198.51.100.7
took=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "the HELO lookups were cut short: milterctl check and the daemon decided in under 4 s together (each would wait 5 s per query)" \
	yes "$([ "$took" -lt 4000 ] && echo yes || echo "no: $took ms")"
expect_eq "the HELO result is recorded as temperror" "helo=temperror" \
	"$(pg_psql "SELECT spf_result FROM milterd.evidence ORDER BY id DESC LIMIT 1" | grep -o 'helo=[a-z]*')"
