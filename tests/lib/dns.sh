# dns.sh - start/stop a local unbound serving the test DNS zones and fresh DKIM keys (source me).
#
# Usage (bash):
#   . tests/lib/dns.sh
#   dns_add_record 'spf.example.com. 60 IN TXT "v=spf1 -all"'   # optional, BEFORE dns_start
#   dns_start "$WORKDIR"      # exports DNS_PORT DNS_ADDR DNS_SPEC DNS_KEYS DNS_PID DNS_LOG DNS_DIR
#   trap dns_stop EXIT        # dns_stop kills unbound and waits for it
#   dns_restart               # after dns_stop: the same server again (same port, keys, records)
#
# Extra records (added as unbound `local-data:`, one 'NAME TTL IN TYPE DATA' per line), before dns_start:
#   - dns_add_record 'LINE'  (appends to $DNS_EXTRA_RECORDS, a newline-separated list; may also be set
#     directly in the environment), and/or
#   - lines of the file $WORKDIR/extra-records (blank lines and '#' comments ignored).
#   Records must not contain single quotes; TXT strings longer than 255 chars must be split by the
#   caller into several "quoted" "strings". Names outside the test zones are fine (served from ".").
#
# Served: for each DOMAIN/SELECTOR below, SELECTOR._domainkey.DOMAIN TXT "v=DKIM1; k=...; p=..."
#   agri.gouv.fr: rsa2048 rsa1024 ed(ed25519)  mail.agri.gouv.fr, interieur.gouv.fr, example.com,
#   fakegouv.fr: rsa2048;  mx.DOMAIN A 127.0.0.x and DOMAIN MX 10 mx.DOMAIN.
#   testing._domainkey.agri.gouv.fr: agri.gouv.fr's rsa2048 key with t=y (testing mode);
#   two._domainkey.agri.gouv.fr: that key and a revoked one (two records at one selector).
#   notes._domainkey.agri.gouv.fr: that key behind a note (n=) of 700 characters, the record
#   over the 1,024 that libopendkim copies.
#   With DNS_DEAD_ADDR=IP@PORT set before dns_start, queries under dead.agri.gouv.fr go to a server
#   there that never answers (the caller runs it): they time out.
#   Any query under broken.gouv.fr (e.g. rsa2048._domainkey.broken.gouv.fr TXT) gets an immediate SERVFAIL:
#   it is an unbound auth-zone with no data and no primary (fallback-enabled: no), which unbound answers with
#   SERVFAIL (no network, no timeout). alias.gouv.fr is an auth-zone whose _domainkey is a DNAME
#   to agri.gouv.fr's: SELECTOR._domainkey.alias.gouv.fr answers the DNAME and the CNAME it makes,
#   to SELECTOR._domainkey.agri.gouv.fr, which a resolver then asks (libunbound does, and
#   returns all three). Every other name: NXDOMAIN (local-zone "." static).
# Keys in $DNS_KEYS: DOMAIN.SELECTOR.key (dkimpy format: PEM for RSA, base64 32-byte seed for
#   Ed25519), DOMAIN.SELECTOR.pem (PEM private key, for OpenSSL users), DOMAIN.SELECTOR.txt (TXT content).
#   $DNS_KEYSPECS lists them as DOMAIN:SELECTOR:TYPE (TYPE rsa2048|rsa1024|ed25519), handy for loops.
# Sourcing this file again in a test (for a private server in another WORKDIR) is fine; unset DNS_PID
#   first, which tests/run exports for its shared server, so that dns_stop cannot stop that one.
# WORKDIR also gets unbound.conf, unbound.log, unbound.stderr. Needs Debian packages unbound,
#   bind9-dnsutils (dig), openssl, iproute2 (ss). Works as root and non-root (no setuid, no chroot).

DNS_KEYSPECS="agri.gouv.fr:rsa2048:rsa2048 agri.gouv.fr:rsa1024:rsa1024 agri.gouv.fr:ed:ed25519
mail.agri.gouv.fr:rsa2048:rsa2048 interieur.gouv.fr:rsa2048:rsa2048 example.com:rsa2048:rsa2048
fakegouv.fr:rsa2048:rsa2048"
DNS_ZONES="agri.gouv.fr interieur.gouv.fr example.com fakegouv.fr"

dns_add_record() {
    DNS_EXTRA_RECORDS="${DNS_EXTRA_RECORDS:+$DNS_EXTRA_RECORDS
}$1"
}

# free_port (TCP and UDP) is common.sh's, sourced here when the caller has not.
declare -F free_port >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# _dns_genkey DOMAIN SELECTOR TYPE: write DOMAIN.SELECTOR.{pem,key,txt} into $DNS_KEYS.
_dns_genkey() {
    local base="$DNS_KEYS/$1.$2"
    case "$3" in
    rsa*)
        openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${3#rsa}" -out "$base.pem" 2>/dev/null || return 1
        cp "$base.pem" "$base.key"
        echo "v=DKIM1; k=rsa; p=$(openssl pkey -in "$base.pem" -pubout -outform DER | base64 -w0)" > "$base.txt" ;;
    ed25519)  # RFC 8463: p= is the raw 32-byte key; dkimpy wants the raw 32-byte seed, base64
        openssl genpkey -algorithm ED25519 -out "$base.pem" 2>/dev/null || return 1
        openssl pkey -in "$base.pem" -outform DER | tail -c 32 | base64 -w0 > "$base.key"
        echo "v=DKIM1; k=ed25519; p=$(openssl pkey -in "$base.pem" -pubout -outform DER | tail -c 32 | base64 -w0)" > "$base.txt" ;;
    esac
    chmod 600 "$base.pem" "$base.key"
}

# _dns_txt_rdata FILE: the TXT content of FILE as "quoted" strings of at most 255 chars.
_dns_txt_rdata() {
    local s; s=$(cat "$1")
    while [ -n "$s" ]; do printf '"%s" ' "${s:0:255}"; s=${s:255}; done
}

# _dns_write_conf WORKDIR PORT
_dns_write_conf() {
    local w="$1" spec d s t i=1 line
    {
        echo "server:"
        echo "  interface: 127.0.0.1"; echo "  port: $2"; echo "  do-ip6: no"; echo "  so-reuseport: no"
        echo "  do-daemonize: no"; echo "  username: \"\""; echo "  chroot: \"\""; echo "  directory: \"$w\""
        echo "  pidfile: \"$w/unbound.pid\""; echo "  use-syslog: no"; echo "  logfile: \"$w/unbound.log\""
        echo "  log-servfail: yes"; echo "  verbosity: 1"; echo "  num-threads: 1"; echo "  module-config: \"iterator\""
        # Every query asked, one line each ("info: 127.0.0.1 NAME. TYPE IN"): tests
        # count what milterd asked for (evaluate.sh).
        echo "  log-queries: yes"
        echo "  access-control: 127.0.0.0/8 allow"
        echo "  local-zone: \".\" static"
        echo "  local-zone: \"broken.gouv.fr.\" transparent"
        echo "  local-zone: \"alias.gouv.fr.\" transparent"
        for d in $DNS_ZONES; do
            i=$((i + 1))
            echo "  local-zone: \"$d.\" static"
            echo "  local-data: \"$d. 60 IN SOA ns.$d. hostmaster.$d. 1 3600 600 86400 60\""
            echo "  local-data: \"$d. 60 IN MX 10 mx.$d.\""
            echo "  local-data: \"mx.$d. 60 IN A 127.0.0.$i\""
        done
        for spec in $DNS_KEYSPECS; do
            IFS=: read -r d s t <<< "$spec"
            echo "  local-data: '$s._domainkey.$d. 60 IN TXT $(_dns_txt_rdata "$DNS_KEYS/$d.$s.txt")'"
        done
        # Two key records at one selector (RFC 6376 3.6.2.2: the result is undefined).
        echo "  local-data: 'two._domainkey.agri.gouv.fr. 60 IN TXT $(_dns_txt_rdata "$DNS_KEYS/agri.gouv.fr.rsa2048.txt")'"
        echo "  local-data: 'two._domainkey.agri.gouv.fr. 60 IN TXT \"v=DKIM1; p=\"'"
        # agri.gouv.fr's rsa2048 key again, after a long note (n=, folded by white space).
        echo "  local-data: 'notes._domainkey.agri.gouv.fr. 60 IN TXT $(_dns_txt_rdata \
            <(sed "s/^v=DKIM1;/v=DKIM1; n=$(printf 'Cle de la passerelle du ministere, %.0s' {1..20});/" \
            "$DNS_KEYS/agri.gouv.fr.rsa2048.txt"))'"
        # agri.gouv.fr's rsa2048 key again, flagged as testing DKIM (t=y).
        echo "  local-data: 'testing._domainkey.agri.gouv.fr. 60 IN TXT $(_dns_txt_rdata \
            <(sed 's/^v=DKIM1;/v=DKIM1; t=y;/' "$DNS_KEYS/agri.gouv.fr.rsa2048.txt"))'"
        { printf '%s\n' "${DNS_EXTRA_RECORDS:-}"; if [ -f "$w/extra-records" ]; then cat "$w/extra-records"; fi; } |
            while IFS= read -r line; do
                case "$line" in ''|'#'*) continue ;; esac
                echo "  local-data: '$line'"
            done
        # Names delegated to a server that never answers (DNS_DEAD_ADDR, IP@PORT):
        # every query under them times out (unbound tries, then SERVFAIL).
        if [ -n "${DNS_DEAD_ADDR:-}" ]; then
            echo "  local-zone: \"dead.agri.gouv.fr.\" transparent"
            echo "  do-not-query-localhost: no"
        fi
        echo "remote-control:"; echo "  control-enable: no"
        echo "auth-zone:"; echo "  name: \"broken.gouv.fr.\""; echo "  fallback-enabled: no"
        echo "auth-zone:"; echo "  name: \"alias.gouv.fr.\""; echo "  zonefile: \"$w/alias.gouv.fr.zone\""
        echo "  for-upstream: no"
        echo "  fallback-enabled: no"
        if [ -n "${DNS_DEAD_ADDR:-}" ]; then
            echo "stub-zone:"; echo "  name: \"dead.agri.gouv.fr.\""; echo "  stub-addr: $DNS_DEAD_ADDR"
        fi
    } > "$w/unbound.conf"
    printf '%s\n' '$ORIGIN alias.gouv.fr.' '$TTL 60' \
        '@ IN SOA ns.alias.gouv.fr. hostmaster.alias.gouv.fr. 1 3600 600 86400 60' \
        '@ IN NS ns.alias.gouv.fr.' 'ns IN A 127.0.0.1' '_domainkey IN DNAME _domainkey.agri.gouv.fr.' \
        >"$w/alias.gouv.fr.zone"
}

# dns_start WORKDIR: generate keys, write config, start unbound on a free port, wait until it answers.
dns_start() {
    local w try i spec d s t
    w=$(cd "$1" && pwd) || { echo "dns_start: no such dir: $1" >&2; return 1; }
    export DNS_ADDR=127.0.0.1 DNS_KEYS="$w/keys" DNS_LOG="$w/unbound.log" DNS_DIR="$w"
    rm -rf "$DNS_KEYS"; mkdir -p "$DNS_KEYS"; chmod 700 "$DNS_KEYS"
    for spec in $DNS_KEYSPECS; do
        IFS=: read -r d s t <<< "$spec"
        _dns_genkey "$d" "$s" "$t" || { echo "dns_start: key generation failed ($spec)" >&2; return 1; }
    done
    for try in 1 2 3 4 5; do
        DNS_PORT=$(free_port) || return 1
        _dns_write_conf "$w" "$DNS_PORT"
        /usr/sbin/unbound-checkconf "$w/unbound.conf" >/dev/null || { echo "dns_start: bad config $w/unbound.conf" >&2; return 1; }
        /usr/sbin/unbound -d -c "$w/unbound.conf" >>"$w/unbound.stderr" 2>&1 &
        DNS_PID=$!
        for i in $(seq 1 50); do
            kill -0 "$DNS_PID" 2>/dev/null || break   # died (port taken?): try another port
            if dig +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 SOA agri.gouv.fr 2>/dev/null | grep -q 'status: NOERROR'; then
                export DNS_PORT DNS_PID DNS_SPEC="127.0.0.1@$DNS_PORT"
                return 0
            fi
            sleep 0.1
        done
        dns_stop
    done
    echo "dns_start: unbound did not come up, see $w/unbound.log $w/unbound.stderr" >&2
    return 1
}

# dns_restart: start again the server of the last dns_start after dns_stop (a DNS outage ends):
# same WORKDIR, port, keys and records; wait until it answers.
dns_restart() {
    local w="${DNS_DIR:?dns_restart: no dns_start}" i
    [ -z "${DNS_PID:-}" ] || { echo "dns_restart: unbound $DNS_PID still running" >&2; return 1; }
    /usr/sbin/unbound -d -c "$w/unbound.conf" >>"$w/unbound.stderr" 2>&1 &
    DNS_PID=$!
    for i in $(seq 1 50); do
        kill -0 "$DNS_PID" 2>/dev/null || break   # died: port taken meanwhile?
        if dig +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 SOA agri.gouv.fr 2>/dev/null | grep -q 'status: NOERROR'; then
            export DNS_PID
            return 0
        fi
        sleep 0.1
    done
    dns_stop
    echo "dns_restart: unbound did not come back on port $DNS_PORT, see $w/unbound.log $w/unbound.stderr" >&2
    return 1
}

# dns_stop: stop the unbound started by dns_start and wait for it to exit.
dns_stop() {
    [ -n "${DNS_PID:-}" ] || return 0
    kill "$DNS_PID" 2>/dev/null || true
    wait "$DNS_PID" 2>/dev/null || true    # works when dns_start ran in this shell; else poll below
    local i; for i in $(seq 1 50); do kill -0 "$DNS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DNS_PID" 2>/dev/null || true
    unset DNS_PID
}
