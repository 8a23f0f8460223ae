# ctl.sh — milterctl as a mail administrator meets it: what a command refuses
# before it changes anything, where it takes the database from, what it says.
. "$TOP/tests/lib/pg.sh"
. "$TOP/tests/lib/common.sh"
C="$BUILD/milterctl"
export MILTERD_SQLDIR="$TOP/milterd/sql"
db_reset
write_config "$WORK/milterd.conf"

# states ACCOUNT: the account's requests' states, oldest first.
states() {
	pg_psql "SELECT coalesce(string_agg(state, ' ' ORDER BY id), 'none')
		FROM milterd.verifications WHERE account = '$1'"
}

# An address the database takes (one @, no space) that no From can equal: the
# request could never be verified, and address would end a live certification.
tok=$(new_token alice alice@agri.gouv.fr)
pg_psql "UPDATE milterd.requests SET state = 'verified', verified_at = now()
	WHERE account = 'alice'" >/dev/null
for bad in '<alice@agri.gouv.fr>' 'Alice<alice@agri.gouv.fr>' 'alice@localhost'; do
	"$C" request --account bob --email "$bad" >"$WORK/out" 2>"$WORK/err"; rc=$?
	expect_eq "request --email '$bad': refused, exit 2, nothing stored" \
		"2/none/milterctl: '$bad' is not an email address" \
		"$rc/$(states bob)/$(cut -d'(' -f1 "$WORK/err" | sed 's/ $//')"
	"$C" address --account alice --email "$bad" >"$WORK/out" 2>"$WORK/err"; rc=$?
	expect_eq "address --email '$bad': refused, exit 2, the certification kept" \
		"2/verified" "$rc/$(states alice)"
done
out=$("$C" request --account bob --email ' Bob.Martin@Agri.Gouv.FR ')
expect_eq "a bare address, spaced and in capitals, is still taken" "bob.martin@agri.gouv.fr" \
	"$(pg_psql "SELECT email FROM milterd.requests WHERE account = 'bob' ORDER BY id DESC LIMIT 1")"

# An option given twice: refused, whichever command, before anything changes
# (the last one winning, address would end the other account's certification).
"$C" address --account alice --email alice@agri.gouv.fr --account bob >/dev/null 2>"$WORK/err"; rc=$?
expect_eq "address --account given twice: exit 2, named, nothing changes" \
	"2/milterctl: address: --account given twice/verified/pending" \
	"$rc/$(cat "$WORK/err")/$(states alice)/$(states bob | awk '{print $NF}')"
"$C" request --account carol --email carol@agri.gouv.fr --email dave@agri.gouv.fr \
	>/dev/null 2>"$WORK/err"; rc=$?
expect_eq "request --email given twice: exit 2, named, no request" \
	"2/milterctl: request: --email given twice/none" "$rc/$(cat "$WORK/err")/$(states carol)"

# db migrate from a directory without migrations (a wrong --sql-dir or
# MILTERD_SQLDIR): an error, not "schema up to date" over an empty database.
mkdir -p "$WORK/nosql"
psql -d postgres -qc "DROP DATABASE IF EXISTS ctl_empty" -qc "CREATE DATABASE ctl_empty" >/dev/null
"$C" --database "$MILTERD_DATABASE dbname=ctl_empty" db migrate --sql-dir "$WORK/nosql" \
	>"$WORK/out" 2>"$WORK/err"; rc=$?
expect_eq "db migrate without a migration in the directory: exit 4, named, nothing created" \
	"4//milterctl: $WORK/nosql: no migration (NNN_name.sql) in this directory (--sql-dir, MILTERD_SQLDIR)/0" \
	"$rc/$(cat "$WORK/out")/$(cat "$WORK/err")/$(psql -d ctl_empty -Atqc \
	"SELECT count(*) FROM pg_namespace WHERE nspname = 'milterd'")"

# -c on the command line names the instance, over MILTERD_DATABASE (exported
# for another instance): its database is the one changed, and a -c that does
# not exist is an error, not ignored.
psql -d postgres -qc "DROP DATABASE IF EXISTS ctl_other" -qc "CREATE DATABASE ctl_other" >/dev/null
other="$MILTERD_DATABASE dbname=ctl_other"
"$C" --database "$other" db migrate >/dev/null
"$C" --database "$other" request --account alice --email alice@agri.gouv.fr >/dev/null
write_config "$WORK/other.conf" "database = $other"
out=$("$C" -c "$WORK/other.conf" revoke alice 2>&1); rc=$?
expect_eq "-c FILE with MILTERD_DATABASE set: FILE's database is the one changed" \
	"0/revoked alice/verified/revoked" \
	"$rc/$out/$(states alice)/$(psql -d ctl_other -Atqc "SELECT state FROM milterd.requests")"
"$C" -c "$WORK/none.conf" list >"$WORK/out" 2>"$WORK/err"; rc=$?
expect_eq "-c FILE that does not exist, MILTERD_DATABASE set: exit 4, named, nothing listed" \
	"4//$WORK/none.conf: cannot open: No such file or directory" \
	"$rc/$(cat "$WORK/out")/$(head -n 1 "$WORK/err")"
out=$("$C" --database "$other" -c "$WORK/milterd.conf" --json status alice | grep -o '"state":"[a-z]*"')
expect_eq "--database still wins over -c" '"state":"revoked"' "$out"

# revoke --json: one JSON document on standard output, like every command
# that prints a result.
"$C" request --account erin --email erin@agri.gouv.fr >/dev/null
out=$("$C" --json revoke erin); rc=$?
expect_eq "revoke --json: an object with the account and how many requests changed" \
	'0/{"account":"erin","revoked":1}' "$rc/$out"

# A token (or a challenge) printed once and lost on the way (a full disk, a
# closed pipe) is not a success: exit 5, said, and the request withdrawn, since
# nobody can answer it. Any other output that does not get through: exit 5.
"$C" request --account frank --email frank@agri.gouv.fr >/dev/full 2>"$WORK/err"; rc=$?
expect_eq "request, its token not written: exit 5, said, no request left" \
	"5/milterctl: standard output: No space left on device/none" \
	"$rc/$(cat "$WORK/err")/$(states frank)"
"$C" -c "$WORK/milterd.conf" request --account frank --email frank@agri.gouv.fr --print \
	>/dev/full 2>"$WORK/err"; rc=$?
expect_eq "request --print, the challenge not written: exit 5, no request left" \
	"5/none" "$rc/$(states frank)"
"$C" list >/dev/full 2>"$WORK/err"; rc=$?
expect_eq "list not written: exit 5, said" \
	"5/milterctl: standard output: No space left on device" "$rc/$(cat "$WORK/err")"

# Usage errors name what is wrong (exit 2), not only the whole usage.
"$C" revoke alice bob >/dev/null 2>"$WORK/err"; rc=$?
expect_eq "revoke of two accounts: exit 2, said, nothing revoked" \
	"2/milterctl: revoke takes one ACCOUNT (milterctl --help)/verified" \
	"$rc/$(cat "$WORK/err")/$(states alice)"
"$C" status >/dev/null 2>"$WORK/err"; rc=$?
expect_eq "status without an account: exit 2, said" \
	"2/milterctl: status takes one ACCOUNT (milterctl --help)" "$rc/$(cat "$WORK/err")"
"$C" -c "$WORK/milterd.conf" db prune --batch 0 >/dev/null 2>"$WORK/err"; rc=$?
expect_eq "db prune --batch 0: exit 2, the value named" \
	"2/milterctl: --batch '0': not a whole number from 1 to 100000" "$rc/$(cat "$WORK/err")"
