# install.sh — make install PREFIX=/usr DESTDIR=...: binaries, SQL, templates, policy,
# default configuration, systemd unit and manual pages where an admin expects them.
. "$TOP/tests/lib/common.sh"
root="$WORK/root"
if ! make -s -C "$TOP" install BUILD="$WORK/build" PREFIX=/usr DESTDIR="$root" >"$WORK/make.log" 2>&1; then
	not_ok "make install: $(tail -n 5 "$WORK/make.log" | tr '\n' ' ')"
	exit 0
fi
for f in usr/sbin/milterd usr/sbin/milterctl etc/milterd/milterd.conf etc/milterd/policies/gouv-fr.conf \
	usr/share/milterd/sql/001_schema.sql usr/share/milterd/templates/replies.fr \
	usr/share/milterd/templates/challenge.fr.eml usr/share/milterd/mastodon-sync \
	lib/systemd/system/milterd.service usr/share/man/man8/milterd.8 \
	usr/share/man/man5/milterd.conf.5 usr/share/man/man8/milterctl.8; do
	[ -s "$root/$f" ] || missing="${missing:-} $f"
done
[ -z "${missing:-}" ] && ok "make install lays out binaries, SQL, templates, config, policy, unit, man pages" ||
	not_ok "make install: missing$missing"
expect_grep "the unit starts the installed binary in the foreground" \
	'^ExecStart=/usr/sbin/milterd -f -c /etc/milterd/milterd.conf$' "$root/lib/systemd/system/milterd.service"
# systemctl reload checks the file first (a broken one fails the reload), then signals.
expect_eq "the unit's reload checks the configuration, then sends SIGHUP" \
	"ExecReload=/usr/sbin/milterd -n -c /etc/milterd/milterd.conf|ExecReload=/bin/kill -HUP \$MAINPID" \
	"$(grep '^ExecReload=' "$root/lib/systemd/system/milterd.service" | paste -sd '|')"
for k in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes ExecReload= ReadWritePaths=-/var/spool/postfix/milterd; do
	grep -q "^$k" "$root/lib/systemd/system/milterd.service" || bad="${bad:-} $k"
done
[ -z "${bad:-}" ] && ok "the unit is hardened and reloads with SIGHUP" || not_ok "unit lacks$bad"
expect_grep "installed binaries look for SQL and templates under /usr/share/milterd" \
	"/usr/share/milterd/templates" <(strings "$root/usr/sbin/milterd")
# A second install keeps the admin's configuration.
echo "# edited" >>"$root/etc/milterd/milterd.conf"
make -s -C "$TOP" install BUILD="$WORK/build" PREFIX=/usr DESTDIR="$root" >/dev/null 2>&1
expect_grep "a second make install keeps the edited configuration" "^# edited" "$root/etc/milterd/milterd.conf"
