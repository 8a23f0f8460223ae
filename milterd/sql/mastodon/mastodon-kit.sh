# mastodon-kit.sh — what mastodon-sync and mastodon-event share: the kit's
# configuration file, psql, tootctl. Sourced (bash), not run.
#
# The configuration file (MASTODON_KIT_CONF, default /etc/milterd/mastodon.conf)
# holds KEY=value lines (spaces around = allowed), each key once, values
# optionally in "double" or 'single' quotes, # comments (after a value too,
# following white space); it is parsed, never run as shell code. A variable set in the
# environment wins over the file (tests and one-off runs use that).

KIT_KEYS="MASTODON_DATABASE MILTERCTL MILTERD_CONF TOOTCTL MASTODON_LANG MASTODON_ON_END MASTODON_SYNC_LOCK"

# cron's PATH lacks the sbin directories milterctl is installed in.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# kit_config NAME: reads the configuration file, then sets the defaults;
# returns 4 (reported on stderr) when the file or a value is wrong.
kit_config() {
	local me="$1" file="${MASTODON_KIT_CONF:-/etc/milterd/mastodon.conf}" line key val n=0
	local -A from_env=() at=()

	for key in $KIT_KEYS; do
		[ -n "${!key+set}" ] && from_env[$key]=1
	done
	if [ -e "$file" ] || [ -n "${MASTODON_KIT_CONF:-}" ]; then
		if [ ! -r "$file" ] || [ ! -f "$file" ]; then
			echo "$me: cannot read $file (MASTODON_KIT_CONF): $([ -e "$file" ] &&
				{ [ -f "$file" ] && echo "permission denied" || echo "not a file"; } ||
				echo "no such file")" >&2
			return 4
		fi
		while IFS= read -r line || [ -n "$line" ]; do
			n=$((n + 1))
			line="${line#"${line%%[![:space:]]*}"}"
			case "$line" in '' | '#'*) continue ;; esac
			if [[ ! "$line" =~ ^([A-Z_]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
				echo "$me: $file:$n: not a KEY=value line" >&2
				return 4
			fi
			key="${BASH_REMATCH[1]}" val="${BASH_REMATCH[2]}"
			val="${val%"${val##*[![:space:]]}"}"
			case " $KIT_KEYS " in
			*" $key "*) ;;
			*) echo "$me: $file:$n: unknown key $key (known: $KIT_KEYS)" >&2
			   return 4 ;;
			esac
			if [ -n "${at[$key]:-}" ]; then
				echo "$me: $file:$n: $key: set twice (first at line ${at[$key]})" >&2
				return 4
			fi
			at[$key]=$n
			# A quoted value, then perhaps a comment; unquoted, a # after
			# white space starts a comment (as in milterd.conf).
			if [[ "$val" =~ ^\"([^\"]*)\"[[:space:]]*(#.*)?$ ]] ||
			   [[ "$val" =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ ]]; then
				val="${BASH_REMATCH[1]}"
			elif [[ "$val" == [\"\']* ]]; then
				echo "$me: $file:$n: $key: unterminated quote, or text after it" >&2
				return 4
			else
				[[ "$val" =~ ^(.*[^[:space:]])?[[:space:]]+#.*$ ]] && val="${BASH_REMATCH[1]}"
			fi
			[ -n "${from_env[$key]:-}" ] || printf -v "$key" '%s' "$val"
		done <"$file"
	fi
	MASTODON_DATABASE="${MASTODON_DATABASE:-${MILTERD_DATABASE:-}}"
	MILTERCTL="${MILTERCTL:-milterctl}"
	MILTERD_CONF="${MILTERD_CONF:-/etc/milterd/milterd.conf}"
	TOOTCTL="${TOOTCTL:-tootctl}"
	MASTODON_LANG="${MASTODON_LANG:-fr}"
	MASTODON_ON_END="${MASTODON_ON_END:-report}"
	case "$MASTODON_LANG" in fr | en) ;; *)
		echo "$me: $(kit_where MASTODON_LANG)MASTODON_LANG must be fr or en, not '$MASTODON_LANG'" >&2
		return 4 ;;
	esac
	case "$MASTODON_ON_END" in report | disable) ;; *)
		echo "$me: $(kit_where MASTODON_ON_END)MASTODON_ON_END must be report or disable, not '$MASTODON_ON_END'" >&2
		return 4 ;;
	esac
	return 0
}

# kit_where KEY (in kit_config): where KEY's value came from, as "FILE:LINE: ",
# or "(environment) ".
kit_where() {
	if [ -n "${from_env[$1]:-}" ]; then echo "(environment) "
	elif [ -n "${at[$1]:-}" ]; then echo "$file:${at[$1]}: "
	fi
}

# kit_psql [psql options]: Mastodon's database (which holds the milterd schema),
# tab-separated rows, no psqlrc; SQL on stdin may use :'variables' (-v).
kit_psql() {
	psql ${MASTODON_DATABASE:+"$MASTODON_DATABASE"} -X -q -v ON_ERROR_STOP=1 -At -F $'\t' "$@"
}

# kit_milterctl ARGS...: milterctl with the kit's milterd.conf. MILTERCTL may
# be a command with arguments (e.g. "sudo -u milterd milterctl"): split on purpose.
kit_milterctl() {
	$MILTERCTL -c "$MILTERD_CONF" "$@"
}

# kit_tootctl ARGS...: Mastodon's own command line, so that its callbacks run.
kit_tootctl() {
	$TOOTCTL "$@"
}
