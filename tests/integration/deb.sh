# deb.sh — the Debian package: make deb builds it (lintian without errors or
# warnings), dpkg -i puts every file where the tree says (units, SQL, templates,
# policies, Mastodon kit, man pages), /etc/milterd as conffiles, a system user,
# the unit installed but not enabled; the installed milterd checks and runs its
# installed configuration, the installed milterctl migrates the test PostgreSQL
# from the installed SQL; dpkg --purge leaves nothing behind.
#
# It installs into the machine's real /usr and /etc, so it refuses to run where
# anything of milterd is present that it did not install itself, purges what an
# earlier run of its own left (a killed run), and purges on any exit.
. "$TOP/tests/lib/common.sh"
set -u

if [ "$(id -u)" != 0 ]; then
	echo "skip - deb: dpkg -i needs root"
	exit 0
fi

# One run at a time on the machine (several checkouts may run their tests): an
# flock(2) on dpkg's directory leaves no lock file behind, and dpkg's own locks
# are fcntl locks, independent of it.
exec 8</var/lib/dpkg
flock -w 600 8 || { not_ok "another deb.sh has held the lock for 10 minutes"; exit 0; }

MARK=/etc/milterd/.installed-by-tests-deb	# says the installed package is this test's
LOG="$WORK/dpkg.log"
DB=milterd_deb
export DEBIAN_FRONTEND=noninteractive

# pkg_status: dpkg's state of the milterd package (empty: unknown to dpkg).
pkg_status() { dpkg-query -W -f='${db:Status-Status}' milterd 2>/dev/null; }

# dpkg_do ARGS...: dpkg, bounded, waiting while another dpkg holds its lock.
dpkg_do() {
	local i rc
	for i in $(seq 30); do
		timeout 300 dpkg "$@" </dev/null >"$WORK/dpkg.out" 2>&1; rc=$?
		cat "$WORK/dpkg.out" >>"$LOG"
		[ "$rc" -eq 0 ] && return 0
		grep -q 'locked' "$WORK/dpkg.out" || return "$rc"
		sleep 2
	done
	return 1
}

cleanup() {
	milterd_stop	# runs as milterd: purge could not remove the user
	if [ -e "$MARK" ]; then
		dpkg_do --purge milterd || cat "$LOG" >&2
		rm -f "$MARK"
		rmdir /etc/milterd 2>/dev/null
	fi
	psql -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A run killed before its purge left the marker: finish its work first.
status=$(pkg_status)
if [ -e "$MARK" ]; then
	if dpkg_do --purge milterd; then
		rm -f "$MARK"
		rmdir /etc/milterd 2>/dev/null
		ok "a milterd package left by an earlier run of this test is purged first"
	else
		not_ok "purging the milterd package an earlier run left: $(tail -n 3 "$LOG" | tr '\n' ' ')"
		exit 0
	fi
elif [ -n "$status" ] && [ "$status" != not-installed ]; then
	not_ok "a milterd package this test did not install is here ($status): not touching it"
	exit 0
fi

# The user and group as they are without the package: as purge must leave them.
user_before=$(getent passwd milterd)
group_before=$(getent group milterd)

version=$(cd "$TOP" && dpkg-parsechangelog -SVersion)
arch=$(dpkg --print-architecture)
deb="$WORK/build/deb/milterd_${version}_${arch}.deb"
start=$(date +%s)
if ! timeout 900 make -s -C "$TOP" deb BUILD="$WORK/build" >"$WORK/make.log" 2>&1; then
	not_ok "make deb: $(grep -E '^(E|W): |rror' "$WORK/make.log" | tail -n 5 | tr '\n' ' ')"
	exit 0
fi
[ -f "$deb" ] && ok "make deb builds $(basename "$deb") in $(( $(date +%s) - start )) s, lintian finds no error or warning" ||
	{ not_ok "make deb: no $deb"; exit 0; }

# Nothing of the package may be here already: a make install, an admin's files.
# present_paths: those of the package's paths that are here (its directories
# only if they are its own: named milterd).
dpkg-deb -c "$deb" | awk '{print substr($1, 1, 1), $6}' | sed 's| \./| /|; s|/$||' >"$WORK/paths"
present_paths() {
	local type p
	while read -r type p; do
		[ -n "$p" ] || continue
		if [ "$type" = d ]; then
			case "$p" in *milterd*) [ -e "$p" ] && echo " $p" ;; esac
		elif [ -e "$p" ] || [ -L "$p" ]; then
			echo " $p"
		fi
	done <"$WORK/paths" | tr -d '\n'
}
conflicts=$(present_paths)
[ -e /run/milterd ] && conflicts="$conflicts /run/milterd"
if [ -n "$conflicts" ]; then
	not_ok "files of milterd not from this test are on this machine, not touching them:$conflicts"
	exit 0
fi

mkdir -p /etc/milterd && touch "$MARK"	# also stands for a file the admin adds there
if dpkg_do -i "$deb" && [ "$(pkg_status)" = installed ]; then
	ok "dpkg -i installs the package without systemd running"
else
	not_ok "dpkg -i: $(tail -n 5 "$LOG" | tr '\n' ' ')"
	exit 0
fi

# Every file the tree says make install lays out comes from the package.
want="/usr/sbin/milterd /usr/sbin/milterctl /usr/share/milterd/milterd.conf.example /etc/milterd/milterd.conf"
for f in "$TOP"/milterd/*.[58]; do
	want="$want /usr/share/man/man${f##*.}/$(basename "$f").gz"
done
for f in "$TOP"/milterd/sql/*.sql; do want="$want /usr/share/milterd/sql/$(basename "$f")"; done
for f in "$TOP"/templates/*; do want="$want /usr/share/milterd/templates/$(basename "$f")"; done
for f in "$TOP"/policies/*.conf; do
	want="$want /usr/share/milterd/policies/$(basename "$f") /etc/milterd/policies/$(basename "$f")"
done
for f in "$TOP"/milterd/sql/mastodon/*; do want="$want /usr/share/milterd/$(basename "$f")"; done
units=""
for f in "$TOP"/milterd/*.service "$TOP"/milterd/*.timer; do
	[ -e "$f" ] && units="$units $(basename "$f")" && want="$want /lib/systemd/system/$(basename "$f")"
done
dpkg -L milterd >"$WORK/owned"
missing=""
for f in $want; do
	{ [ -s "$f" ] && grep -qxF "$f" "$WORK/owned"; } || missing="$missing $f"
done
[ -z "$missing" ] && ok "the package installs binaries, man pages, SQL, templates, policies, Mastodon kit, units:$units" ||
	not_ok "not installed by the package:$missing"
bad=""
for f in "$TOP"/milterd/sql/mastodon/*; do
	[ -x "$f" ] && [ ! -x "/usr/share/milterd/$(basename "$f")" ] && bad="$bad $(basename "$f")"
done
[ -z "$bad" ] && ok "the Mastodon kit's scripts stay executable" || not_ok "not executable once installed:$bad"

# The configuration is the admin's: conffiles, all under /etc/milterd.
dpkg-query -W -f='${Conffiles}\n' milterd | awk 'NF {print $1}' | sort >"$WORK/conffiles"
expected=$( { echo /etc/milterd/milterd.conf; for f in "$TOP"/policies/*.conf; do
	echo "/etc/milterd/policies/$(basename "$f")"; done; } | sort)
expect_eq "the files under /etc/milterd are conffiles, and only they" "$expected" "$(cat "$WORK/conffiles")"

# The system user milterd drops to.
pw=$(getent passwd milterd)
uid=$(echo "$pw" | cut -d: -f3)
if [ -n "$pw" ] && [ "$uid" -lt 1000 ] && getent group milterd >/dev/null &&
	[ "$(echo "$pw" | cut -d: -f7)" = /usr/sbin/nologin ]; then
	ok "a system user milterd (uid $uid, no login) and its group exist"
else
	not_ok "system user milterd: '$pw'"
fi

# The unit: the installed binary and configuration, its runtime directory,
# valid for systemd, and not enabled (an unconfigured milterd would fail).
unit=/lib/systemd/system/milterd.service
if grep -qx 'ExecStart=/usr/sbin/milterd -f -c /etc/milterd/milterd.conf' "$unit" &&
	grep -qx 'ReadWritePaths=/run/milterd' "$unit"; then
	ok "the unit runs /usr/sbin/milterd on /etc/milterd/milterd.conf, writing in /run/milterd"
else
	not_ok "the unit's ExecStart or ReadWritePaths: $(grep -E '^(ExecStart|ReadWritePaths)=' "$unit" | tr '\n' ' ')"
fi
# /run/milterd is the user's (tmpfiles.d, applied by postinst and at boot): the
# unit's RuntimeDirectory= would make it root's, where milterd, once it has
# dropped to its user, can write no pid file or statistics, nor remove its socket.
expect_eq "dpkg -i makes /run/milterd, the user milterd's (tmpfiles.d/milterd.conf)" \
	"milterd:milterd 755 /usr/lib/tmpfiles.d/milterd.conf" \
	"$(stat -c '%U:%G %a' /run/milterd 2>&1) $(dpkg -L milterd | grep -x /usr/lib/tmpfiles.d/milterd.conf)"
if out=$(systemd-analyze verify $(for u in $units; do echo "/lib/systemd/system/$u"; done) 2>&1) && [ -z "$out" ]; then
	ok "systemd-analyze verify accepts the installed units"
else
	not_ok "systemd-analyze verify: $(echo "$out" | tr '\n' ' ')"
fi
enabled=$(find /etc/systemd/system -name 'milterd*' 2>/dev/null | tr '\n' ' ')
expect_eq "installing enables no unit (nothing can fail at boot before the admin configures milterd)" "" "$enabled"

# The installed binaries on the installed configuration, SQL and templates.
out=$(/usr/sbin/milterd -n -c /etc/milterd/milterd.conf 2>&1)
expect_eq "milterd -n on the installed configuration and policy" "config OK" "$out"
psql -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 &&
	psql -d postgres -qc "CREATE DATABASE $DB" >/dev/null
conninfo="host=$PGHOST user=postgres dbname=$DB"
nsql=$(ls "$TOP"/milterd/sql/*.sql | wc -l)
if env -u MILTERD_SQLDIR /usr/sbin/milterctl --database "$conninfo" db migrate >"$WORK/migrate.out" 2>&1; then
	expect_eq "milterctl db migrate applies the $nsql installed SQL files" "$nsql" \
		"$(psql -d "$DB" -Atqc 'SELECT count(*) FROM milterd.schema_migrations')"
else
	not_ok "milterctl db migrate with the installed SQL: $(tr '\n' ' ' <"$WORK/migrate.out")"
fi
if env -u MILTERD_SQLDIR /usr/sbin/milterctl -c /etc/milterd/milterd.conf --database "$conninfo" \
	request --account alice --email alice@agri.gouv.fr --print >"$WORK/challenge.eml" 2>&1 &&
	grep -q '^Reply-To: <verify+[a-z2-7]\{26\}@certify\.example\.org>' "$WORK/challenge.eml"; then
	ok "milterctl request renders the challenge from the installed templates and policy"
else
	not_ok "milterctl request --print: $(head -n 3 "$WORK/challenge.eml" | tr '\n' ' ')"
fi
# The daemon binds as root and drops to the package's user; its socket, pid file
# and statistics where the shipped milterd.conf puts them.
mapfile -t shipped < <(grep -E '^(socket|pidfile) = ' /etc/milterd/milterd.conf)
write_config "$WORK/run.conf" "database = $conninfo" "user = milterd" \
	"policy = /etc/milterd/policies/gouv-fr.conf" "${shipped[@]}" "socket_owner = milterd:milterd"
sed -i '/^stats_file = /d' "$WORK/run.conf"	# the default: /run/milterd/stats
sed -i '/^templates = /d' "$WORK/run.conf"
runs_as_milterd() { [ "$(ps -o user= -p "$MILTERD_PID")" = milterd ]; }
if BUILD=/usr/sbin milterd_start "$WORK/run.conf" && wait_for 5 runs_as_milterd; then
	ok "the installed milterd starts and runs as the user milterd"
else
	not_ok "the installed milterd as milterd: $(tail -n 3 "$WORK/milterd.log" | tr '\n' ' ')"
fi
wait_for 15 test -s /run/milterd/stats
expect_eq "... its pid file, socket and statistics in /run/milterd" \
	"$MILTERD_PID srw-rw---- yes" \
	"$(cat /run/milterd/milterd.pid 2>&1) $(stat -c %A /run/milterd/milterd.sock 2>&1)$(
	/usr/sbin/milterctl -c "$WORK/run.conf" stats 2>&1 | grep -q . && echo ' yes')"
milterd_stop
expect_eq "... and it removes its socket and pid file when it stops, with no error" \
	"" "$(ls /run/milterd/milterd.sock /run/milterd/milterd.pid 2>/dev/null; grep -i 'denied' "$WORK/milterd.log")"

# A conffile the admin edited survives a reinstall; dpkg -r keeps it.
echo "# edited by deb.sh" >>/etc/milterd/milterd.conf
if dpkg_do -i "$deb" && grep -qx '# edited by deb.sh' /etc/milterd/milterd.conf; then
	ok "a reinstall keeps the admin's edit of milterd.conf"
else
	not_ok "a reinstall keeps the admin's edit of milterd.conf: $(tail -n 3 "$LOG" | tr '\n' ' ')"
fi
if dpkg_do -r milterd && [ "$(pkg_status)" = config-files ] && [ ! -e /usr/sbin/milterd ] &&
	[ -e /etc/milterd/milterd.conf ] && getent passwd milterd >/dev/null; then
	ok "dpkg -r removes the programs and keeps the configuration and the user"
else
	not_ok "dpkg -r: $(pkg_status) $(tail -n 3 "$LOG" | tr '\n' ' ')"
fi

# Purge: nothing left, also with runtime files of a milterd that ran.
mkdir -p /run/milterd && touch /run/milterd/stats && chown milterd /run/milterd/stats
if dpkg_do --purge milterd; then
	ok "dpkg --purge succeeds"
else
	not_ok "dpkg --purge: $(tail -n 5 "$LOG" | tr '\n' ' ')"
fi
left=$(present_paths)
for p in /etc/milterd /run/milterd /var/lib/dpkg/info/milterd.list; do
	[ -e "$p" ] && left="$left $p"
done
left="$left$(find /var/lib/systemd /etc/systemd -name '*milterd*' 2>/dev/null | sed 's/^/ /' | tr -d '\n')"
[ -n "$(pkg_status)" ] && [ "$(pkg_status)" != not-installed ] && left="$left (dpkg: $(pkg_status))"
expect_eq "purge leaves no file, configuration, runtime or systemd state behind" "" "$left"
expect_eq "purge removes the user milterd and its group if the package made them" \
	"$user_before|$group_before" "$(getent passwd milterd)|$(getent group milterd)"
