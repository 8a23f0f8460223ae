# dnssec.sh — DNSSEC status of DKIM key lookups: a zone signed with ldns-signzone and
# served by unbound, milterd validating with dns_trust_anchor; policy dnssec = require
# accepts the secure key and refuses an unsigned one; the status is in the evidence.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
. "$TOP/tests/lib/dns.sh"
upid=
trap 'milterd_stop; [ -n "$upid" ] && kill "$upid" 2>/dev/null' EXIT
D="$WORK/dnssec"
mkdir -p "$D/keys"
DNS_KEYS="$D/keys"
_dns_genkey signed.gouv.fr rsa2048 rsa2048 >/dev/null 2>&1
txt=$(_dns_txt_rdata "$DNS_KEYS/signed.gouv.fr.rsa2048.txt")
z=signed.gouv.fr
cat >"$D/$z.zone" <<ZONE
\$ORIGIN $z.
\$TTL 60
@ IN SOA ns.$z. hostmaster.$z. 1 3600 600 86400 60
@ IN NS ns.$z.
ns IN A 127.0.0.1
rsa2048._domainkey IN TXT $txt
bad._domainkey IN TXT $txt
ZONE
(cd "$D" && ksk=$(ldns-keygen -a RSASHA256 -b 2048 -k $z) && zsk=$(ldns-keygen -a RSASHA256 -b 1024 $z) &&
	ldns-signzone -o $z $z.zone "$zsk" "$ksk" && cp "$ksk.key" ta.key) >/dev/null 2>&1 ||
	{ not_ok "zone signed with ldns-signzone"; exit 1; }
# bad._domainkey's record changed after signing: its signature no longer matches (bogus).
# (Same length: a TXT string holds at most 255 characters.)
sed -i '/^bad\._domainkey\./s/"v=DKIM1; k=rsa;/"v=DKIM1; k=RSA;/' "$D/$z.zone.signed"
grep -q '^bad\._domainkey\..*"v=DKIM1; k=RSA;' "$D/$z.zone.signed" ||
	{ not_ok "bad._domainkey changed after signing"; exit 1; }
port=$(free_port)
cat >"$D/unbound.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $port
  do-ip6: no
  username: ""
  chroot: ""
  directory: "$D"
  pidfile: ""
  use-syslog: no
  logfile: "$D/unbound.log"
  do-daemonize: no
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "$z." transparent
  local-zone: "plain.gouv.fr." static
  local-data: 'rsa2048._domainkey.plain.gouv.fr. 60 IN TXT $txt'
  local-zone: "rec.gouv.fr." static
  local-data: 'rsa2048._domainkey.rec.gouv.fr. 60 IN TXT $txt'
auth-zone:
  name: "$z."
  zonefile: "$D/$z.zone.signed"
  for-downstream: yes
  for-upstream: no
  fallback-enabled: no
remote-control:
  control-enable: no
CONF
/usr/sbin/unbound -d -c "$D/unbound.conf" >"$D/unbound.out" 2>&1 &
upid=$!
wait_for 5 dig +short -p "$port" @127.0.0.1 SOA "$z" || { not_ok "signed zone served: $(cat "$D/unbound.out" "$D/unbound.log")"; exit 1; }

cat >"$D/policy.conf" <<'POL'
[default]
allow = gouv.fr
dnssec = record

[domain signed.gouv.fr]
dnssec = require

[domain plain.gouv.fr]
dnssec = require
POL
db_reset || { not_ok "database reset"; exit 1; }
write_config "$WORK/milterd.conf" "dns_resolver = 127.0.0.1@$port" "dns_trust_anchor = $D/ta.key" \
	"policy = $D/policy.conf"
milterd_start "$WORK/milterd.conf" || { not_ok "milterd starts with a trust anchor"; exit 1; }

signed() {	# signed FILE DOMAIN TOKEN
	make_reply - "a@$2" "$3" --name "" --subject "Re: [$3]" --body yes |
		"$TOP/tests/lib/dkim-sign" --domain "$2" --selector rsa2048 \
		--key "$DNS_KEYS/signed.gouv.fr.rsa2048.key" >"$1"
}
for dom in signed plain rec; do
	eval "t_$dom=\$(new_token $dom a@$dom.gouv.fr)"
done
signed "$WORK/s" signed.gouv.fr "$t_signed"
deliver "dnssec = require: a key from a signed zone verifies" "$WORK/s" "$t_signed" accept verified
expect_eq "evidence records the key lookup as secure" secure \
	"$(pg_psql "SELECT dnssec FROM milterd.evidence ORDER BY id DESC LIMIT 1")"
signed "$WORK/p" plain.gouv.fr "$t_plain"
deliver "dnssec = require: a key from an unsigned zone is refused" "$WORK/p" "$t_plain" reply \
	not_authenticated rcode=550 xcode=5.7.22
signed "$WORK/r" rec.gouv.fr "$t_rec"
deliver "dnssec = record: an unsigned zone verifies" "$WORK/r" "$t_rec" accept verified
expect_eq "and the evidence says insecure" insecure \
	"$(pg_psql "SELECT dnssec FROM milterd.evidence ORDER BY id DESC LIMIT 1")"
# A key record whose signature does not match (changed after signing): the
# validator says bogus, 451 (the zone's owner may be rolling keys); the evidence
# says bogus and why, where it said "unknown" and "DKIM key lookup failed
# temporarily" alone.
t_bad=$(new_token bad b@signed.gouv.fr)
make_reply - b@signed.gouv.fr "$t_bad" --name "" --subject "Re: [$t_bad]" --body yes |
	"$TOP/tests/lib/dkim-sign" --domain signed.gouv.fr --selector bad \
	--key "$DNS_KEYS/signed.gouv.fr.rsa2048.key" >"$WORK/b"
deliver "a bogus key record (changed after signing): 451 temporary" "$WORK/b" "$t_bad" reply \
	temporary rcode=451 xcode=4.7.5
out=$(pg_psql "SELECT dnssec || '|' || detail FROM milterd.evidence ORDER BY id DESC LIMIT 1")
case "$out" in
"bogus|DKIM key lookup failed temporarily (d=signed.gouv.fr s=bad: key lookup failed: DNSSEC validation failed (bogus))")
	ok "... the evidence says bogus, and the detail why: ${out#*|}" ;;
*)	not_ok "... the evidence says bogus, and the detail why: $out" ;;
esac
