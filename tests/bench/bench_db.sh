#!/bin/bash
# db: 100,000 rows into PostgreSQL through a db batch step, and 100,000 rows
# out of it streamed in pages, each against psql doing the same in the same
# run (\copy FROM a CSV file; SELECT to /dev/null).
#
# Starts a real PostgreSQL (tests/e2e/pg.sh, default settings, fsync on).
# The agent's side is `outpostctl run` of one pipeline, process start,
# reading its input and opening the account included, as psql's side
# includes its own start. Prints "bench: NAME VALUE UNIT" lines; the ratios
# are what to compare (targets: insert >= 0.3, read >= 0.5).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
OUTPOSTCTL=${OUTPOSTCTL:-$top/build/release/outpostctl}
export OUTPOSTCTL
N=${BENCH_DB_ROWS:-100000}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	echo "bench: skip bench_db: PostgreSQL not found (packaging/install-deps.sh bench)"
	exit 0
fi
[ -x "$OUTPOSTCTL" ] || {
	echo "bench_db: $OUTPOSTCTL not found (make VARIANT=release)" >&2
	exit 1
}
# shellcheck source=../e2e/lib.sh
. "$top/tests/e2e/lib.sh"
# shellcheck source=../e2e/pg.sh
. "$top/tests/e2e/pg.sh"
pg_start >/dev/null || exit 1
CONN="host=127.0.0.1 port=$pg_port dbname=$pg_db"

cat >"$T/outpost.conf" <<CONF
[agent]
data_dir = $T/data
[accounts]
key_file = $T/accounts.key
CONF
printf '{"type":"basic","username":"%s","password":"%s"}' "$pg_user" "$pg_password" |
	"$OUTPOSTCTL" account set pg --config "$T/outpost.conf" >/dev/null || exit 1

pg_psql -c "CREATE TABLE by_copy (id int, label text, amount numeric(12,2), at timestamptz);
	CREATE TABLE by_agent (id int, label text, amount numeric(12,2), at timestamptz)" || exit 1

# The same rows for both: a CSV file for psql, a JSON document for the agent.
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++)
	printf "%d,order %d,%d.%02d,2026-05-01T10:%02d:%02dZ\n", i, i, i % 10000, i % 100, (i / 60) % 60, i % 60 }' >"$T/rows.csv"
awk -F, 'BEGIN { printf "{\"rows\":[" }
	{ printf "%s{\"id\":%s,\"label\":\"%s\",\"amount\":%s,\"at\":\"%s\"}", (NR > 1 ? "," : ""), $1, $2, $3, $4 }
	END { print "]}" }' "$T/rows.csv" >"$T/rows.json"

cat >"$T/insert.json" <<JSON
{"name":"insert","version":"1","settings":{"timeoutMs":600000},"steps":[{"type":"db","config":{
  "connection":"$CONN","account":"pg","mode":"batch","items":"{{ message.rows }}","timeoutMs":600000,
  "sql":"INSERT INTO by_agent VALUES ({{ message.id }}, {{ message.label }}, {{ message.amount }}, {{ message.at }})"}}]}
JSON
cat >"$T/read.json" <<JSON
{"name":"read","version":"1","settings":{"timeoutMs":600000},"steps":[{"type":"db","config":{
  "connection":"$CONN","account":"pg","mode":"stream","pageSize":1000,"timeoutMs":600000,
  "sql":"SELECT * FROM by_copy","steps":[{"type":"set","config":{"template":1}}]}}]}
JSON

now() { date +%s%N; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }

t0=$(now)
pg_psql -c "\\copy by_copy FROM '$T/rows.csv' CSV" || exit 1
t1=$(now)
"$OUTPOSTCTL" run "$T/insert.json" --input "$T/rows.json" --config "$T/outpost.conf" \
	--compact >"$T/insert.out" || { cat "$T/insert.out"; exit 1; }
t2=$(now)
[ "$(pg_psql -At -c 'SELECT count(*) FROM by_agent')" = "$N" ] || {
	echo "bench_db: the agent did not insert $N rows" >&2
	exit 1
}
copy=$(rate "$N" $((t1 - t0)))
agent=$(rate "$N" $((t2 - t1)))
echo "bench: db_insert_psql_copy $copy rows/s"
echo "bench: db_insert_agent_batch $agent rows/s"
echo "bench: db_insert_ratio $(awk -v a="$agent" -v b="$copy" 'BEGIN { printf "%.2f", a / b }') (target >= 0.3)"

t0=$(now)
pg_psql -At -c "SELECT * FROM by_copy" >/dev/null || exit 1
t1=$(now)
"$OUTPOSTCTL" run "$T/read.json" --config "$T/outpost.conf" --compact >"$T/read.out" ||
	{ cat "$T/read.out"; exit 1; }
t2=$(now)
grep -q "\"rowCount\":$N" "$T/read.out" || {
	echo "bench_db: the agent read $(cat "$T/read.out")" >&2
	exit 1
}
psql_r=$(rate "$N" $((t1 - t0)))
agent_r=$(rate "$N" $((t2 - t1)))
echo "bench: db_read_psql $psql_r rows/s"
echo "bench: db_read_agent_stream $agent_r rows/s"
echo "bench: db_read_ratio $(awk -v a="$agent_r" -v b="$psql_r" 'BEGIN { printf "%.2f", a / b }') (target >= 0.5)"
