# pg.sh — a private PostgreSQL for tests: initdb in a temporary directory, unix socket only.
#
#   pg_start WORKDIR   initdb (first time) and start; exports PGHOST PGUSER PGDATABASE
#                      and MILTERD_DATABASE (a libpq conninfo for milterd/milterctl).
#                      With fsync=off (tests); PG_DURABLE=1 keeps the server's own
#                      durability defaults (the benches: what production runs)
#   pg_stop            fast shutdown (data kept, pg_start again resumes)
#   pg_psql SQL...     run SQL, print unaligned tuples only

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

# PostgreSQL refuses to run as root: run its tools as the 'postgres' user then.
pg_as() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_start() {
	local nosync=--no-sync fsync="-c fsync=off"
	[ "${PG_DURABLE:-0}" = 1 ] && nosync= fsync=
	PG_DIR="$1/pg"
	if [ ! -d "$PG_DIR/data" ]; then
		mkdir -p "$PG_DIR"
		[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR" && chmod 755 "$1"
		pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
			$nosync -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
			{ cat "$PG_DIR/initdb.log" >&2; return 1; }
	fi
	pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
		-o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR' $fsync -c max_connections=200" \
		start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
	export PGHOST="$PG_DIR" PGUSER=postgres PGDATABASE=milterd
	export MILTERD_DATABASE="host=$PG_DIR user=postgres dbname=milterd"
	if ! psql -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'milterd'" | grep -q 1; then
		psql -d postgres -qc "CREATE DATABASE milterd" >/dev/null
	fi
}

pg_stop() {
	[ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
		pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1
	return 0
}

pg_psql() {
	psql -v ON_ERROR_STOP=1 -Atqc "$*"
}
