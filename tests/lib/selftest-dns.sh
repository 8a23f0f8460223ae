#!/bin/bash
# selftest-dns.sh - self-test of the test DNS (dns.sh) and the DKIM helpers (dkim-sign, dkim-verify-check).
#
# tests/run runs it ("lib/selftest-dns"); alone: bash tests/lib/selftest-dns.sh. Prints "ok - NAME" or
# "not ok - NAME" per check. It starts its own unbound, never the runner's (whose DNS_* it forgets).
set -u
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
unset DNS_PID DNS_PORT DNS_SPEC DNS_KEYS DNS_ADDR DNS_EXTRA_RECORDS
. "$LIB/common.sh"
. "$LIB/dns.sh"
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/selftest-dns.XXXXXX")
trap 'dns_stop; rm -rf "$WORK"' EXIT
npass=0 nfail=0
ok()   { echo "ok - $*"; npass=$((npass + 1)); }
bad()  { echo "not ok - $*"; nfail=$((nfail + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
q()    { dig +time=2 +tries=1 -p "$DNS_PORT" @"$DNS_ADDR" "$@"; }
txt()  { q +short TXT "$1" | sed 's/" "//g; s/"//g'; }       # TXT strings joined
ms()   { local t0=$EPOCHREALTIME; "$@" >/dev/null; echo $(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 )); }

dns_add_record 'outside.org. 60 IN TXT "v=spf1 -all"'
echo 'spf.agri.gouv.fr. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"' > "$WORK/extra-records"
t0=$EPOCHREALTIME
dns_start "$WORK" || { echo "not ok - dns_start"; exit 1; }
echo "# unbound pid $DNS_PID at $DNS_SPEC, started in $(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 )) ms"
listening() { ss -lnuH "sport = :$DNS_PORT"; ss -lntH "sport = :$DNS_PORT"; }
check "listens on 127.0.0.1:$DNS_PORT only (udp+tcp)" eval '[ "$(listening | awk "{print \$4}" | sort -u)" = 127.0.0.1:$DNS_PORT ] && [ $(listening | wc -l) = 2 ]'

for spec in $DNS_KEYSPECS; do
    IFS=: read -r d s t <<< "$spec"
    check "TXT $s._domainkey.$d ($t) served == $d.$s.txt" [ "$(txt "$s._domainkey.$d")" = "$(cat "$DNS_KEYS/$d.$s.txt")" ]
done
check "answers are authoritative (aa)" eval 'q TXT rsa2048._domainkey.agri.gouv.fr | grep -q "flags: qr aa"'
check "A mx.agri.gouv.fr = 127.0.0.2" [ "$(q +short A mx.agri.gouv.fr)" = 127.0.0.2 ]
check "extra record from dns_add_record" [ "$(txt outside.org)" = "v=spf1 -all" ]
check "extra record from WORKDIR/extra-records" [ "$(txt spf.agri.gouv.fr)" = "v=spf1 ip4:127.0.0.1 -all" ]
check "rsa2048._domainkey.alias.gouv.fr -> DNAME to agri.gouv.fr's, and its CNAME" \
    eval '[ "$(q TXT rsa2048._domainkey.alias.gouv.fr | grep -E "IN[[:space:]]+(DNAME|CNAME)" | awk "{print \$4 \" \" \$5}" | tr "\n" " ")" = \
          "DNAME _domainkey.agri.gouv.fr. CNAME rsa2048._domainkey.agri.gouv.fr. " ]'
check "unknown name in test zone -> NXDOMAIN" eval 'q TXT nope._domainkey.agri.gouv.fr | grep -q "status: NXDOMAIN"'
t=$(ms q A www.google.com)
check "outside name -> NXDOMAIN in ${t} ms" eval 'q A www.google.com | grep -q "status: NXDOMAIN" && [ $t -lt 1000 ]'
for i in 1 2; do
    t=$(ms q TXT rsa2048._domainkey.broken.gouv.fr)
    check "broken.gouv.fr -> SERVFAIL in ${t} ms wall, dig $(q TXT x.broken.gouv.fr | grep -o 'Query time: .*') (try $i)" \
        eval 'q TXT rsa2048._domainkey.broken.gouv.fr | grep -q "status: SERVFAIL" && [ $t -lt 1000 ]'
done
# The same through a libunbound client forwarding to us (what the milter does), if a C compiler and libunbound-dev exist.
cat > "$WORK/ubq.c" <<'C'
#include <stdio.h>
#include <unbound.h>
int main(int argc, char **argv) {  /* ubq FWD NAME: print the rcode of NAME TXT via libunbound forwarding to FWD */
    struct ub_ctx *ctx = ub_ctx_create(); struct ub_result *r;
    if (argc != 3 || ub_ctx_set_fwd(ctx, argv[1]) || ub_resolve(ctx, argv[2], 16 /* TXT */, 1, &r)) return 2;
    printf("%d\n", r->rcode); return 0;
}
C
if cc -o "$WORK/ubq" "$WORK/ubq.c" -lunbound 2>/dev/null; then
    t=$(ms "$WORK/ubq" "$DNS_SPEC" rsa2048._domainkey.broken.gouv.fr)
    check "libunbound forwarding: broken.gouv.fr -> SERVFAIL in ${t} ms" \
        eval '[ "$("$WORK/ubq" "$DNS_SPEC" rsa2048._domainkey.broken.gouv.fr)" = 2 ] && [ $t -lt 1000 ]'
    check "libunbound forwarding: ed._domainkey.agri.gouv.fr -> NOERROR" eval '[ "$("$WORK/ubq" "$DNS_SPEC" ed._domainkey.agri.gouv.fr)" = 0 ]'
else
    echo "skip - libunbound client check (no cc or libunbound-dev)"
fi

MSG=$(make_reply - alice@agri.gouv.fr "" --name Alice --to "Bob <bob@example.com>" --subject selftest \
    --date "Mon, 01 Jan 2024 10:00:00 +0000" --message-id "<selftest@agri.gouv.fr>" \
    --body $'Hello Bob,\nthis is a test.')
MSG+=$'\n'    # $(...) took the final newline
for spec in $DNS_KEYSPECS; do
    IFS=: read -r d s t <<< "$spec"
    algo=rsa-sha256; [ "$t" = ed25519 ] && algo=ed25519-sha256
    signed=$(printf '%s' "$MSG" | "$LIB/dkim-sign" --domain "$d" --selector "$s" --key "$DNS_KEYS/$d.$s.key" --algo "$algo")
    check "sign+verify $algo d=$d s=$s" eval 'printf "%s\n" "$signed" | "$LIB/dkim-verify-check" >/dev/null'
    check "tampered body fails d=$d s=$s" eval '! printf "%s\nmore\n" "$signed" | "$LIB/dkim-verify-check" >/dev/null'
done
K="$DNS_KEYS/agri.gouv.fr"
signed=$(printf '%s' "$MSG" | "$LIB/dkim-sign" --domain agri.gouv.fr --selector rsa2048 --key "$K.rsa2048.key" \
    --timestamp 1700000000 --length --canon simple/simple --headers From:Subject)
check "options t= l= c= h=" eval 'printf "%s" "$signed" | tr -d "\n" | grep -q "c=simple/simple.*l=.*t=1700000000; *h=from : *subject;"'
check "options signature verifies" eval 'printf "%s\n" "$signed" | "$LIB/dkim-verify-check" >/dev/null'
check "l= signature survives appended body" eval 'printf "%s\nappended\n" "$signed" | "$LIB/dkim-verify-check" >/dev/null'
check "output has LF line endings only" eval '! printf "%s" "$signed" | grep -q $'"'\r'"
signed=$(printf '%s' "$MSG" | "$LIB/dkim-sign" --domain broken.gouv.fr --selector rsa2048 --key "$K.rsa2048.key")
check "verify with SERVFAIL key lookup fails" eval '! printf "%s\n" "$signed" | "$LIB/dkim-verify-check" >/dev/null'

pid=$DNS_PID
dns_stop
check "dns_stop: unbound $pid gone, port closed" eval '! kill -0 $pid 2>/dev/null && [ -z "$(listening)" ]'
echo "# selftest-dns: $npass passed, $nfail failed"
[ "$nfail" = 0 ]
