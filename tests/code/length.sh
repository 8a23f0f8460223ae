# length.sh — no function on the message path longer than 60 lines (STYLE.md: a
# function past a screen is usually two concerns), so that each step of a
# decision reads in one go.
. "$TOP/tests/lib/common.sh"

MAX=60
# The files a message goes through, from the socket to the database.
FILES="server.c milter.c session.c policy.c dkim.c spf.c align.c address.c dname.c token.c authres.c
replies.c store.c store_record.c dns.c stats.c buf.c log.c"
long=
for f in $FILES; do
	long="$long $(awk -v F="$f" -v max="$MAX" '
		/^[a-z_][a-z0-9_]*\(/ { name = $1; sub(/\(.*/, "", name); start = NR }
		/^}/ && name != "" { if (NR - start + 1 > max) printf "%s:%s(%d) ", F, name, NR - start + 1; name = "" }
	' "$TOP/milterd/$f")"
done
expect_eq "no function on the message path over $MAX lines" "" "$(echo "$long" | xargs)"
