#!/usr/bin/env bash
# demo.sh — the main job on a throwaway setup: a private PostgreSQL and DNS server,
# milterd, and an agent's DKIM-signed reply that verifies a pending account.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
export TOP BUILD="${BUILD:-$TOP/build}"
WORK=$(mktemp -d /tmp/milterd-demo.XXXXXX)
export WORK
chmod 755 "$WORK"
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/dns.sh"
. "$TOP/tests/lib/common.sh"
export MILTERD_SQLDIR="$TOP/milterd/sql"

cleanup() {
	set +e	# stop everything, whatever failed
	milterd_stop
	dns_stop 2>/dev/null
	pg_stop
	[ -n "${KEEP:-}" ] && echo "(kept $WORK)" || rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "Starting a private PostgreSQL (unix socket in $WORK/pg) and a DNS server on 127.0.0.1"
pg_start "$WORK"
mkdir -p "$WORK/dns"
dns_start "$WORK/dns"
echo "PostgreSQL ready; unbound serves agri.gouv.fr's DKIM keys at $DNS_SPEC"

step "milterctl db migrate"
"$BUILD/milterctl" db migrate

step "The instance backend asks for a verification: account jeanne, jeanne.martin@agri.gouv.fr"
token=$("$BUILD/milterctl" request --account jeanne --email Jeanne.Martin@agri.gouv.fr)
echo "token (shown once, stored only as SHA-256): $token"
"$BUILD/milterctl" status jeanne

step "Starting milterd (unix socket, DNS through the local server)"
write_config "$WORK/milterd.conf" "log_level = info"
milterd_start "$WORK/milterd.conf"
echo "milterd -n says: $("$BUILD/milterd" -n -c "$WORK/milterd.conf")"

step "Jeanne replies from her agency mailbox; agri.gouv.fr's server signs it (dkimpy)"
cat >"$WORK/reply.eml" <<MSG
From: Jeanne Martin <jeanne.martin@agri.gouv.fr>
To: verify+$token@certify.test
Subject: Re: Verify your account [$token]
Date: $(date -R)
Message-ID: <demo.$$@agri.gouv.fr>

Yes, this is me.
MSG
"$TOP/tests/lib/dkim-sign" --domain agri.gouv.fr --selector rsa2048 \
	--key "$DNS_KEYS/agri.gouv.fr.rsa2048.key" <"$WORK/reply.eml" >"$WORK/reply.signed"
grep -m1 -A1 '^DKIM-Signature' "$WORK/reply.signed"

step "The MTA hands the reply to milterd (miltertest speaks the milter protocol)"
mt message.lua "file=$WORK/reply.signed" "rcpt=<verify+$token@certify.test>" expect=accept \
	"ar=(milterd: verified)" qid=DEMO1
grep 'DEMO1' "$MILTERD_LOG" | tail -n 1
echo "answer: 250 (accepted), Authentication-Results added"

step "Someone else tries the same token with an unsigned forgery"
sed -i "s/^Message-ID: .*/Message-ID: <forged.$$@example.com>/" "$WORK/reply.eml"
mt message.lua "file=$WORK/reply.eml" "rcpt=<verify+$token@certify.test>" expect=accept \
	qid=DEMO2 >/dev/null 2>&1 || true
grep 'DEMO2' "$MILTERD_LOG" | tail -n 1

step "What the backend sees"
psql -Atc "SELECT 'verification_status: ' || account || ' ' || email || ' ' || state
	FROM milterd.verification_status('jeanne')"
psql -Atc "SELECT 'evidence: ' || reason || ' dkim=' || coalesce(dkim_domain, '-') || '/' ||
	coalesce(dkim_selector, '-') || ' ' || coalesce(dkim_key_bits::text, '-') || ' bits, queue id ' ||
	coalesce(queue_id, '-') FROM milterd.evidence ORDER BY id"
state=$(psql -Atc "SELECT state FROM milterd.verification_status('jeanne')")
if [ "$state" = verified ]; then
	printf '\nDemo done: a DKIM-signed reply verified account jeanne; an unsigned one was refused.\n'
else
	printf '\nDemo FAILED: account state is %s\n' "$state"
	exit 1
fi
