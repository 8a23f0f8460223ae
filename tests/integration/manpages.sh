# manpages.sh — the manual pages: each renders without a warning (groff -ww, and
# man-db's own pipeline), milterd.conf(5) documents every key the live milterd
# prints with -nn (configuration and policy) and no other, milterd(8) every option
# and milterctl(8) every command and option of the usage texts.
#
# A documented key is a tagged paragraph in its section: ".TP" followed by a line
# ".B key" or ".BI "key = " value", under .SH KEYS for milterd.conf keys and under
# .SH "POLICY FILES" for policy keys; a configuration key's paragraph must give its
# default ("Default:") and "Reloadable: yes" or "Reloadable: no".
. "$TOP/tests/lib/common.sh"
M="$BUILD/milterd"
C="$BUILD/milterctl"
PAGES="milterd/milterd.8 milterd/milterd.conf.5 milterd/milterctl.8"
export MANOPT= MANPAGER=cat PAGER=cat

# groff (package groff-base) and man (package man-db) render the pages.
for tool in groff man; do
	command -v "$tool" >/dev/null || { not_ok "$tool is installed (make deps)"; exit 0; }
done

for p in $PAGES; do
	f="$TOP/$p"
	if [ ! -f "$f" ]; then
		not_ok "$p exists"
		continue
	fi
	groff -man -ww -z -Tutf8 "$f" >"$WORK/groff.out" 2>&1; rc=$?
	if [ "$rc" -eq 0 ] && [ ! -s "$WORK/groff.out" ]; then
		ok "$p renders without groff warnings"
	else
		not_ok "$p: groff -man -ww (exit $rc): $(head -n 5 "$WORK/groff.out" | tr '\n' ' ')"
	fi
	# Through man-db as a reader would get it (preconv, tbl, line breaking).
	MANWIDTH=80 man --warnings -l "$f" >"$WORK/man.out" 2>"$WORK/man.err"; rc=$?
	if [ "$rc" -eq 0 ] && [ ! -s "$WORK/man.err" ] && [ -s "$WORK/man.out" ]; then
		ok "$p renders without warnings through man -l"
	else
		not_ok "$p: man --warnings -l (exit $rc): $(head -n 5 "$WORK/man.err" | tr '\n' ' ')"
	fi
	if LC_ALL=C grep -n '[^[:print:][:space:]]' "$f" >"$WORK/nonascii"; then
		not_ok "$p is plain ASCII: $(head -n 3 "$WORK/nonascii" | tr '\n' ' ')"
	else
		ok "$p is plain ASCII (troff escapes for anything else)"
	fi
done

# --- milterd.conf(5): every key of the live binary, and no other ---------------

sed "s|@TOP@|$TOP|g" "$TOP/tests/config/good.conf" >"$WORK/good.conf"
if ! "$M" -nn -c "$WORK/good.conf" >"$WORK/dump" 2>"$WORK/dump.err"; then
	not_ok "milterd -nn on a good configuration: $(head -n 5 "$WORK/dump.err" | tr '\n' ' ')"
	exit 0
fi
# Configuration keys: up to the first empty line; policy keys: in [default].
awk '/^$/ { exit } /^[a-z0-9_]+ =/ { print $1 }' "$WORK/dump" | sort -u >"$WORK/conf.keys"
awk '/^\[default\]$/ { d = 1; next } /^$/ || /^\[/ { d = 0 }
	d && /^[a-z0-9_]+ =/ { print $1 }' "$WORK/dump" | sort -u >"$WORK/policy.keys"
[ -s "$WORK/conf.keys" ] && [ -s "$WORK/policy.keys" ] ||
	not_ok "milterd -nn lists configuration and policy keys: $(head -c 300 "$WORK/dump")"

# "SECTION<TAB>key<TAB>paragraph" for each documented item of milterd.conf.5.
awk '
function flush() { if (key != "") print sec "\t" key "\t" para; key = ""; para = "" }
/^\.SH / { flush(); sec = $0; sub(/^\.SH +/, "", sec); gsub(/"/, "", sec); tp = 0; next }
/^\.(SS|PP|P|LP)( |$)/ { flush(); tp = 0; next }
/^\.TP( |$)/ { flush(); tp = 1; next }
tp == 1 {
	tp = 0
	if (match($0, /^\.BI? +"?[a-z0-9_]+/)) {
		key = substr($0, RSTART, RLENGTH); sub(/^\.BI? +"?/, "", key)
		next
	}
}
key != "" { para = para " " $0 }
END { flush() }' "$TOP/milterd/milterd.conf.5" >"$WORK/items"

missing=""; undocumented=""; incomplete=""
while read -r k; do
	line=$(awk -F '\t' -v k="$k" '$1 == "KEYS" && $2 == k' "$WORK/items")
	if [ -z "$line" ]; then
		missing="$missing $k"
	elif ! grep -q 'Default' <<<"$line" || ! grep -Eq 'Reloadable: (yes|no)\.' <<<"$line"; then
		incomplete="$incomplete $k"
	fi
done <"$WORK/conf.keys"
expect_eq "milterd.conf(5) documents every configuration key of milterd -nn ($(wc -l <"$WORK/conf.keys") keys)" "" "$missing"
expect_eq "milterd.conf(5) gives each configuration key's default and whether it is reloadable" "" "$incomplete"

missing=""; incomplete=""
while read -r k; do
	line=$(awk -F '\t' -v k="$k" '$1 == "POLICY FILES" && $2 == k' "$WORK/items")
	if [ -z "$line" ]; then
		missing="$missing $k"
	elif ! grep -q 'Default' <<<"$line"; then
		incomplete="$incomplete $k"
	fi
done <"$WORK/policy.keys"
expect_eq "milterd.conf(5) documents every policy key of milterd -nn ($(wc -l <"$WORK/policy.keys") keys)" "" "$missing"
expect_eq "milterd.conf(5) gives each policy key's default" "" "$incomplete"

# Nothing documented that the binary does not know.
awk -F '\t' '$1 == "KEYS" { print $2 }' "$WORK/items" | sort -u >"$WORK/doc.conf.keys"
awk -F '\t' '$1 == "POLICY FILES" { print $2 }' "$WORK/items" | sort -u >"$WORK/doc.policy.keys"
expect_eq "milterd.conf(5) documents no configuration key milterd does not know" "" \
	"$(comm -13 "$WORK/conf.keys" "$WORK/doc.conf.keys" | tr '\n' ' ')"
expect_eq "milterd.conf(5) documents no policy key milterd does not know" "" \
	"$(comm -13 "$WORK/policy.keys" "$WORK/doc.policy.keys" | tr '\n' ' ')"

# --- milterd(8): every option of the usage text ---------------------------------

# The text of each .TP tag of a section, font escapes and quotes removed.
tags() {
	awk -v want="$2" '
	/^\.SH / { s = $0; sub(/^\.SH +/, "", s); gsub(/"/, "", s); tp = 0; next }
	/^\.TP( |$)/ { tp = 1; next }
	tp == 1 { tp = 0; if (s == want) print }' "$1" |
	sed -e 's/^\.[A-Z]* *//' -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/\\ / /g' \
	    -e 's/"//g' -e 's/\\c$//'
}

"$M" -x >/dev/null 2>"$WORK/usage"; rc=$?
expect_eq "milterd: unknown option prints the usage, exit 2" 2 "$rc"
tags "$TOP/milterd/milterd.8" OPTIONS >"$WORK/opt.tags"
missing=""
for o in $(grep -Eo '^ +-[a-zA-Z]+' "$WORK/usage"); do
	grep -Eq -- "^$o( |$)" "$WORK/opt.tags" || missing="$missing $o"
done
expect_eq "milterd(8) documents every option of the usage text" "" "$missing"

# -V and --version: the version of debian/changelog, without the Debian revision.
version=$(head -n 1 "$TOP/debian/changelog" | sed -E 's/^[^(]*\(([^)]*)\).*/\1/; s/-[^-]*$//')
expect_eq "milterd -V, milterd --version, milterctl -V, milterctl --version: debian/changelog's version" \
	"milterd $version/0|milterd $version/0|milterctl $version/0|milterctl $version/0" \
	"$("$M" -V 2>&1)/$?|$("$M" --version 2>&1)/$?|$("$C" -V 2>&1)/$?|$("$C" --version 2>&1)/$?"

# --help: the usage on stdout, exit 0 (a usage error: on stderr, exit 2, above and below).
help_of() {	# help_of PROGRAM OPTION: "first line of stdout/stderr/exit code"
	local rc
	"$1" "$2" >"$WORK/h.out" 2>"$WORK/h.err"; rc=$?
	echo "$(head -n 1 "$WORK/h.out")/$(cat "$WORK/h.err")/$rc"
}
expect_eq "milterd --help and -h, milterctl --help: the usage on stdout, nothing on stderr, exit 0" \
	"usage: milterd [-f] [-n[n]] [-c FILE]//0|usage: milterd [-f] [-n[n]] [-c FILE]//0|usage: milterctl [-c FILE] [--database CONNINFO] [--json] COMMAND ...//0" \
	"$(help_of "$M" --help)|$(help_of "$M" -h)|$(help_of "$C" --help)"

# --- milterctl(8): every command and option of the usage text --------------------

"$C" >/dev/null 2>"$WORK/ctl.usage"; rc=$?
expect_eq "milterctl without arguments prints the usage, exit 2" 2 "$rc"
# A command is the words of a usage line before its first option or argument.
sed -n '/^commands:/,$p' "$WORK/ctl.usage" | grep -E '^  [a-z]' | sed -E 's/ {3,}.*//' |
	awk '{ c = $1; for (i = 2; i <= NF && $i ~ /^[a-z]+$/; i++) c = c " " $i; print c }' \
	>"$WORK/ctl.commands"
[ -s "$WORK/ctl.commands" ] || not_ok "milterctl usage lists commands: $(head -c 300 "$WORK/ctl.usage")"
tags "$TOP/milterd/milterctl.8" COMMANDS >"$WORK/cmd.tags"
missing=""
while read -r cmd; do
	grep -q -- "^$cmd\( \|$\)" "$WORK/cmd.tags" || missing="$missing '$cmd'"
done <"$WORK/ctl.commands"
expect_eq "milterctl(8) documents every command of the usage text ($(wc -l <"$WORK/ctl.commands") commands)" "" "$missing"

# Options: in the syntax part of the usage lines (descriptions stand after three
# spaces or on lines of their own), after a space, "[" or "|".
grep -E '^(usage:|  [a-z])' "$WORK/ctl.usage" | sed -E 's/ {3,}.*//' |
	grep -Eo -- '(^|[][ |])--?[a-zA-Z][a-zA-Z-]*' | sed 's/^[][ |]//' | sort -u >"$WORK/ctl.options"
sed 's/\\-/-/g' "$TOP/milterd/milterctl.8" >"$WORK/milterctl.txt"
missing=""
while read -r o; do
	grep -Eq -- "(^|[^a-zA-Z-])$o([^a-zA-Z-]|\$)" "$WORK/milterctl.txt" || missing="$missing $o"
done <"$WORK/ctl.options"
expect_eq "milterctl(8) documents every option of the usage text ($(wc -l <"$WORK/ctl.options") options)" "" "$missing"
