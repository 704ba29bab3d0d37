# The db step end to end through outpostctl run against a real PostgreSQL
# (tests/e2e/pg.sh): bound parameters and an injection attempt, JSON types
# of the results, execute, batch in one transaction (all or nothing),
# stream in pages through nested steps, stored procedures, the pool across
# a cancelled statement, and errors: bad password, closed port, a peer that
# is not PostgreSQL, one that never answers, syntax, limits.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/pg.sh"
. "$E2E_DIR/peer.sh" # tcp_peer_start

pg_start || exit 1
CONN="host=127.0.0.1 port=$pg_port dbname=$pg_db"

agent_config
account pg "{\"type\":\"basic\",\"username\":\"$pg_user\",\"password\":\"$pg_password\"}"
account pg-wrong "{\"type\":\"basic\",\"username\":\"$pg_user\",\"password\":\"not-it\"}"

# db NAME CONFIG: a pipeline of one db step on the test database.
db() { step_pipeline "$1" db "\"connection\":\"$CONN\",\"account\":\"pg\",$2"; }
sql() { pg_psql -At -c "$1"; }

sql "CREATE TABLE t (id int PRIMARY KEY, name text, big bigint, n numeric, ok boolean,
	doc jsonb, at timestamptz, local timestamp, d date, raw bytea, f float8, nothing text)"
sql "INSERT INTO t VALUES (1, 'one', 9007199254740993, 12.50, true, '{\"a\":[1,2]}',
	'2026-05-01 10:00:00.25+02', '2026-05-01 10:00:00', '2026-05-01', '\\x00ff10', 0.1, NULL),
	(2, 'two', 42, 123456789012345678901234567890.123, false, 'null', NULL, NULL, NULL, NULL,
	'NaN', NULL)"

what="query: bound parameters, rows as JSON with their types"
db q '"sql":"SELECT * FROM t WHERE id = {{ message.id }} ORDER BY id"'
run q '{"id":1}'
expect_rc 0
expect_json '.[0] | [.id, .name, .big, .n, .ok, .doc, .at, .local, .d, .raw, .f, .nothing]' \
	'[1,"one","9007199254740993",12.5,true,{"a":[1,2]},"2026-05-01T08:00:00.25Z","2026-05-01T10:00:00","2026-05-01","AP8Q",0.1,null]'
run q '{"id":2}'
expect_json '.[0] | [.big, .n, .ok, .doc, .at, .f]' \
	'[42,"123456789012345678901234567890.123",false,null,null,"NaN"]'
run q '{"id":3}'
expect_json '.' '[]'

what="an injection attempt is a value, never SQL"
db inj '"sql":"SELECT id FROM t WHERE name = {{ message.name }}"'
run inj '{"name":"x'"'"'; DROP TABLE t; --"}'
expect_rc 0
expect_json '.' '[]'
run inj '{"name":"one'"'"' OR '"'"'1'"'"'='"'"'1"}'
expect_json '.' '[]'
checks=$((checks + 1))
[ "$(sql 'SELECT count(*) FROM t')" = 2 ] || fail "$what: the table changed"
db quoted "\"sql\":\"SELECT 1 FROM t WHERE name = '{{ message.name }}'\""
run_ctl check "$T/quoted.json"
expect_rc 2
expect_err_has "steps[0].config.sql: column 31: an expression inside a quoted string (opened at column 30) would not be a value"
step_pipeline dollar db "\"connection\":\"$CONN password=x\",\"account\":\"pg\",\"sql\":\"SELECT \$1\""
run_ctl check "$T/dollar.json"
expect_err_has 'steps[0].config.sql: column 8: write values as {{ expressions }}, not $n'
expect_err_has 'steps[0].config.connection: holds a password'

what="execute gives rowCount; a value of each JSON kind binds"
db up '"mode":"execute","sql":"UPDATE t SET name = {{ message.name }}, doc = {{ message.doc }}, ok = {{ message.ok }} WHERE id = {{ message.id }}"'
run up '{"id":2,"name":"deux","doc":{"k":[true,null]},"ok":true}'
expect_rc 0
expect_json '.' '{"rowCount":1}'
checks=$((checks + 1))
[ "$(sql "SELECT name || ' ' || doc::text || ' ' || ok FROM t WHERE id = 2")" = 'deux {"k": [true, null]} true' ] ||
	fail "$what: $(sql 'SELECT * FROM t WHERE id = 2')"

what="batch: all rows in one transaction, or none"
sql "CREATE TABLE items (id int PRIMARY KEY, label text)"
sql "CREATE TABLE one (id int PRIMARY KEY)"
db batch '"mode":"batch","items":"{{ message.rows }}","sql":"INSERT INTO items VALUES ({{ message.id }}, {{ message.label }})"'
jq -n '{rows: [range(1; 1201) | {id: ., label: "item \(.)"}]}' >"$T/rows.json"
run batch "$(cat "$T/rows.json")"
expect_rc 0
expect_json '.' '{"rowCount":1200}'
checks=$((checks + 1))
[ "$(sql 'SELECT count(*) || max(label) FROM items')" = '1200item 999' ] || fail "$what: $(sql 'SELECT count(*) FROM items')"
jq -n '{rows: ([range(2000; 2250) | {id: ., label: "x"}] + [{id: 5, label: "dup"}] + [range(3000; 3100) | {id: ., label: "y"}])}' >"$T/dup.json"
run batch "$(cat "$T/dup.json")"
expect_rc 1
expect_err_json '[.code, .class]' '["DB_ERROR","rejected"]'
# Inserts go 100 rows to a statement: the error names the statement's items.
expect_err_has 'items 200 to 299: SQLSTATE 23505'
expect_err_has 'nothing was committed'
checks=$((checks + 1))
[ "$(sql 'SELECT count(*) FROM items')" = 1200 ] || fail "$what: a failed batch left rows"

what="batch of a statement that is not a plain insert: one row at a time"
db batch2 '"mode":"batch","sql":"INSERT INTO one SELECT {{ message }} WHERE {{ message }} > 0"'
run batch2 '[1,2,0,3,1]'
expect_err_has 'item 4: SQLSTATE 23505'
run batch2 '[1,2,0,3]'
expect_json '.' '{"rowCount":3}'

what="stream: pages of rows through nested steps, each page a batch"
sql "CREATE TABLE copy (id int, label text)"
pipeline stream "{\"name\":\"s\",\"version\":\"1\",\"steps\":[{\"type\":\"db\",\"config\":{
  \"connection\":\"$CONN\",\"account\":\"pg\",\"mode\":\"stream\",\"pageSize\":500,
  \"sql\":\"SELECT id, label FROM items WHERE id > {{ message.from }} ORDER BY id\",
  \"steps\":[{\"type\":\"db\",\"config\":{\"connection\":\"$CONN\",\"account\":\"pg\",\"mode\":\"batch\",
    \"sql\":\"INSERT INTO copy VALUES ({{ message.id }}, {{ message.label }})\"}}]}}]}"
run stream '{"from":0}'
expect_rc 0
expect_json '.' '{"rowCount":1200,"pages":3}'
checks=$((checks + 1))
[ "$(sql 'SELECT count(*) FROM copy')" = 1200 ] || fail "$what: $(sql 'SELECT count(*) FROM copy')"

what="a stored procedure with an INOUT parameter"
sql "CREATE PROCEDURE twice(IN a int, INOUT r int) LANGUAGE plpgsql AS \$\$ BEGIN r := a * 2; END \$\$"
db proc '"sql":"CALL twice({{ message.a }}, NULL)"'
run proc '{"a":21}'
expect_rc 0
expect_json '.' '[{"r":42}]'

what="a statement past its deadline is cancelled; the pool goes on"
pipeline slow "{\"name\":\"s\",\"version\":\"1\",\"steps\":[
  {\"type\":\"block\",\"config\":{\"steps\":[{\"type\":\"db\",\"config\":{\"connection\":\"$CONN\",\"account\":\"pg\",\"maxConnections\":1,
    \"timeoutMs\":300,\"sql\":\"SELECT pg_sleep(30)\"}}],\"onError\":[{\"type\":\"set\",\"config\":{\"template\":\"{{ message }}\"}}]},\"output\":\"first\"},
  {\"type\":\"db\",\"config\":{\"connection\":\"$CONN\",\"account\":\"pg\",\"maxConnections\":1,\"sql\":\"SELECT pg_backend_pid() AS pid, 1 AS one\"},\"output\":\"second\"}]}"
run slow
expect_rc 0
expect_json '[.first.code, .first.class, .second[0].one]' '["DB_TIMEOUT","timeout",1]'
checks=$((checks + 1))
[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")" = 0 ] ||
	fail "$what: the statement still runs on the server"

what="limits, syntax errors, accounts"
db many '"maxRows":100,"sql":"SELECT * FROM items"'
run many
expect_err_json '[.code, .class]' '["DB_LIMIT","limit"]'
expect_err_has '1200 rows, more than maxRows (100); use mode stream'
db syntax '"sql":"SELEC 1"'
run syntax
expect_err_json '.class' '"invalid"'
expect_err_has 'SQLSTATE 42601: syntax error at or near'
step_pipeline wrongpw db "\"connection\":\"$CONN\",\"account\":\"pg-wrong\",\"sql\":\"SELECT 1\""
run wrongpw
expect_err_json '[.code, .class]' '["DB_AUTH","auth"]'
expect_err_has 'password authentication failed'
run_ctl run "$T/q.json" --compact
expect_err_json '[.code, .class]' '["ACCOUNT","unsupported"]'

what="peers that are not a database: closed port, an HTTP server, silence"
step_pipeline closed db "\"connection\":\"host=127.0.0.1 port=1 dbname=x\",\"account\":\"pg\",\"sql\":\"SELECT 1\""
run closed
expect_err_json '[.code, .class]' '["DB_CONNECT","noconn"]'
tcp_peer_start GARBAGE garbage || exit 1
tcp_peer_start SILENT silent || exit 1
step_pipeline garbage db "\"connection\":\"host=127.0.0.1 port=$GARBAGE dbname=x sslmode=disable\",\"account\":\"pg\",\"timeoutMs\":5000,\"sql\":\"SELECT 1\""
run garbage
expect_err_json '[.code, .class]' '["DB_CONNECT","noconn"]'
# Accepts and never answers: the connect is bounded (libpq counts whole
# seconds, at least 2).
step_pipeline silent db "\"connection\":\"host=127.0.0.1 port=$SILENT dbname=x sslmode=disable\",\"account\":\"pg\",\"timeoutMs\":1500,\"sql\":\"SELECT 1\""
run silent
expect_err_json '[.code, .class]' '["DB_TIMEOUT","timeout"]'

what="ODBC (unixODBC, psqlODBC): the same step config, the same results"
ODBC="${pg_odbc_conn%%;Uid=*};BoolsAsChar=0"
odbc() {
	step_pipeline "$1" db "\"driver\":\"odbc\",\"connection\":\"$ODBC\",\"account\":\"${3:-pg}\",$2"
}
odbc oq '"sql":"SELECT * FROM t WHERE id = {{ message.id }} ORDER BY id"'
run oq '{"id":1}'
expect_rc 0
expect_json '.[0] | [.id, .name, .big, .n, .ok, .local, .d, .raw, .f, .nothing]' \
	'[1,"one","9007199254740993",12.5,true,"2026-05-01T10:00:00","2026-05-01","AP8Q",0.1,null]'
odbc oinj '"sql":"SELECT id FROM t WHERE name = {{ message.name }}"'
run oinj '{"name":"x'"'"'; DROP TABLE t; --"}'
expect_json '.' '[]'
odbc oup '"mode":"execute","sql":"UPDATE t SET name = {{ message.name }} WHERE id = {{ message.id }}"'
run oup '{"id":1,"name":"uno"}'
expect_json '.' '{"rowCount":1}'
sql "CREATE TABLE oitems (id int PRIMARY KEY, label text)"
odbc obatch '"mode":"batch","sql":"INSERT INTO oitems VALUES ({{ message.id }}, {{ message.label }})"'
run obatch '[{"id":1,"label":"a"},{"id":2,"label":null},{"id":3,"label":"c"}]'
expect_json '.' '{"rowCount":3}'
run obatch '[{"id":4,"label":"d"},{"id":1,"label":"dup"}]'
expect_err_json '.class' '"rejected"'
expect_err_has 'item 1: SQLSTATE 23505'
checks=$((checks + 1))
[ "$(sql 'SELECT count(*) FROM oitems')" = 3 ] || fail "$what: a failed batch left rows"
pipeline ostream "{\"name\":\"s\",\"version\":\"1\",\"steps\":[{\"type\":\"db\",\"config\":{
  \"driver\":\"odbc\",\"connection\":\"$ODBC\",\"account\":\"pg\",\"mode\":\"stream\",\"pageSize\":500,
  \"sql\":\"SELECT id FROM items ORDER BY id\",
  \"steps\":[{\"type\":\"db\",\"config\":{\"driver\":\"odbc\",\"connection\":\"$ODBC\",\"account\":\"pg\",
    \"mode\":\"batch\",\"sql\":\"INSERT INTO oitems VALUES ({{ message.id }} + 10, NULL)\"}}]}}]}"
run ostream
expect_json '.' '{"rowCount":1200,"pages":3}'
checks=$((checks + 1))
[ "$(sql 'SELECT count(*) FROM oitems')" = 1203 ] || fail "$what: $(sql 'SELECT count(*) FROM oitems')"
odbc owrong '"sql":"SELECT 1"' pg-wrong
run owrong
expect_err_json '[.code, .class]' '["DB_AUTH","auth"]'
odbc osyntax '"sql":"SELEC 1"'
run osyntax
expect_err_json '.class' '"invalid"'
odbc oq2 '"sql":"SELECT * FROM t WHERE id = ?"'
run_ctl check "$T/oq2.json"
expect_err_has 'write values as {{ expressions }}, not ?'

what="outpostd: db steps share a pooled connection across executions"
mkdir -p "$T/pipelines"
cat >"$T/pipelines/get.json" <<JSON
{"name":"get","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/items/{id}","mode":"sync"}},
 "steps":[{"type":"db","config":{"connection":"$CONN","account":"pg","sql":"SELECT id, label FROM items WHERE id = {{ message.params.id }}"}}]}
JSON
cat >"$T/daemon.conf" <<CONF
[agent]
data_dir = $T/ddata
pipelines_dir = $T/pipelines
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
[accounts]
key_file = $T/accounts.key
dir = $T/data/accounts
CONF
if start_daemon "$T/daemon.conf" "$T/daemon.log"; then
	for i in 7 8 9; do
		out=$(curl -s "http://127.0.0.1:$port/items/$i")
		expect_json '.[0].label' "\"item $i\""
	done
	checks=$((checks + 1))
	n=$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outpost'")
	[ "$n" = 1 ] || fail "$what: $n connections of the agent, expected 1"
	kill "$pid"
	wait "$pid"
else
	fail "$what: the daemon did not start: $(cat "$T/daemon.log")"
fi

what="no password in any error"
checks=$((checks + 1))
grep -q -e "$pg_password" -e 'not-it' "$T/errors" "$T/daemon.log" && fail "$what: a password was printed"

finish
