# postfix.sh - private Postfix instances (inbound MX with a milter, outbound relay) and swaks helpers for tests (source me).
#
# Usage (bash, as root - Postfix's master must run as root; CI runs as root):
#   . tests/lib/postfix.sh
#   trap postfix_stop_all EXIT
#   postfix_receiver_start "$WORK" "unix:$WORK/milterd.sock"   # or "" for no milter
#   postfix_sender_start "$WORK"                               # after the receiver: relays to it
#   reply=$(swaks_send "$PF_SEND_PORT" alice@agri.gouv.fr verify+TOKEN@certify.test msg.eml); rc=$?
#   postfix_mail_wait "$PF_RECV_MAILDIR" 1 10 && grep '^Authentication-Results:' "$(postfix_mail_last "$PF_RECV_MAILDIR")"
#
# Instances (each has its own config_directory, queue_directory, data_directory, log; nothing outside
# WORKDIR is written, /etc/postfix and the system queue are only read (postfix-files), the system Postfix
# need not run). WORKDIR must be reachable by the 'postfix' user: it is made go+x if it is not.
#
#   postfix_receiver_start WORKDIR MILTER
#       The certifying service's inbound MX in WORKDIR/postfix-recv: smtpd on 127.0.0.1:$PF_RECV_PORT,
#       myhostname mx.certify.test, accepts any local part @certify.test (recipient_delimiter +), rejects
#       relaying to other domains (554 5.7.1), delivers every accepted message to ONE Maildir,
#       $PF_RECV_MAILDIR/new/ (one file per message, LF line endings, with Return-Path:, X-Original-To:,
#       Delivered-To: and Postfix's Received: prepended). MILTER is a libmilter socket spec
#       (unix:/path, inet:127.0.0.1:PORT) or "" for no milter. milter_default_action = tempfail (a dead
#       milter gives "451 4.7.1 Service unavailable - try again later"), milter_protocol = 6,
#       message_reject_characters = \0, strict_rfc821_envelopes = yes, smtpd_forbid_bare_newline = yes
#       (3.7.11: = "normalize": bare LF accepted as CRLF, but only CRLF.CRLF ends DATA) with no
#       exclusions, mynetworks 127.0.0.0/8.
#       Exports PF_RECV_PORT PF_RECV_DIR (instance dir) PF_RECV_CONF (config_directory) PF_RECV_QUEUE
#       PF_RECV_LOG (maillog) PF_RECV_MAILDIR PF_RECV_MILTER.
#   postfix_receiver_set_milter MILTER   change smtpd_milters ("" = none) and reload; new SMTP sessions use it.
#   postfix_receiver_restart [MILTER]    stop and start again (same port, queue, Maildir), optionally with
#                                        another smtpd_milters.
#   postfix_receiver_stop
#   postfix_sender_start WORKDIR
#       An agency's outbound MTA in WORKDIR/postfix-send: smtpd on 127.0.0.1:$PF_SEND_PORT, myhostname
#       mx.agri.gouv.fr (override: PF_SEND_HOSTNAME), accepts anything from 127.0.0.0/8 and relays ALL
#       mail (any sender, including <>) to relayhost [127.0.0.1]:$PF_RECV_PORT (start the receiver first,
#       or set PF_RECV_PORT). A 4xx from the receiver leaves the message deferred in the sender's queue;
#       automatic retries are slow (minimal/maximal_backoff_time and queue_run_delay = $PF_SEND_RETRY,
#       default 300s) so that only postfix_sender_flush retries during a test; set PF_SEND_RETRY=1s before
#       start for fast automatic retries. The sender's own DSNs (bounces, delay notices) are NOT sent to
#       the receiver: they are delivered to $PF_SEND_MAILDIR/new/ (so a test can read the bounce text).
#       Exports PF_SEND_PORT PF_SEND_DIR PF_SEND_CONF PF_SEND_QUEUE PF_SEND_LOG PF_SEND_MAILDIR.
#   Before a start, PF_RECV_EXTRA / PF_SEND_EXTRA (newline-separated "name = value" lines) are appended
#   to that instance's main.cf, e.g. PF_RECV_EXTRA='milter_command_timeout = 5s'
#   PF_SEND_EXTRA='smtp_connection_cache_on_demand = no'.
#   postfix_sender_flush [SECONDS]
#       "postqueue -f": retry every queued message now (ignores backoff). With SECONDS, wait until every
#       message that was deferred at flush time has a new delivery status line (sent/deferred/bounced)
#       in $PF_SEND_LOG; returns 1 on timeout.
#   postfix_sender_queue_count [QUEUE...]
#       Number of messages in the sender's QUEUEs (default: deferred; "all" = incoming active deferred hold).
#   postfix_sender_wait_queue N SECONDS [QUEUE...]   wait until postfix_sender_queue_count QUEUE... = N.
#   postfix_sender_stop
#   postfix_reconfig recv|send 'NAME = VALUE'...   postconf -e on that instance, then reload and wait.
#   postfix_stop_all   stop every instance started by this shell, wait until no process of theirs is left.
#                      (Have "trap postfix_stop_all EXIT" and "trap 'exit 130' INT TERM": bash skips the
#                      EXIT trap when killed by an untrapped signal, and the masters are daemons.)
#   postfix_stop_under DIR   stop every instance under DIR (master.pid files), e.g. in a runner's cleanup.
#
# Logs and mail:
#   postfix_log_mark FILE                       print FILE's current line count (for "after this point").
#   postfix_wait_log FILE REGEX SECONDS [MARK]  wait until a line (after line MARK) matches REGEX (grep -E).
#   postfix_mail_count MAILDIR                  number of delivered messages in MAILDIR/new.
#   postfix_mail_wait MAILDIR N SECONDS         wait until postfix_mail_count MAILDIR >= N.
#   postfix_mail_last MAILDIR                   path of the newest message file.
#   postfix_mail_grep MAILDIR REGEX             paths of the messages with a line matching REGEX (grep -E).
#   postfix_queue_id_of REPLY                   the queue id in a "250 2.0.0 Ok: queued as ID" reply.
#   postfix_regex_quote STRING                  STRING with ERE metacharacters escaped (an address has "+").
#
# Sending (swaks, Debian package):
#   swaks_send PORT FROM TO FILE [SWAKS-OPTION...]
#       Send FILE (a complete message; LF or CRLF line endings) to 127.0.0.1:PORT as-is: bare LF become
#       CRLF, lines starting with "." are dot-stuffed, nothing else changes (no headers added, no %TOKEN%
#       or "\n" expansion, no From_ stripping, no extra blank line: swaks runs with --no-data-fixup on a
#       file we prepare, because swaks' own --data fix-up is not byte-exact). FROM "" or "<>" = null
#       sender; TO may be "a@x,b@y". HELO is $SWAKS_HELO (default client.test); extra options
#       (e.g. --helo, --timeout, --quit-after RCPT) go after FILE. The SMTP transcript goes to
#       $SWAKS_TRANSCRIPT (default: $PF_WORK/swaks.log, else $WORK/swaks.log, overwritten each call).
#       Prints the final server reply line, e.g. "250 2.0.0 Ok: queued as 4Xb..." or
#       "550 5.7.1 <reason>" or "451 4.7.1 Service unavailable - try again later" (the reply that ended
#       the transaction: the last one before QUIT), or a "*** ..." swaks error if there was no reply;
#       returns swaks' exit code (0 ok, 2 connect failed, 23 MAIL, 24 RCPT, 25 DATA, 26 end of data
#       rejected). Also sets SWAKS_REPLY / SWAKS_CODE (3 digits) when not run in a subshell.
#   swaks_send_raw PORT FROM TO FILE [SWAKS-OPTION...]
#       Like swaks_send but the DATA content is FILE's bytes verbatim (no CRLF conversion, no
#       dot-stuffing), followed by ".\r\n": FILE must end with "\r\n" for a standard end of data.
#       For bare-LF / smuggling tests.
#
# Needs Debian packages postfix (install with debconf "No configuration": the system instance is not
# configured nor started), swaks, iproute2 (ss), util-linux (runuser). No syslog needed: every instance
# logs to its own file through postlogd (maillog_file).

PF_USER=postfix
_PF_INSTANCES=""            # instance directories started by this shell

# free_port (TCP and UDP) is common.sh's, sourced here when the caller has not.
declare -F free_port >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_pf_err() { echo "postfix.sh: $*" >&2; }

# _pf_prepare_workdir WORKDIR: create it, make sure the postfix user can traverse it.
_pf_prepare_workdir() {
    local w="$1"
    [ "$(id -u)" = 0 ] || { _pf_err "must run as root (Postfix's master runs as root)"; return 1; }
    command -v postfix >/dev/null || [ -x /usr/sbin/postfix ] || { _pf_err "postfix is not installed"; return 1; }
    mkdir -p "$w" || return 1
    if ! runuser -u "$PF_USER" -- test -x "$w" 2>/dev/null; then
        chmod go+x "$w"
        runuser -u "$PF_USER" -- test -x "$w" 2>/dev/null ||
            { _pf_err "user $PF_USER cannot reach $w (make its parent directories go+x)"; return 1; }
    fi
    PF_WORK="$w"
}

# _pf_write_master DIR PORT EXTRA-LINES: master.cf with an smtpd on 127.0.0.1:PORT; no chroot anywhere.
_pf_write_master() {
    cat >"$1/etc/master.cf" <<EOF
# master.cf written by tests/lib/postfix.sh (no chroot: the queue is under a test directory)
127.0.0.1:$2 inet n    -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
$3
EOF
}

# _pf_write_main DIR HOSTNAME: the settings both instances share.
_pf_write_main() {
    local d="$1" uid gid
    uid=$(id -u "$PF_USER") gid=$(id -g "$PF_USER")
    cat >"$d/etc/main.cf" <<EOF
# main.cf written by tests/lib/postfix.sh - a private test instance, started with "postfix -c $d/etc"
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
meta_directory = /etc/postfix
mail_owner = $PF_USER
setgid_group = postdrop
# No syslog here: log to a file through postlogd (needs the postlog service in master.cf).
maillog_file = $d/maillog
maillog_file_prefixes = $d
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = $2
mydomain = ${2#*.}
myorigin = \$myhostname
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_banner = \$myhostname ESMTP
# Keep messages byte-exact: no header rewriting/completion for clients on 127.0.0.1.
local_header_rewrite_clients =
in_flow_delay = 0
delay_warning_time = 0
# Delivery into $d/mail (virtual mailbox owned by the postfix user).
virtual_mailbox_base = $d/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
EOF
    mkdir -p "$d/mail" && chown "$uid:$gid" "$d/mail"
}

# _pf_cool DIR: backdate main.cf/master.cf. Postfix re-reads a config file modified in the last
# second or so ("let it cool down": 300 ms naps), which costs ~2 s per start or reload.
_pf_cool() { touch -d '-10 seconds' "$1/etc/main.cf" "$1/etc/master.cf"; }

# _pf_start DIR: start the instance, wait until its smtpd port listens.
_pf_start() {
    local d="$1" port="$2" i
    mkdir -p "$d/spool" && : >>"$d/maillog" || return 1
    _pf_cool "$d"
    if ! postfix -c "$d/etc" start >"$d/start.out" 2>&1; then
        _pf_err "postfix -c $d/etc start failed:"; cat "$d/start.out" "$d/maillog" >&2
        return 1
    fi
    _PF_INSTANCES="$_PF_INSTANCES $d"
    for i in $(seq 1 100); do
        ss -lntH "sport = :$port" | grep -q . && return 0
        sleep 0.05
    done
    _pf_err "instance $d does not listen on port $port"; cat "$d/maillog" >&2
    return 1
}

# _pf_stop DIR: TERM the master (it TERMs its process group), wait (KILL after 5 s) until no live
# process of its session is left.
_pf_stop() {
    local d="$1" pid i live
    _PF_INSTANCES=$(echo " $_PF_INSTANCES " | sed "s# $d # #g")
    pid=$(awk '{print $1; exit}' "$d/spool/pid/master.pid" 2>/dev/null)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 100); do
        live=$(ps -o stat= -s "$pid" 2>/dev/null | grep -vc '^Z')
        [ "$live" = 0 ] && break
        [ "$i" = 50 ] && { _pf_err "instance $d: killing leftovers"; kill -KILL -- "-$pid" 2>/dev/null; }
        sleep 0.1
    done
    rm -f "$d/spool/pid/master.pid"
}

postfix_receiver_start() {
    local w="$1" milter="${2:-}" d
    [ $# -ge 1 ] || { _pf_err "usage: postfix_receiver_start WORKDIR MILTER"; return 1; }
    _pf_prepare_workdir "$w" || return 1
    d="$w/postfix-recv"
    _pf_stop "$d"
    rm -rf "$d" && mkdir -p "$d/etc" && chmod 755 "$d" || return 1
    PF_RECV_PORT=$(free_port) || return 1
    _pf_write_master "$d" "$PF_RECV_PORT" "\
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce"
    _pf_write_main "$d" mx.certify.test
    cat >>"$d/etc/main.cf" <<EOF
# --- receiver: the certifying service's inbound MX
virtual_mailbox_domains = certify.test
recipient_delimiter = +
smtpd_relay_restrictions = reject_unauth_destination
default_transport = error:5.7.1 this test MX does not send mail out
smtpd_milters = $milter
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
message_reject_characters = \\0
strict_rfc821_envelopes = yes
smtpd_forbid_bare_newline = yes
# default is \$mynetworks, which would exempt every test client on 127.0.0.1
smtpd_forbid_bare_newline_exclusions =
${PF_RECV_EXTRA:-}
EOF
    PF_RECV_DIR="$d" PF_RECV_CONF="$d/etc" PF_RECV_QUEUE="$d/spool" PF_RECV_LOG="$d/maillog"
    PF_RECV_MAILDIR="$d/mail/Maildir" PF_RECV_MILTER="$milter"
    export PF_RECV_PORT PF_RECV_DIR PF_RECV_CONF PF_RECV_QUEUE PF_RECV_LOG PF_RECV_MAILDIR PF_RECV_MILTER PF_WORK
    _pf_start "$d" "$PF_RECV_PORT"
}

postfix_sender_start() {
    local w="$1" d
    [ $# -ge 1 ] || { _pf_err "usage: postfix_sender_start WORKDIR"; return 1; }
    [ -n "${PF_RECV_PORT:-}" ] || { _pf_err "start the receiver first (or set PF_RECV_PORT)"; return 1; }
    _pf_prepare_workdir "$w" || return 1
    d="$w/postfix-send"
    _pf_stop "$d"
    rm -rf "$d" && mkdir -p "$d/etc" && chmod 755 "$d" || return 1
    PF_SEND_PORT=$(free_port) || return 1
    # The sender's own DSNs (made by bounce(8)) go through a second cleanup whose header_checks FILTER
    # them to the local virtual delivery agent; header_checks only run on Postfix-generated mail whose
    # class is in internal_mail_filter_classes (a cleanup -o content_filter would do nothing: the
    # FILT record comes from the submitting client, not from cleanup).
    echo '/^Subject:/ FILTER virtual:localhost' >"$d/etc/dsn_header_checks"
    _pf_write_master "$d" "$PF_SEND_PORT" "\
bounce    unix  -       -       n       -       0       bounce -o cleanup_service_name=dsncleanup -o internal_mail_filter_classes=bounce,notify
defer     unix  -       -       n       -       0       bounce -o cleanup_service_name=dsncleanup -o internal_mail_filter_classes=bounce,notify
trace     unix  -       -       n       -       0       bounce -o cleanup_service_name=dsncleanup -o internal_mail_filter_classes=bounce,notify
dsncleanup unix n       -       n       -       0       cleanup -o syslog_name=postfix/dsncleanup -o header_checks=regexp:$d/etc/dsn_header_checks -o mime_header_checks= -o nested_header_checks="
    _pf_write_main "$d" "${PF_SEND_HOSTNAME:-mx.agri.gouv.fr}"
    local r="${PF_SEND_RETRY:-300s}"
    cat >>"$d/etc/main.cf" <<EOF
# --- sender: an agency's outbound MTA relaying everything to the receiver
# (no local domains: the default \$virtual_mailbox_maps = static: would match every domain)
virtual_mailbox_domains =
relayhost = [127.0.0.1]:$PF_RECV_PORT
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_helo_name = \$myhostname
smtp_connect_timeout = 5s
# Byte-exact relaying (a DKIM signature must survive): no long-line folding, no 8bit->QP conversion.
smtp_line_length_limit = 0
disable_mime_output_conversion = yes
# Automatic retries: every $r (postfix_sender_flush retries at once anyway).
minimal_backoff_time = $r
maximal_backoff_time = $r
queue_run_delay = $r
${PF_SEND_EXTRA:-}
EOF
    PF_SEND_DIR="$d" PF_SEND_CONF="$d/etc" PF_SEND_QUEUE="$d/spool" PF_SEND_LOG="$d/maillog"
    PF_SEND_MAILDIR="$d/mail/Maildir"
    export PF_SEND_PORT PF_SEND_DIR PF_SEND_CONF PF_SEND_QUEUE PF_SEND_LOG PF_SEND_MAILDIR PF_WORK
    _pf_start "$d" "$PF_SEND_PORT"
}

# postfix_receiver_restart [MILTER]: stop, (set smtpd_milters if MILTER is given), start again on the
# same port with the same queue and Maildir.
postfix_receiver_restart() {
    [ -n "${PF_RECV_DIR:-}" ] || { _pf_err "receiver not started"; return 1; }
    _pf_stop "$PF_RECV_DIR"
    if [ $# -ge 1 ]; then
        postconf -c "$PF_RECV_CONF" -e "smtpd_milters = $1" || return 1
        PF_RECV_MILTER="$1"; export PF_RECV_MILTER
    fi
    _pf_cool "$PF_RECV_DIR"
    _pf_start "$PF_RECV_DIR" "$PF_RECV_PORT"
}

postfix_receiver_stop() { [ -n "${PF_RECV_DIR:-}" ] && _pf_stop "$PF_RECV_DIR"; return 0; }
postfix_sender_stop() { [ -n "${PF_SEND_DIR:-}" ] && _pf_stop "$PF_SEND_DIR"; return 0; }

postfix_stop_all() {
    local d
    for d in $_PF_INSTANCES; do _pf_stop "$d"; done
    _PF_INSTANCES=""
    return 0
}

# postfix_stop_under DIR: stop every instance found under DIR (by its master.pid), for a runner's cleanup
# when the test script that started them died without postfix_stop_all.
postfix_stop_under() {
    local pidfile
    find "$1" -path '*/spool/pid/master.pid' 2>/dev/null | while read -r pidfile; do
        _pf_stop "${pidfile%/spool/pid/master.pid}"
    done
}

# postfix_reconfig recv|send 'NAME = VALUE'...: change main.cf settings, reload, wait for the reload.
postfix_reconfig() {
    local which="$1" d mark; shift
    case "$which" in
    recv) d="${PF_RECV_DIR:-}" ;;
    send) d="${PF_SEND_DIR:-}" ;;
    *) _pf_err "postfix_reconfig: recv or send, not '$which'"; return 1 ;;
    esac
    [ -n "$d" ] || { _pf_err "postfix_reconfig: $which not started"; return 1; }
    postconf -c "$d/etc" -e "$@" || return 1
    _pf_cool "$d"
    mark=$(postfix_log_mark "$d/maillog")
    postfix -c "$d/etc" reload >>"$d/start.out" 2>&1 || { cat "$d/start.out" >&2; return 1; }
    # The master logs this once it re-read main.cf; old idle smtpd processes then exit.
    postfix_wait_log "$d/maillog" 'postfix/master\[[0-9]+\]: reload' 10 "$mark" ||
        { _pf_err "no reload in $d/maillog"; return 1; }
    sleep 0.2
}

postfix_receiver_set_milter() {
    postfix_reconfig recv "smtpd_milters = ${1:-}" || return 1
    PF_RECV_MILTER="${1:-}"; export PF_RECV_MILTER
}

postfix_log_mark() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

postfix_wait_log() {
    local f="$1" re="$2" t=$(( ${3:-10} * 10 )) from="${4:-0}"
    while :; do
        tail -n +"$((from + 1))" "$f" 2>/dev/null | grep -Eq -- "$re" && return 0
        [ "$t" -le 0 ] && return 1
        sleep 0.1; t=$((t - 1))
    done
}

# _pf_queue_files QUEUEDIR QUEUE...: queue file paths.
_pf_queue_files() {
    local q="$1" n dirs=(); shift
    [ $# -gt 0 ] || set -- deferred
    for n in "$@"; do
        case "$n" in
        all) dirs+=("$q/incoming" "$q/active" "$q/deferred" "$q/hold") ;;
        incoming|active|deferred|hold|maildrop|corrupt) dirs+=("$q/$n") ;;
        *) _pf_err "unknown queue '$n'"; return 1 ;;
        esac
    done
    find "${dirs[@]}" -type f 2>/dev/null
}

postfix_sender_queue_count() { _pf_queue_files "$PF_SEND_QUEUE" "$@" | wc -l; }

postfix_sender_wait_queue() {
    local n="$1" t=$(( $2 * 10 )); shift 2
    while :; do
        [ "$(postfix_sender_queue_count "$@")" = "$n" ] && return 0
        [ "$t" -le 0 ] && return 1
        sleep 0.1; t=$((t - 1))
    done
}

postfix_sender_flush() {
    local secs="${1:-}" mark ids id t re
    mark=$(postfix_log_mark "$PF_SEND_LOG")
    ids=$(_pf_queue_files "$PF_SEND_QUEUE" deferred | xargs -r -n1 basename)
    postqueue -c "$PF_SEND_CONF" -f || return 1
    [ -n "$secs" ] || return 0
    t=$((secs * 10))
    for id in $ids; do
        re=" $id: to=<.*status=(sent|deferred|bounced|expired)"
        while ! tail -n +"$((mark + 1))" "$PF_SEND_LOG" | grep -Eq -- "$re"; do
            [ "$t" -le 0 ] && return 1
            sleep 0.1; t=$((t - 1))
        done
    done
    return 0
}

postfix_mail_count() { find "$1/new" -type f 2>/dev/null | wc -l; }

postfix_mail_wait() {
    local t=$(( $3 * 10 ))
    while [ "$(postfix_mail_count "$1")" -lt "$2" ]; do
        [ "$t" -le 0 ] && return 1
        sleep 0.1; t=$((t - 1))
    done
}

postfix_mail_last() { ls -1t "$1/new"/* 2>/dev/null | head -n 1; }

postfix_mail_grep() { grep -lE -- "$2" "$1/new"/* 2>/dev/null; }

postfix_regex_quote() { sed 's/[][\.|$(){}?+*^]/\\&/g' <<<"$1"; }

postfix_queue_id_of() { sed -n 's/.*queued as \([0-9A-Za-z]*\).*/\1/p' <<<"$1"; }

# _swaks PORT FROM TO DATAFILE [OPTION...]: run swaks on an already prepared DATA file (sent + "\r\n").
_swaks() {
    local port="$1" from="$2" to="$3" data="$4" out rc reply; shift 4
    out="${SWAKS_TRANSCRIPT:-${PF_WORK:-${WORK:-${TMPDIR:-/tmp}}}/swaks.log}"
    [ -z "$from" ] && from='<>'
    swaks --server "127.0.0.1:$port" --from "$from" --to "$to" --helo "${SWAKS_HELO:-client.test}" \
        --timeout "${SWAKS_TIMEOUT:-30}" --data "@$data" --no-data-fixup "$@" >"$out" 2>&1
    rc=$?
    # The reply that ended the transaction: the last server line before "-> QUIT" (or the last one).
    reply=$(awk '/^ *-> QUIT/ { exit } /^ *<(-|\*\*) +[0-9][0-9][0-9]( |$)/ { r = $0 } END { print r }' "$out" |
        sed -E 's/^ *<(-|\*\*) +//')
    [ -n "$reply" ] || reply=$(grep -E '^\*\*\* ' "$out" | tail -n 1)
    SWAKS_REPLY="$reply" SWAKS_CODE="${reply:0:3}"
    echo "$reply"
    return "$rc"
}

swaks_send() {
    local port="$1" from="$2" to="$3" file="$4" wire rc; shift 4
    [ -r "$file" ] || { _pf_err "swaks_send: cannot read $file"; return 1; }
    wire=$(mktemp "${PF_WORK:-${WORK:-${TMPDIR:-/tmp}}}/swaks-data.XXXXXX") || return 1
    # CRLF line endings (existing CRLF kept), final CRLF, dot-stuffing, then the terminating "."
    # (swaks --no-data-fixup sends the data followed by CRLF).
    perl -0777 -pe 's/\r?\n/\r\n/g; $_ .= "\r\n" if length($_) && !/\r\n\z/; s/^\./../mg; $_ .= "."' \
        "$file" >"$wire"
    _swaks "$port" "$from" "$to" "$wire" "$@"; rc=$?
    rm -f "$wire"
    return "$rc"
}

swaks_send_raw() {
    local port="$1" from="$2" to="$3" file="$4" wire rc; shift 4
    [ -r "$file" ] || { _pf_err "swaks_send_raw: cannot read $file"; return 1; }
    wire=$(mktemp "${PF_WORK:-${WORK:-${TMPDIR:-/tmp}}}/swaks-data.XXXXXX") || return 1
    { cat "$file"; printf '.'; } >"$wire"
    _swaks "$port" "$from" "$to" "$wire" "$@"; rc=$?
    rm -f "$wire"
    return "$rc"
}
