# A real PostgreSQL server for the end-to-end tests and benchmarks: a fresh
# cluster in $T/pg, listening on 127.0.0.1 only, on a free port, with a
# database "outpost" owned by a login role "outpost" whose random password
# is checked over TCP (scram-sha-256). Source it after lib.sh. The server is
# stopped when the test script exits (chained in front of lib.sh's EXIT
# trap), and, where setpriv exists, killed when the script's shell dies by
# SIGKILL (its backends then exit on their own: they watch the postmaster).
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to and the
# server runs as $PG_RUN_AS (default nobody), and $T gets mode 0711 so that
# user can reach $T/pg (the path above $T must be traversable too, as /tmp
# is). Not as root, the server runs as the current user.
#
# Set PG_BIN to use other server binaries (default: the newest
# /usr/lib/postgresql/*/bin, else where `postgres` is on the PATH) and
# PG_ODBC_DRIVER to use another psqlODBC driver .so.
: "${T:?source lib.sh before pg.sh}"

pg_pid=""
pg_port=""
pg_host=127.0.0.1
pg_user=outpost
pg_db=outpost
pg_password=""
pg_socket_dir=""
pg_bin=""
pg_conninfo=""
pg_odbc_conn=""
_pg_dir=$T/pg
pg_log=$_pg_dir/postgres.log
_pg_uid=""
_pg_gid=""

# _pg_find_bin: sets $pg_bin to the directory of the server binaries.
_pg_find_bin() {
	[ -n "$pg_bin" ] && return 0
	pg_bin=${PG_BIN:-}
	if [ -z "$pg_bin" ]; then
		pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	fi
	if [ -z "$pg_bin" ] && command -v postgres >/dev/null 2>&1; then
		pg_bin=$(dirname "$(command -v postgres)")
	fi
	[ -x "$pg_bin/postgres" ] && [ -x "$pg_bin/initdb" ] && return 0
	echo "pg.sh: no PostgreSQL server binaries (postgres, initdb) found; install postgresql or set PG_BIN" >&2
	pg_bin=""
	return 1
}

# _pg_odbc_driver: prints the full path of the psqlODBC Unicode driver
# (psqlodbcw.so), or nothing if it is not installed.
_pg_odbc_driver() {
	if [ -n "${PG_ODBC_DRIVER:-}" ]; then
		echo "$PG_ODBC_DRIVER"
		return
	fi
	_pg_d=$(dpkg -L odbc-postgresql 2>/dev/null | grep '/psqlodbcw\.so$' | head -n 1)
	if [ -z "$_pg_d" ]; then
		for _pg_d in /usr/lib/*/odbc/psqlodbcw.so /usr/lib/odbc/psqlodbcw.so \
			/usr/lib64/psqlodbcw.so ""; do
			[ -f "$_pg_d" ] && break
		done
	fi
	[ -n "$_pg_d" ] && echo "$_pg_d"
}

# _pg_pick_port: sets $_pg_p to a random port in 20000-59999 that nothing
# listens on right now (postgres may still lose a race for it).
_pg_pick_port() {
	while :; do
		_pg_p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		[ "$_pg_p" != "$pg_port" ] || continue
		if command -v ss >/dev/null 2>&1; then
			[ -z "$(ss -ltnH "( sport = :$_pg_p )" 2>/dev/null)" ] && return 0
		elif ! (: <>"/dev/tcp/127.0.0.1/$_pg_p") 2>/dev/null; then
			return 0
		fi
	done
}

# _pg_as CMD...: runs CMD as the cluster's user, from /, in a subshell.
_pg_as() (
	cd / || exit 1
	if [ -n "$_pg_uid" ]; then
		exec setpriv --reuid="$_pg_uid" --regid="$_pg_gid" --clear-groups "$@"
	fi
	exec "$@"
)

# _pg_admin ARGS...: psql as the superuser "postgres" over the unix socket
# (trusted for that role only), on database postgres.
_pg_admin() {
	"$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_socket_dir" -p "$pg_port" \
		-U postgres -d postgres "$@"
}

# _pg_init: makes $_pg_dir (data/, sock/) afresh and runs initdb in data/,
# then writes the access rules and our settings. Returns 1 with initdb's
# output printed on failure.
_pg_init() {
	rm -rf "$_pg_dir"
	mkdir -p "$_pg_dir/data" "$_pg_dir/sock" || return 1
	chmod 700 "$_pg_dir/data" "$_pg_dir/sock"
	if [ "$(id -u)" -eq 0 ]; then
		command -v setpriv >/dev/null 2>&1 || {
			echo "pg_start: running as root needs setpriv (util-linux) to run postgres as ${PG_RUN_AS:-nobody}" >&2
			return 1
		}
		_pg_uid=$(id -u "${PG_RUN_AS:-nobody}") && _pg_gid=$(id -g "${PG_RUN_AS:-nobody}") || return 1
		chown "$_pg_uid:$_pg_gid" "$_pg_dir/data" "$_pg_dir/sock" || return 1
		# Traversable, not listable, for the server's user.
		chmod 711 "$T" "$_pg_dir" || return 1
		_pg_as test -w "$_pg_dir/data" || {
			echo "pg_start: ${PG_RUN_AS:-nobody} cannot reach $_pg_dir/data; is a directory above $T closed to others? (set TMPDIR)" >&2
			return 1
		}
	fi
	# --no-sync: initdb's files need not survive a machine crash in a
	# throwaway cluster; the server itself runs with fsync on.
	if ! _pg_as "$pg_bin/initdb" -D "$_pg_dir/data" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 --no-sync --no-instructions \
		>"$_pg_dir/initdb.log" 2>&1; then
		echo "pg_start: initdb failed:" >&2
		cat "$_pg_dir/initdb.log" >&2
		return 1
	fi
	# The files exist (owned by the server's user): rewrite them in place.
	cat >"$_pg_dir/data/pg_hba.conf" <<'HBA'
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 trust
host    all       all       127.0.0.1/32   scram-sha-256
HBA
	{
		echo "# --- added by tests/e2e/pg.sh (the port is given with -p)"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$_pg_dir/sock'"
		echo "password_encryption = scram-sha-256"
		echo "fsync = on"
		echo "shared_buffers = 32MB"
		echo "logging_collector = off"
		echo "log_line_prefix = '%m [%p] %q%u@%d '"
		if [ -n "${1:-}" ]; then
			echo "# --- from $1"
			cat "$1"
		fi
	} >>"$_pg_dir/data/postgresql.conf"
}

# _pg_launch: starts postgres on $pg_port in the background and waits until
# it accepts connections (pg_isready on its unix socket, which postgres
# creates after its TCP socket, so the TCP port is this server's), for at
# most PG_START_TIMEOUT (30) seconds. Returns 0 when ready (sets $pg_pid),
# 2 if it could not bind the port, 1 otherwise (not left running).
_pg_launch() {
	touch "$pg_log"
	_pg_from=$(wc -l <"$pg_log")
	(
		cd / || exit 1
		set -- "$pg_bin/postgres" -D "$_pg_dir/data" -p "$pg_port"
		if [ -n "$_pg_uid" ]; then
			set -- setpriv --reuid="$_pg_uid" --regid="$_pg_gid" --clear-groups \
				--pdeathsig KILL "$@"
		elif command -v setpriv >/dev/null 2>&1; then
			set -- setpriv --pdeathsig KILL "$@"
		fi
		exec "$@"
	) </dev/null >>"$pg_log" 2>&1 &
	pg_pid=$!
	_pg_deadline=$(($(date +%s) + ${PG_START_TIMEOUT:-30}))
	while :; do
		if ! kill -0 "$pg_pid" 2>/dev/null; then
			wait "$pg_pid" 2>/dev/null
			pg_pid=""
			# Read after it died: the whole log is there by now.
			case $(tail -n "+$((_pg_from + 1))" "$pg_log" 2>/dev/null) in
			*"Address already in use"*) return 2 ;;
			esac
			return 1
		fi
		# As postgres, so probing does not log a refused login.
		"$pg_bin/pg_isready" -q -h "$pg_socket_dir" -p "$pg_port" \
			-U postgres -d postgres -t 2 && return 0
		[ "$(date +%s)" -lt "$_pg_deadline" ] || break
		sleep 0.02 # poll interval, bounded by the deadline
	done
	_pg_reap -9
	return 1
}

# _pg_reap SIGNAL: sends SIGNAL to the postmaster, if any, and reaps it.
_pg_reap() {
	[ -n "$pg_pid" ] || return 0
	kill "$1" "$pg_pid" 2>/dev/null
	wait "$pg_pid" 2>/dev/null
	pg_pid=""
}

# _pg_fail WHAT: reports a server that never got ready, with our settings
# and its log.
_pg_fail() {
	echo "$1: postgres never got ready (port $pg_port); settings and log:" >&2
	sed -n '/^# --- added by tests\/e2e\/pg.sh/,$p' "$_pg_dir/data/postgresql.conf" >&2 2>/dev/null
	cat "$pg_log" >&2 2>/dev/null
	return 1
}

# pg_start [EXTRA_CONF_FILE]: initdb's a fresh cluster in $T/pg (any
# earlier one there is removed) and starts postgres on 127.0.0.1:$pg_port
# (a free port; other ports are tried when it was taken, 10 tries), its
# socket in $pg_socket_dir, its output in $pg_log. Creates the role and
# database "outpost" with a fresh $pg_password, then sets and exports
# pg_port pg_host pg_user pg_password pg_db pg_socket_dir pg_bin pg_conninfo
# pg_odbc_conn (empty when the psqlODBC driver is not installed). Returns 0
# once the server accepts connections, with $pg_pid (the postmaster) set;
# returns 1 with the log printed if it never got ready. EXTRA_CONF_FILE's
# lines are appended to postgresql.conf (after ours, so they win).
pg_start() {
	[ -z "$pg_pid" ] || {
		echo "pg_start: a server is already running ($pg_pid)" >&2
		return 1
	}
	_pg_find_bin || return 1
	_pg_init "${1:-}" || return 1
	pg_socket_dir=$_pg_dir/sock
	_pg_try=0
	while :; do
		[ $_pg_try -lt 10 ] || {
			_pg_fail "pg_start (10 tries, ports always taken)"
			return 1
		}
		_pg_pick_port
		pg_port=$_pg_p
		_pg_launch
		case $? in
		0) break ;;
		2) _pg_try=$((_pg_try + 1)) ;;
		*) _pg_fail pg_start; return 1 ;;
		esac
	done
	pg_password=$(openssl rand -hex 16) || return 1
	# Hex only, so safe inside the SQL literal and the connection strings.
	if ! _pg_admin -c "CREATE ROLE outpost LOGIN PASSWORD '$pg_password'" \
		-c "CREATE DATABASE outpost OWNER outpost" >"$_pg_dir/setup.log" 2>&1; then
		echo "pg_start: creating role and database outpost failed:" >&2
		cat "$_pg_dir/setup.log" "$pg_log" >&2
		return 1
	fi
	pg_conninfo="host=$pg_host port=$pg_port dbname=$pg_db user=$pg_user password=$pg_password"
	pg_odbc_conn=""
	_pg_drv=$(_pg_odbc_driver)
	if [ -n "$_pg_drv" ]; then
		pg_odbc_conn="Driver=$_pg_drv;Server=$pg_host;Port=$pg_port;Database=$pg_db;Uid=$pg_user;Pwd=$pg_password"
	fi
	export pg_port pg_host pg_user pg_password pg_db pg_socket_dir pg_bin \
		pg_conninfo pg_odbc_conn
}

# pg_psql ARGS...: runs psql (-X -q -v ON_ERROR_STOP=1) on database outpost
# as role outpost over TCP, the password given in PGPASSWORD; ARGS follow
# (e.g. -At -c 'select 1', or SQL on stdin). Returns psql's status.
pg_psql() {
	PGPASSWORD=$pg_password PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10} \
		"$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" \
		-U "$pg_user" -d "$pg_db" "$@"
}

# pg_stop: fast shutdown (SIGINT: sessions are ended, a shutdown checkpoint
# written), then waits until the postmaster, which exits after all its
# children, is gone (SIGKILL after PG_STOP_TIMEOUT, 30, seconds). No-op when
# none runs. The cluster stays in $T/pg.
pg_stop() {
	[ -n "$pg_pid" ] || return 0
	kill -INT "$pg_pid" 2>/dev/null
	_pg_deadline=$(($(date +%s) + ${PG_STOP_TIMEOUT:-30}))
	while kill -0 "$pg_pid" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$_pg_deadline" ]; then
			echo "pg_stop: postgres did not stop in time, killing it; log:" >&2
			cat "$pg_log" >&2
			break
		fi
		sleep 0.01 # poll interval, bounded by the deadline
	done
	_pg_reap -9
}

# Stopped when the script exits, before lib.sh removes $T.
at_exit pg_stop
