# layers.sh — the include graph of milterd/ against DESIGN.md's layer table: a
# file includes its own layer's headers and those of layers below, never above,
# and the modules' includes form no cycle.
. "$TOP/tests/lib/common.sh"

# Layers top to bottom (DESIGN.md, Architecture); a module is a file name
# without .c/.h. ctl*: milterctl's commands, with milterctl.c in the Face.
LAYERS="
Face main milterctl ctl ctl_request ctl_check ctl_cycle ctl_follow
Wire server milter
Session session snapshot
Decide policy policy_file
Checks dkim spf align address token authres
Mail render replies challenge
Store store store_record store_tokens store_pool
DNS dns
Base config config_ini log buf stats reason dname clock
"
layer_of() { awk -v m="$1" '{ for (i = 2; i <= NF; i++) if ($i == m) { print NR; exit } }' <<<"$LAYERS"; }

# Every module has a layer.
unplaced=
for f in "$TOP"/milterd/*.c "$TOP"/milterd/*.h; do
	m=$(basename "${f%.*}")
	[ -n "$(layer_of "$m")" ] || unplaced="$unplaced $m"
done
expect_eq "every module of milterd/ has a layer" "" "$(echo "$unplaced" | tr ' ' '\n' | sort -u | xargs)"

# Edges "from to" for every #include "x.h" between two different modules.
: >"$WORK/edges"
for f in "$TOP"/milterd/*.c "$TOP"/milterd/*.h; do
	m=$(basename "${f%.*}")
	sed -n 's/^#include "\([a-z_]*\)\.h".*/\1/p' "$f" | while read -r h; do
		[ "$h" = "$m" ] || echo "$m $h"
	done >>"$WORK/edges"
done
upward=
while read -r from to; do
	lf=$(layer_of "$from"); lt=$(layer_of "$to")
	[ -n "$lf" ] && [ -n "$lt" ] && [ "$lt" -lt "$lf" ] && upward="$upward $from->$to"
done <"$WORK/edges"
expect_eq "no include reaches up a layer ($(sort -u "$WORK/edges" | wc -l) includes between modules)" \
	"" "$(echo "$upward" | xargs)"

# tsort reports a loop in the graph.
if sort -u "$WORK/edges" | tsort >/dev/null 2>"$WORK/tsort.err"; then
	ok "no include cycle among the modules"
else
	not_ok "include cycle: $(tr '\n' ' ' <"$WORK/tsort.err")"
fi
