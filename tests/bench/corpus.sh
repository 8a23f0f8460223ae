#!/usr/bin/env bash
# corpus.sh — the bench corpus, made once per run:
#
#   tests/bench/corpus.sh OUTDIR [REPLIES [JUNK]]
#
# OUTDIR/replies: REPLIES (default 1000) agents' replies to challenges, one per account
#   (bench-RUN-N, userN@DOMAIN), each addressed to verify+TOKEN@certify.test with a fresh token
#   made in the bench database by milterd.request_verification(), 2-20 KB of body,
#   realistic headers, DKIM-signed by dkimpy with the keys dns.sh published ($DNS_KEYS):
#     70% RSA-2048 d=agri.gouv.fr, 10% RSA-2048 d=mail.agri.gouv.fr (relaxed alignment),
#     5% RSA-2048 d=interieur.gouv.fr, 15% Ed25519 d=agri.gouv.fr.
#   Every reply comes from the ministries' shared relays (192.0.2.1-120, HELO
#   smtp.rie.gouv.fr), which run.sh publishes in the SPF records of agri.gouv.fr,
#   interieur.gouv.fr and smtp.rie.gouv.fr: MAIL FROM and HELO pass SPF whichever reply
#   an MTA connection carries (milterload sends CONNECT/HELO once per connection, from
#   the connection's first message).
# OUTDIR/junk: JUNK (default 500) messages to verify+TOKEN@certify.test with well-formed
#   unknown tokens (each one costs milterd a database lookup), for the RCPT refusal test.
#
# Needs: psql reaching the bench database (PGHOST, PGDATABASE), DNS_KEYS.
# Signing: one python process per core (xargs -P2), each signing its share of the list;
# RSA through OpenSSL (python3-cryptography) when it is installed, else dkimpy's
# pure-Python arithmetic (~10 ms a signature, 5-10 times slower).
# The replies are distinct (one token each): the first delivery of each verifies its
# account, a later one is answered already_verified (still a 250, through the whole
# DKIM/SPF/policy/database path).
set -eu
out=${1:?usage: corpus.sh OUTDIR [REPLIES [JUNK]]}
nrep=${2:-1000}
njunk=${3:-500}
here=$(cd "$(dirname "$0")" && pwd)
: "${PGHOST:?PGHOST unset}" "${PGDATABASE:?PGDATABASE unset}" "${DNS_KEYS:?DNS_KEYS unset}"
jobs=${JOBS:-$(nproc)}

rm -rf "$out"
mkdir -p "$out/replies" "$out/junk" "$out/work"
run=$(date +%s)

# 1. Tokens: milterd.request_verification() per account, as a backend calls it, all in one
# statement (a milterctl process per account would take minutes for the first-verification
# corpus of run.sh).
t0=$(date +%s.%N)
psql -v ON_ERROR_STOP=1 -Atq -F "$(printf '\t')" -c "SELECT n, milterd.request_verification(
	'bench-$run-' || n, 'user' || n || '@' || CASE WHEN n % 20 = 3 THEN 'interieur.gouv.fr'
	ELSE 'agri.gouv.fr' END), 'user' || n || '@' || CASE WHEN n % 20 = 3 THEN 'interieur.gouv.fr'
	ELSE 'agri.gouv.fr' END FROM generate_series(1, $nrep) n ORDER BY n" >"$out/work/tokens" ||
	{ echo "corpus.sh: request_verification failed" >&2; exit 1; }
t1=$(date +%s.%N)
[ "$(wc -l <"$out/work/tokens")" -eq "$nrep" ] || { echo "corpus.sh: token count mismatch" >&2; exit 1; }

# 2. Jobs: N TOKEN EMAIL SIGN_DOMAIN SELECTOR ALGO CLIENT HELO
awk -F'\t' -v OFS='\t' '{
	n = $1; dom = substr($3, index($3, "@") + 1); k = n % 20
	sd = dom; sel = "rsa2048"; alg = "rsa-sha256"
	if (dom == "agri.gouv.fr" && k <= 2) { sel = "ed"; alg = "ed25519-sha256" }
	else if (dom == "agri.gouv.fr" && (k == 4 || k == 5)) sd = "mail." dom
	print n, $2, $3, sd, sel, alg, "192.0.2." (n % 120 + 1), "smtp.rie.gouv.fr"
}' "$out/work/tokens" >"$out/work/jobs"
split -n "l/$jobs" -d "$out/work/jobs" "$out/work/part."
ls "$out"/work/part.* | xargs -P "$jobs" -I{} "$here/sign-corpus" --keys "$DNS_KEYS" \
	--out "$out/replies" {}
t2=$(date +%s.%N)
"$here/sign-corpus" --out "$out/junk" --junk "$njunk" --seed "$run"

got=$(find "$out/replies" -name 'r*.eml' | wc -l)
[ "$got" -eq "$nrep" ] || { echo "corpus.sh: $got of $nrep replies written" >&2; exit 1; }
kb=$(du -sk "$out/replies" | cut -f1)
printf 'corpus: %d replies (%d KB) + %d junk; tokens %.1f s, signing %.1f s (%d processes)\n' \
	"$nrep" "$kb" "$njunk" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
	"$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b-a}')" "$jobs"
