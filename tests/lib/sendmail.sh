# sendmail.sh - a private Sendmail 8.17 MX (Debian's packages unpacked, its own .cf built by m4) in front of a milter, for tests (source me).
#
# Usage (bash, as root: Sendmail's daemon, mount and UTS namespaces; CI runs as root):
#   . tests/lib/sendmail.sh
#   trap sendmail_stop EXIT
#   sendmail_fetch                      # Debian's sendmail-bin, -base, -cf unpacked into $SM_ROOT (cached)
#   sendmail_start WORKDIR SOCKDIR "INPUT_MAIL_FILTER(\`milterd', \`S=unix:/run/milterd/milterd.sock, ...')"
#   reply=$(swaks_send "$SM_PORT" alice@agri.gouv.fr verify+TOKEN@certify.test msg.eml)   # postfix.sh
#   postfix_mail_wait "$SM_MAILDIR" 1 10                                                 # postfix.sh
#   sendmail_stop
#
#   sendmail_fetch
#       Debian's Sendmail conflicts with Postfix (both are mail-transport-agent), so it is not installed:
#       "apt-get download" fetches sendmail-bin, sendmail-base and sendmail-cf (Debian 12: 8.17.1.9) and
#       "dpkg-deb -x" unpacks them into $SM_ROOT = ${SENDMAIL_CACHE:-$BUILD/sendmail}, once (later runs
#       reuse it; "make clean" or removing it fetches again). Runs "apt-get update" first if the package
#       lists lack them. The libraries the binary links that Postfix's dependencies do not bring
#       (libwrap0, liblockfile1) and m4 are in the Makefile's DEB_PACKAGES. Exports SM_ROOT SM_BIN
#       SM_VERSION.
#   sendmail_start WORKDIR SOCKDIR FILTERLINE
#       An inbound MX in WORKDIR/sendmail: "sendmail -bD -C WORKDIR/sendmail/sendmail.cf", the .cf made
#       by m4 from sendmail-cf's files with FILTERLINE (an INPUT_MAIL_FILTER(...) line) as given, SMTP on
#       127.0.0.1:$SM_PORT, $j = mx.certify.test, accepts any local part @certify.test and delivers each
#       recipient's copy to ONE Maildir, $SM_MAILDIR/new/ (LF line endings, with Sendmail's Received: and
#       Return-Path:), DNS never asked (hosts from /etc/hosts, sender domains need not resolve), load
#       limits off (a busy test machine must not make it queue or refuse).
#       It runs in its own mount, UTS and PID namespaces (unshare):
#         - host name mx.certify.test: Sendmail sleeps 60 s at start when the host name is unqualified;
#         - /run is a private tmpfs where SOCKDIR (a directory of the test) is bind-mounted at the
#           directory of FILTERLINE's unix socket (which must be under /run): Sendmail refuses a milter
#           socket below a world-writable directory such as /tmp, and the README's line is used unchanged;
#           /run/sendmail holds what else Sendmail wants on a safe path: queue, (empty) alias database,
#           the local mailer;
#         - /dev holds the real nodes (symbolic links) and a /dev/log served by tests/lib/syslog-sink, so
#           that Sendmail's syslog(3) lines land in $SM_LOG (no syslog daemon runs here);
#         - when its first process (Sendmail's daemon) dies, the kernel kills every other process of
#           the PID namespace: sendmail_stop kills that one (unshare ignores SIGTERM while it waits),
#           and unshare --kill-child kills it if unshare is killed. None is left behind.
#       Exports SM_PORT SM_DIR SM_CF SM_LOG (Sendmail's log) SM_MAILDIR SM_PID (unshare's pid).
#   sendmail_stop        stop it (if started) and wait until no process of its namespace is left.
#   sendmail_procs       host pids of the processes in the instance's PID namespace ($SM_NS, kept after
#                        sendmail_stop so that a test can check that none is left).
#   sendmail_log_mark / sendmail_wait_log REGEX SECONDS [MARK]   like postfix_log_mark / postfix_wait_log
#                        on $SM_LOG.
#
# Needs: root, Debian packages m4, libwrap0, liblockfile1, util-linux (unshare), iproute2 (ss), python3,
# and apt-get access to a Debian mirror the first time.

SM_DEBS="sendmail-bin sendmail-base sendmail-cf"
_SM_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SM_PID="" SM_INIT="" SM_NS="" SM_DIR=""

_sm_err() { echo "sendmail.sh: $*" >&2; }

# free_port (TCP and UDP) is common.sh's, sourced here when the caller has not.
declare -F free_port >/dev/null || . "$_SM_LIB/common.sh"

sendmail_fetch() {
    local tmp f missing
    SM_ROOT="${SENDMAIL_CACHE:-${BUILD:?}/sendmail}"
    SM_BIN="$SM_ROOT/usr/libexec/sendmail/sendmail"
    if [ ! -x "$SM_BIN" ] || [ ! -f "$SM_ROOT/usr/share/sendmail/cf/m4/cf.m4" ]; then
        mkdir -p "$(dirname "$SM_ROOT")" || return 1
        tmp=$(mktemp -d "$SM_ROOT.fetch.XXXXXX") || return 1
        # As root apt-get would drop to _apt, which cannot write into a root-owned 0700 directory.
        if ! (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download $SM_DEBS) >"$tmp/apt.log" 2>&1; then
            apt-get update -qq >>"$tmp/apt.log" 2>&1
            (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download $SM_DEBS) >>"$tmp/apt.log" 2>&1 ||
                { _sm_err "apt-get download $SM_DEBS failed:"; cat "$tmp/apt.log" >&2; rm -rf "$tmp"; return 1; }
        fi
        for f in "$tmp"/*.deb; do
            dpkg-deb -x "$f" "$tmp/root" || { _sm_err "dpkg-deb -x $f failed"; rm -rf "$tmp"; return 1; }
            dpkg-deb --show --showformat='${Package} ${Version}\n' "$f" >>"$tmp/root/PACKAGES"
        done
        rm -rf "$SM_ROOT" && mv "$tmp/root" "$SM_ROOT" && rm -rf "$tmp" || return 1
    fi
    missing=$(ldd "$SM_BIN" 2>&1 | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | paste -sd' ')
    [ -z "$missing" ] || { _sm_err "$SM_BIN: missing libraries $missing (make deps installs them)"; return 1; }
    command -v m4 >/dev/null || { _sm_err "m4 is not installed (make deps installs it)"; return 1; }
    SM_VERSION=$(sed -n 's/^sendmail-bin //p' "$SM_ROOT/PACKAGES")
    export SM_ROOT SM_BIN SM_VERSION
}

# _sm_write_mc DIR PORT FILTERLINE: the .mc (generic Linux, the filter line as given). What Sendmail
# checks for safe paths (queue, alias database, local mailer) is in /run/sendmail, in its namespace.
_sm_write_mc() {
    local d="$1" port="$2" line="$3"
    cat >"$d/sendmail.mc" <<EOF
divert(-1)
# sendmail.mc written by tests/lib/sendmail.sh - a private test MX, run with "sendmail -bD -C $d/sendmail.cf"
divert(0)dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`mx.certify.test')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`QUEUE_DIR', \`/run/sendmail/queue')dnl
define(\`STATUS_FILE', \`/run/sendmail/sendmail.st')dnl
define(\`confPID_FILE', \`/run/sendmail/sendmail.pid')dnl
define(\`ALIAS_FILE', \`/run/sendmail/aliases')dnl
define(\`HELP_FILE', \`')dnl
define(\`confSERVICE_SWITCH_FILE', \`$d/service.switch')dnl
define(\`confHOSTS_FILE', \`/etc/hosts')dnl
define(\`confTO_IDENT', \`0')dnl
define(\`confQUEUE_LA', \`1000')dnl
define(\`confREFUSE_LA', \`1000')dnl
define(\`confDELAY_LA', \`0')dnl
define(\`confMAX_DAEMON_CHILDREN', \`0')dnl
define(\`confCONNECTION_RATE_THROTTLE', \`0')dnl
dnl Local delivery: one file per recipient in the Maildir, by a script run as root (S), with no
dnl passwd lookup (-w) and one recipient per call (-m).
define(\`LOCAL_MAILER_PATH', \`/run/sendmail/deliver')dnl
define(\`LOCAL_MAILER_ARGS', \`deliver \$u')dnl
MODIFY_MAILER_FLAGS(\`LOCAL', \`+S')dnl
MODIFY_MAILER_FLAGS(\`LOCAL', \`-w')dnl
MODIFY_MAILER_FLAGS(\`LOCAL', \`-m')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`no_default_msa')dnl
LOCAL_DOMAIN(\`certify.test')dnl
DAEMON_OPTIONS(\`Port=$port, Addr=127.0.0.1, Name=MTA')dnl
dnl The filter line under test, as given:
$line
MAILER(\`local')dnl
MAILER(\`smtp')dnl
EOF
}

# Run inside the namespaces as their first process: $1 = instance dir, $2 = SOCKDIR, $3 = where
# the .cf expects it, $4 = syslog-sink, $5 = sendmail binary, $6 = .cf.
_SM_NS_INIT='
set -e
d=$1 sockdir=$2 sockat=$3 sink=$4 sm=$5 cf=$6
hostname mx.certify.test
mount -t tmpfs -o mode=0755 sendmail-run /run
mkdir -p "$sockat"
mount --bind "$sockdir" "$sockat"
mkdir -p "$d/dev.real"
mount --rbind /dev "$d/dev.real"
mount -t tmpfs -o mode=0755 sendmail-dev /dev
for f in "$d"/dev.real/* "$d"/dev.real/.[!.]*; do
	if [ -e "$f" ] || [ -L "$f" ]; then ln -s "$f" /dev/; fi
done
/usr/bin/python3 "$sink" /dev/log "$d/maillog" &
i=0
while [ ! -S /dev/log ]; do
	i=$((i + 1)); [ "$i" -le 100 ] || { echo "no /dev/log from syslog-sink" >&2; exit 1; }
	sleep 0.05
done
mkdir -p /run/sendmail/queue
chmod 700 /run/sendmail/queue
cp "$d/deliver" /run/sendmail/deliver
echo "# no alias, but a database: without one every delivery is deferred" >/run/sendmail/aliases
"$sm" -bi -C "$cf" >"$d/newaliases.out"
exec "$sm" -bD -C "$cf"
'

sendmail_start() {
    local w="$1" sockdir="$2" line="$3" d sock sockat i
    [ $# -eq 3 ] || { _sm_err "usage: sendmail_start WORKDIR SOCKDIR FILTERLINE"; return 1; }
    [ "$(id -u)" = 0 ] || { _sm_err "must run as root"; return 1; }
    [ -n "${SM_BIN:-}" ] || sendmail_fetch || return 1
    sock=$(sed -n 's/.*S=unix:\([^,'"'"']*\).*/\1/p' <<<"$line")
    case "$sock" in
    /run/?*/*) sockat=$(dirname "$sock") ;;
    *) _sm_err "the filter's socket must be a unix socket under /run: '$sock'"; return 1 ;;
    esac
    sendmail_stop
    SM_NS=""
    d="$w/sendmail"
    rm -rf "$d" && mkdir -p "$d/Maildir/new" "$d/Maildir/tmp" || return 1
    chmod 755 "$w" "$d"
    SM_PORT=$(free_port) || return 1
    cat >"$d/deliver" <<EOF
#!/bin/sh
# deliver RECIPIENT: Sendmail's local mailer for the test MX; stores the message in the Maildir.
m=$d/Maildir
EOF
    cat >>"$d/deliver" <<'EOF'
f=$(date +%s.%N).$$
cat >"$m/tmp/$f" && mv "$m/tmp/$f" "$m/new/$f"
EOF
    chmod 755 "$d/deliver"
    printf 'hosts\tfiles\naliases\tfiles\n' >"$d/service.switch"
    _sm_write_mc "$d" "$SM_PORT" "$line"
    if ! m4 -D_CF_DIR_="$SM_ROOT/usr/share/sendmail/cf/" "$SM_ROOT/usr/share/sendmail/cf/m4/cf.m4" \
        "$d/sendmail.mc" >"$d/sendmail.cf" 2>"$d/m4.err" || [ -s "$d/m4.err" ]; then
        _sm_err "m4 failed on $d/sendmail.mc:"; cat "$d/m4.err" >&2
        return 1
    fi
    : >"$d/maillog"
    SM_DIR="$d" SM_CF="$d/sendmail.cf" SM_LOG="$d/maillog" SM_MAILDIR="$d/Maildir"
    export SM_PORT SM_DIR SM_CF SM_LOG SM_MAILDIR
    unshare --mount --uts --pid --fork --kill-child --mount-proc \
        /bin/sh -c "$_SM_NS_INIT" sendmail-ns "$d" "$sockdir" "$sockat" "$_SM_LIB/syslog-sink" \
        "$SM_BIN" "$SM_CF" >"$d/start.out" 2>&1 &
    SM_PID=$!
    export SM_PID
    for i in $(seq 1 200); do
        [ -n "$SM_NS" ] || _sm_ns_of "$SM_PID"
        [ -n "$SM_NS" ] && ss -lntH "sport = :$SM_PORT" | grep -q . && return 0
        kill -0 "$SM_PID" 2>/dev/null || break
        sleep 0.05
    done
    _sm_err "Sendmail does not listen on 127.0.0.1:$SM_PORT:"; cat "$d/start.out" "$d/maillog" >&2
    sendmail_stop
    return 1
}

# _sm_ns_of PID: set SM_INIT to unshare's child, the first process of the namespaces, and SM_NS to
# its PID namespace once it is in one of its own.
_sm_ns_of() {
    local child ns
    child=$(ps -o pid= --ppid "$1" 2>/dev/null | head -n 1 | tr -d ' ')
    [ -n "$child" ] || return 0
    ns=$(readlink "/proc/$child/ns/pid" 2>/dev/null) || return 0
    [ "$ns" != "$(readlink /proc/self/ns/pid)" ] || return 0
    SM_INIT="$child" SM_NS="$ns"
}

sendmail_procs() {
    local p
    [ -n "$SM_NS" ] || return 0
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$SM_NS" ] && echo "${p#/proc/}"
    done
    return 0
}

sendmail_stop() {
    local i left
    if [ -n "$SM_PID" ]; then
        # unshare ignores SIGTERM while it waits for its child: kill that child, the namespace's
        # first process (Sendmail's daemon), and the kernel kills the rest of the namespace.
        [ -n "$SM_INIT" ] || _sm_ns_of "$SM_PID"
        if [ -n "$SM_INIT" ]; then kill -KILL "$SM_INIT" 2>/dev/null; else kill -KILL "$SM_PID" 2>/dev/null; fi
        wait "$SM_PID" 2>/dev/null
        SM_PID="" SM_INIT=""
    fi
    [ -n "$SM_NS" ] || return 0
    for i in $(seq 1 100); do
        left=$(sendmail_procs)
        [ -z "$left" ] && break
        [ "$i" = 50 ] && { _sm_err "killing leftovers: $left"; kill -KILL $left 2>/dev/null; }
        sleep 0.1
    done
    return 0
}

sendmail_log_mark() { if [ -f "$SM_LOG" ]; then wc -l <"$SM_LOG"; else echo 0; fi; }

sendmail_wait_log() {
    local re="$1" t=$(( ${2:-10} * 10 )) from="${3:-0}"
    while :; do
        tail -n +"$((from + 1))" "$SM_LOG" 2>/dev/null | grep -Eq -- "$re" && return 0
        [ "$t" -le 0 ] && return 1
        sleep 0.1; t=$((t - 1))
    done
}
