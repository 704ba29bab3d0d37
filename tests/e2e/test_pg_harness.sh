# The PostgreSQL harness (pg.sh) end to end, before any test relies on it:
# the server starts, role outpost logs in over TCP with $pg_password and
# owns database outpost, a wrong or missing password is refused, fsync is
# on, ODBC works through unixODBC's isql with the DSN-less $pg_odbc_conn
# (the driver named by its path, no odbcinst.ini entry), and pg_stop ends
# the postmaster and all its children (and may be called again).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=pg.sh
. "$(dirname "$0")/pg.sh"

# gone PID: no process PID runs.
gone() {
	! kill -0 "$1" 2>/dev/null
}

# silent: nothing answers on 127.0.0.1:$pg_port.
silent() {
	! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 2
}

# psql_as PASSWORD ARGS...: psql as outpost over TCP with PASSWORD (none when
# empty; never prompts, no ~/.pgpass); sets $rc, $out, $err.
psql_as() {
	_pw=$1
	shift
	if [ -n "$_pw" ]; then
		PGPASSWORD=$_pw PGPASSFILE=/dev/null "$pg_bin/psql" -X -w -At -h "$pg_host" \
			-p "$pg_port" -U "$pg_user" -d "$pg_db" "$@" >"$T/out" 2>"$T/err"
	else
		env -u PGPASSWORD PGPASSFILE=/dev/null "$pg_bin/psql" -X -w -At -h "$pg_host" \
			-p "$pg_port" -U "$pg_user" -d "$pg_db" "$@" >"$T/out" 2>"$T/err"
	fi
	rc=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
}

t0=$(date +%s%N)
# shellcheck disable=SC2119 # no extra settings
pg_start || exit 1
echo "pg_start took $((($(date +%s%N) - t0) / 1000000)) ms (port $pg_port)"

what="psql over TCP as outpost"
out=$(pg_psql -At -c "select current_user || ' ' || current_database()" 2>&1)
check "$what: got '$out', expected 'outpost outpost'" [ "$out" = "outpost outpost" ]

what="outpost owns its database"
out=$(pg_psql -At -c "create table t (x int)" -c "insert into t values (40), (2)" \
	-c "select sum(x) from t" 2>&1)
check "$what: got '$out', expected 42" [ "$out" = 42 ]

what="settings"
out=$(pg_psql -At -c "select current_setting('fsync') || ' ' || current_setting('listen_addresses')" 2>&1)
check "$what: got '$out', expected 'on 127.0.0.1'" [ "$out" = "on 127.0.0.1" ]

what="pg_conninfo"
out=$(env -u PGPASSWORD PGPASSFILE=/dev/null "$pg_bin/psql" -X -w -At -d "$pg_conninfo" -c "select 7" 2>&1)
check "$what: got '$out', expected 7" [ "$out" = 7 ]

what="a wrong password is refused"
psql_as "${pg_password}x" -c "select 1"
expect_rc 2
expect_err_has 'password authentication failed for user "outpost"'

what="no password is refused"
psql_as "" -c "select 1"
expect_rc 2
expect_err_has "no password supplied"

what="ODBC through unixODBC, DSN-less"
check "$what: pg_odbc_conn is empty (psqlODBC not installed?)" [ -n "$pg_odbc_conn" ]
out=$(printf 'select 1+1\n' | isql -b -v -k "$pg_odbc_conn" 2>&1)
rc=$?
check "$what: isql exit $rc: $out" [ "$rc" -eq 0 ]
check "$what: no '| 2 ' row in: $out" grep -q '^| 2 ' <<<"$out"

what="ODBC with a wrong password"
out=$(printf 'select 1+1\n' | isql -b -v -k "${pg_odbc_conn%;Pwd=*};Pwd=wrong" 2>&1)
rc=$?
check "$what: isql exit $rc, expected 1: $out" [ "$rc" -eq 1 ]
check "$what: no authentication error in: $out" grep -q 'password authentication failed' <<<"$out"

what="pg_stop"
postmaster=$pg_pid
children=$(pgrep -P "$postmaster" | tr '\n' ' ')
check "$what: the postmaster has no children before stopping" [ -n "$children" ]
t0=$(date +%s%N)
pg_stop
echo "pg_stop took $((($(date +%s%N) - t0) / 1000000)) ms"
check "$what: the postmaster $postmaster still runs" gone "$postmaster"
for c in $children; do
	check "$what: child $c of the postmaster still runs" gone "$c"
done
check "$what: postmaster.pid left behind (no clean shutdown)" [ ! -e "$T/pg/data/postmaster.pid" ]
check "$what: port $pg_port still answers" silent
check "$what: a second pg_stop fails" pg_stop
check "$what: pg_pid is '$pg_pid' after it" [ -z "$pg_pid" ]

if [ "$failures" -ne 0 ]; then
	echo "server log:" >&2
	sed 's/^/    /' "$pg_log" >&2
fi
finish
