# outpostd end to end: a generated config on free ports, HTTP triggers (sync
# and async), the admin endpoint, SIGHUP reloads, --check-config, SIGTERM.
# Waits poll a condition with a deadline; nothing sleeps for a fixed time.
. "$(dirname "$0")/lib.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

mkdir -p "$T/pipelines"
cat >"$T/outpost.conf" <<CONF
[agent]
id = e2e
data_dir = $T/data
pipelines_dir = $T/pipelines
workers = 2
shutdown_timeout = 2s
[store]
map_initial = 1MB
[http]
listen = 127.0.0.1:0
max_body = 64KB
timeout = 1s
[admin]
listen = 127.0.0.1:0
[globals]
region = eu-1
CONF
cat >"$T/pipelines/echo.json" <<'JSON'
{"name":"echo","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/echo/{id}"}},
 "steps":[{"type":"set","config":{"template":{"id":"{{ message.params.id }}","body":"{{ message.body }}",
   "q":"{{ message.query.x }}","region":"{{ globals.region }}"}}}]}
JSON
cat >"$T/pipelines/queue.json" <<'JSON'
{"name":"queue","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/queue","mode":"async"}},
 "steps":[{"type":"log","config":{"message":"queued {{ message.body.n }}"}}]}
JSON
cat >"$T/pipelines/fails.json" <<'JSON'
{"name":"fails","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/fails"}},
 "steps":[{"type":"throw-error","config":{"code":"NOPE","message":"refused","class":"invalid"}}]}
JSON
# shellcheck disable=SC2016 # $globals is jq's
cat >"$T/pipelines/shape.json" <<'JSON'
{"name":"shape","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/shape"}},
 "steps":[{"type":"transform","config":{"program":"{twice: (.body.n * 2), region: $globals.region}"}}]}
JSON

cat >"$T/pipelines/slow.json" <<'JSON'
{"name":"slow","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/slow","timeoutMs":100}},
 "steps":[{"type":"retry","config":{"attempts":100,"backoffMs":50,"jitter":false,"multiplier":1,
   "steps":[{"type":"throw-error","config":{"message":"not yet","class":"retry"}}]}}]}
JSON

# The same with the trigger's default timeoutMs (30 s): [http] timeout bounds it.
cat >"$T/pipelines/slower.json" <<'JSON'
{"name":"slower","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/slower"}},
 "steps":[{"type":"retry","config":{"attempts":100,"backoffMs":50,"jitter":false,"multiplier":1,
   "steps":[{"type":"throw-error","config":{"message":"not yet","class":"retry"}}]}}]}
JSON

what="--check-config accepts a good config"
"$OUTPOSTD" --config "$T/outpost.conf" --check-config >"$T/out" 2>"$T/err"
rc=$?; out=$(cat "$T/out"); err=$(cat "$T/err")
expect_rc 0
expect_err_has 'config and pipelines are valid'

start_daemon "$T/outpost.conf" "$T/d.log"
checks=$((checks + 1))
[ -n "$port" ] && [ -n "$admin" ] || fail "daemon did not become ready: $(cat "$T/d.log")"

# http METHOD PATH [BODY]: sets $status and $out.
http() {
	if [ $# -ge 3 ]; then
		status=$(curl -s -o "$T/body" -w '%{http_code}' -X "$1" "http://127.0.0.1:$port$2" \
			-H 'content-type: application/json' --data-binary "$3")
	else
		status=$(curl -s -o "$T/body" -w '%{http_code}' -X "$1" "http://127.0.0.1:$port$2")
	fi
	out=$(cat "$T/body")
}
expect_status() {
	checks=$((checks + 1))
	[ "$status" = "$1" ] || fail "${what:-}: HTTP $status, expected $1: $out"
}

what="sync trigger answers with the result"
http POST '/echo/17?x=y' '{"a":[1,2]}'
expect_status 200
expect_json '.' '{"id":"17","body":{"a":[1,2]},"q":"y","region":"eu-1"}'

what="a jq transform runs on a sync trigger"
http POST /shape '{"n":21}'
expect_status 200
expect_json '.' '{"twice":42,"region":"eu-1"}'

what="a failing pipeline answers with its class's status"
http GET /fails
expect_status 400
expect_json '.error.code' '"NOPE"'

what="a sync trigger's timeoutMs answers 504"
http GET /slow
expect_status 504
expect_json '.error.code' '"EXECUTION_TIMEOUT"'

what="[http] timeout bounds a trigger's longer timeoutMs: 504"
http GET /slower
expect_status 504
expect_json '.error.code' '"EXECUTION_TIMEOUT"'

what="unknown path and wrong method"
http GET /nowhere
expect_status 404
http GET /queue
expect_status 405

what="bad JSON is a 400 naming the position"
http POST /echo/1 '{"a":'
expect_status 400
expect_json '.error.message | test("line 1")' 'true'

what="async trigger answers 202 with the event id after the commit"
n=0
while [ $n -lt 20 ]; do
	http POST /queue "{\"n\":$n}"
	expect_status 202
	n=$((n + 1))
done
expect_json '.eventId | length' '36'
i=0
done_n=0
while [ $i -lt 200 ]; do
	done_n=$(curl -s "http://127.0.0.1:$admin/metrics" |
		sed -n 's/^outpost_executions_total{pipeline="queue",status="success"} \([0-9]*\)$/\1/p')
	[ "${done_n:-0}" -ge 20 ] && break
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
checks=$((checks + 1))
[ "${done_n:-0}" -eq 20 ] || fail "async: $done_n of 20 executions done"

what="a body past max_body is 413, counted with the handler's answers"
head -c 70000 /dev/zero | tr '\0' x >"$T/big.body"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary @"$T/big.body" "http://127.0.0.1:$port/echo/1")
check "a 70 KB body answered $code, not 413" test "$code" = 413
check "the 413 is missing from outpost_http_requests_total" sh -c \
	"curl -s 'http://127.0.0.1:$admin/metrics' | grep -q '^outpost_http_requests_total{code=\"413\"} 1\$'"

what="admin endpoint"
checks=$((checks + 1))
curl -sf "http://127.0.0.1:$admin/healthz" | grep -q '"ok"' || fail "healthz"
checks=$((checks + 1))
curl -sf "http://127.0.0.1:$admin/readyz" | grep -q '"ready"' || fail "readyz"
checks=$((checks + 1))
curl -s "http://127.0.0.1:$admin/metrics" | grep -q '^outpost_http_requests_total{code="202"} 20$' ||
	fail "metrics: $(curl -s "http://127.0.0.1:$admin/metrics" | grep http_requests)"
checks=$((checks + 1))
commits=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '$1 == "outpost_store_commit_seconds_count" { print $2 }')
[ "${commits:-0}" -ge 20 ] || fail "metrics: $commits store commits counted; the 20 events sent one by one took one each"
checks=$((checks + 1))
curl -s "http://127.0.0.1:$admin/metrics" | grep -Eq '^outpost_workers [12]$' ||
	fail "metrics: workers (1 or 2 of agent.workers 2): $(curl -s "http://127.0.0.1:$admin/metrics" | grep workers)"

what="without a broker or a control plane, the MQTT library and OpenSSL are never loaded"
check "libpaho or libcrypto is mapped: $(grep -Eo '[^/]*(paho|libcrypto|libssl)[^ ]*' /proc/$pid/maps | sort -u | tr '\n' ' ')" \
	sh -c "! grep -Eq 'libpaho|libcrypto|libssl' /proc/$pid/maps"

what="a second outpostd on the same data_dir is refused; the first goes on"
# Its own listeners (port 0) so that only the store can refuse it.
timeout 10 "$OUTPOSTD" --config "$T/outpost.conf" >/dev/null 2>"$T/second.log"
rc=$?
expect_rc 1
checks=$((checks + 1))
grep -q "store: in use by another process (pid $pid on this host)" "$T/second.log" ||
	fail "$what: $(cat "$T/second.log")"
checks=$((checks + 1))
grep -q "recover\|requeue" "$T/second.log" && fail "$what: it recovered the store: $(cat "$T/second.log")"
http POST /echo/2 '{}'
expect_status 200

# busy_conf HTTP ADMIN: a config of its own store on the listen addresses given.
busy_conf() {
	printf '[agent]\nid = busy\ndata_dir = %s/busy\npipelines_dir = %s/pipelines\n[http]\nlisten = %s\n[admin]\nlisten = %s\n' \
		"$T" "$T" "$1" "$2" >"$T/busy.conf"
}
what="a port in use is refused naming the section, the address and the reason"
busy_conf "127.0.0.1:$port" 127.0.0.1:0
"$OUTPOSTD" --config "$T/busy.conf" >/dev/null 2>"$T/busy.log"
rc=$?; out=""; err=$(cat "$T/busy.log")
expect_rc 1
expect_err_has "[http] listen: cannot listen on 127.0.0.1:$port: Address already in use"
busy_conf 127.0.0.1:0 "127.0.0.1:$admin"
"$OUTPOSTD" --config "$T/busy.conf" >/dev/null 2>"$T/busy.log"
rc=$?; out=""; err=$(cat "$T/busy.log")
expect_rc 1
expect_err_has "[admin] listen: cannot listen on 127.0.0.1:$admin: Address already in use"
http POST /echo/2 '{}'
expect_status 200

what="SIGHUP with a broken pipeline keeps the running set"
printf '{"name":"broken","version":"1","steps":[{"type":"nosuch"}]}' >"$T/pipelines/broken.json"
# A jq program is checked in a child process: its message still comes back.
printf '{"name":"jqbad","version":"1","steps":[{"type":"transform","config":{"program":"{a: .b"}}]}' \
	>"$T/pipelines/jqbad.json"
kill -HUP $pid
i=0
while [ $i -lt 200 ] && ! grep -q 'reload refused' "$T/d.log"; do
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
# The problems are logged on the lines after "reload refused".
check "reload problem not logged" wait_until 10 grep -q 'broken.json: steps\[0\].type: unknown step type' "$T/d.log"
check "jq problem not logged" grep -q 'jqbad.json: steps\[0\].config.program: jq program does not compile: jq: error: syntax error, unexpected \$end' "$T/d.log"
http POST /echo/2 '{}'
expect_status 200

what="SIGHUP with a good set swaps it in"
rm "$T/pipelines/broken.json" "$T/pipelines/jqbad.json"
cat >"$T/pipelines/new.json" <<'JSON'
{"name":"new","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/new"}},
 "steps":[{"type":"set","config":{"template":{"new":true}}}]}
JSON
kill -HUP $pid
i=0
while [ $i -lt 200 ]; do
	http GET /new
	[ "$status" = 200 ] && break
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
expect_status 200
expect_json '.new' 'true'

what="SIGHUP names a changed setting it cannot apply"
sed -i 's/^workers = 2$/workers = 3/' "$T/outpost.conf"
kill -HUP $pid
checks=$((checks + 1))
wait_until 10 grep -q 'reload: \[agent\] workers changed; it takes effect at the next restart' "$T/d.log" ||
	fail "$what: $(grep reload "$T/d.log")"
# The reloads before changed nothing in the config: they warned of nothing.
checks=$((checks + 1))
[ "$(grep -c 'reload: .* changed' "$T/d.log")" -eq 1 ] || fail "$what: $(grep reload "$T/d.log")"
sed -i 's/^workers = 3$/workers = 2/' "$T/outpost.conf"

what="SIGHUP applies a new log_level at once"
cat >"$T/pipelines/quiet.json" <<'JSON'
{"name":"quiet","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/quiet"}},
 "steps":[{"type":"log","config":{"level":"debug","message":"quiet ran {{ message.query.n }}"}}]}
JSON
kill -HUP $pid
wait_until 10 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/quiet)\" = 200 ]"
http GET '/quiet?n=1'
expect_status 200
sed -i 's/^workers = 2$/workers = 2\nlog_level = debug/' "$T/outpost.conf"
kill -HUP $pid
ok_debug() {
	http GET '/quiet?n=2'
	grep -q 'quiet ran 2' "$T/d.log"
}
check "a debug line after the reload" wait_until 10 ok_debug
check "a debug line before it" sh -c "! grep -q 'quiet ran 1' '$T/d.log'"
check "log_level named as not applied" sh -c "! grep -q 'log_level changed' '$T/d.log'"
sed -i '/^log_level = debug$/d' "$T/outpost.conf"
rm "$T/pipelines/quiet.json"
kill -HUP $pid

what="SIGTERM stops it cleanly"
kill -TERM $pid
wait $pid
rc=$?
expect_rc 0
checks=$((checks + 1))
grep -q 'stopped' "$T/d.log" || fail "no clean stop: $(tail -5 "$T/d.log")"

what="--check-config names a bad key with its line"
printf '[agent]\nworkrs = 3\n' >"$T/bad.conf"
"$OUTPOSTD" --config "$T/bad.conf" --check-config >"$T/out" 2>"$T/err"
rc=$?; out=$(cat "$T/out"); err=$(cat "$T/err")
expect_rc 2
expect_err_has 'bad.conf:2'
expect_err_has 'workrs'

what="--check-config reads the trusted keys as the start does"
: >"$T/empty.pub"
# Only readable files, no broker: the check connects to nothing.
{
	cat "$T/outpost.conf"
	printf '[control]\nurl = mqtts://127.0.0.1:1\nca_file = %s\ncert_file = %s\nkey_file = %s\ntrusted_keys = %s\n' \
		"$T/bad.conf" "$T/bad.conf" "$T/bad.conf" "$T/empty.pub"
	printf '[accounts]\nkey_file = %s/accounts.key\n' "$T"
} >"$T/keys.conf"
"$OUTPOSTD" --config "$T/keys.conf" --check-config >"$T/out" 2>"$T/err"
rc=$?; out=$(cat "$T/out"); err=$(cat "$T/err")
expect_rc 2
expect_err_has "[control] trusted_keys: $T/empty.pub: not an Ed25519 public key file"
checks=$((checks + 1))
[ "$(grep -c 'trusted_keys' "$T/err")" -eq 1 ] || fail "$what: not said once: $err"
what="the start refuses the same trusted key with the same line"
"$OUTPOSTD" --config "$T/keys.conf" >/dev/null 2>"$T/err"
rc=$?; out=""; err=$(cat "$T/err")
expect_rc 1
checks=$((checks + 1))
grep -qx "\[control\] trusted_keys: $T/empty.pub: not an Ed25519 public key file.*" "$T/err" ||
	fail "$what: $err"

what="schedule and event triggers: a cron fire publishes to a subscriber"
mkdir -p "$T/sp"
sed -e "s#^data_dir = .*#data_dir = $T/sdata#" -e "s#^pipelines_dir = .*#pipelines_dir = $T/sp#" \
	"$T/outpost.conf" >"$T/sched.conf"
cat >"$T/sp/tick.json" <<'JSON'
{"name":"tick","version":"1","trigger":{"type":"schedule","config":{"cron":"* * * * * *","input":{"n":1}}},
 "steps":[{"type":"event-publish","config":{"name":"ticked"}}]}
JSON
cat >"$T/sp/sub.json" <<'JSON'
{"name":"sub","version":"1","trigger":{"type":"event","config":{"name":"ticked"}},
 "steps":[{"type":"log","config":{"level":"debug","message":"got {{ message.n }}"}}]}
JSON
"$OUTPOSTD" --config "$T/sched.conf" >"$T/s.log" 2>&1 &
spid=$!
sadmin=""
subs=0
i=0
while [ $i -lt 300 ]; do
	[ -z "$sadmin" ] && sadmin=$(sed -n 's/.*admin endpoint on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/s.log") 2>/dev/null
	if [ -n "$sadmin" ]; then
		subs=$(curl -s "http://127.0.0.1:$sadmin/metrics" |
			sed -n 's/^outpost_executions_total{pipeline="sub",status="success"} \([0-9]*\)$/\1/p')
		[ "${subs:-0}" -ge 1 ] && break
	fi
	kill -0 $spid 2>/dev/null || break
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
checks=$((checks + 1))
[ "${subs:-0}" -ge 1 ] || fail "$what: no subscriber execution: $(tail -5 "$T/s.log")"
kill -TERM $spid
wait $spid
rc=$?
expect_rc 0
pipeline pub '{"name":"pub","version":"1","steps":[{"type":"event-publish","config":{"name":"x"}}]}'
what="event-publish without a daemon fails with class unsupported"
run_ctl run "$T/pub.json"
expect_rc 1
expect_err_json '.code' '"NO_EVENT_BUS"'

# ---- outpostctl local admin, against the daemon started again on the same store ----
cat >"$T/pipelines/doomed.json" <<'JSON'
{"name":"doomed","version":"3","trigger":{"type":"http","config":{"method":"POST","path":"/doomed","mode":"async"}},
 "steps":[{"type":"throw-error","config":{"code":"DOOMED","message":"never works","class":"invalid"}}]}
JSON
start_daemon "$T/outpost.conf" "$T/d2.log"
checks=$((checks + 1))
[ -n "$port" ] && [ -n "$admin" ] || fail "daemon did not restart: $(cat "$T/d2.log")"
A="127.0.0.1:$admin"

what="after a restart, the jq program known from the last start runs unchanged"
http POST /shape '{"n":4}'
expect_status 200
expect_json '.' '{"twice":8,"region":"eu-1"}'

what="outpostctl pipelines lists the pipelines with trigger and queue numbers"
run_ctl pipelines --admin "$A" --json
expect_rc 0
expect_json '[.[].name] | sort' '["doomed","echo","fails","new","queue","shape","slow","slower"]'
expect_json '.[] | select(.name == "queue") | .trigger' \
	'{"type":"http","method":"POST","path":"/queue","mode":"async"}'
expect_json '.[] | select(.name == "queue") | [.version, .status, .queued, .running, .deadLetters]' \
	'["1","running",0,0,0]'
run_ctl pipelines --admin "$A"
expect_rc 0
checks=$((checks + 1))
printf '%s\n' "$out" | grep -Eq '^NAME +VERSION +STATUS +TRIGGER +QUEUED +RUNNING +DEAD$' ||
	fail "$what: no header: $out"
checks=$((checks + 1))
printf '%s\n' "$out" | grep -Eq '^queue +1 +running +http POST /queue \(async\) +0 +0 +0$' ||
	fail "$what: no queue row: $out"

what="outpostctl executions lists recent ones, newest first, from before the restart"
OUTPOST_ADMIN="$A" run_ctl executions --pipeline queue --json
expect_rc 0
expect_json 'length' '20'
expect_json 'map(.pipeline + ":" + .status) | unique' '["queue:success"]'
expect_json '[.[].startedAtMs] == ([.[].startedAtMs] | sort | reverse)' 'true'
exec_id=$(printf '%s' "$out" | jq -r '.[0].id')
OUTPOST_ADMIN="$A" run_ctl executions --limit 3 --json
expect_json 'length' '3'
run_ctl executions --admin "$A" --limit 2
expect_rc 0
checks=$((checks + 1))
[ "$(printf '%s\n' "$out" | wc -l)" -eq 3 ] || fail "$what: expected a header and 2 rows: $out"

what="outpostctl execution ID shows one"
run_ctl execution "$exec_id" --admin "$A"
expect_rc 0
checks=$((checks + 1))
printf '%s\n' "$out" | grep -q '^status: *success$' || fail "$what: $out"
checks=$((checks + 1))
printf '%s\n' "$out" | grep -q '^pipeline: *queue (version 1)$' || fail "$what: $out"
run_ctl execution "$exec_id" --admin "$A" --json
expect_json '[.id, .trigger, .attempt]' "[\"$exec_id\",\"http\",1]"
run_ctl execution 00000000-0000-4000-8000-000000000000 --admin "$A"
expect_rc 3
expect_err_has 'no execution with id 00000000-0000-4000-8000-000000000000'

what="a failing async pipeline lands in the dead letters"
http POST /doomed '{"k":1}'
expect_status 202
eid=$(printf '%s' "$out" | jq -r '.eventId')
i=0
while [ $i -lt 200 ]; do
	run_ctl dead --pipeline doomed --admin "$A" --json
	[ "$(printf '%s' "$out" | jq length)" = 1 ] && break
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
expect_json '[.[0].eventId, .[0].attempt, .[0].triggerType]' "[\"$eid\",1,\"http\"]"
expect_json '.[0].error | test("DOOMED")' 'true'
expect_json '.[0] | has("payload")' 'false'
dead1=$(printf '%s' "$out" | jq '.[0].deadAtMs')
run_ctl dead --admin "$A"
expect_rc 0
checks=$((checks + 1))
printf '%s\n' "$out" | grep -Eq "^$eid +[0-9-]+ [0-9:]+ +doomed +1 +[0-9]+ +DOOMED" ||
	fail "$what: no dead row: $out"
run_ctl dead "$eid" --admin "$A" --json
expect_json '.payload.body' '{"k":1}'
run_ctl pipelines --admin "$A" --json
expect_json '.[] | select(.name == "doomed") | .deadLetters' '1'

what="outpostctl replay puts it back; it fails again and returns to the dead letters"
run_ctl replay "$eid" --admin "$A"
expect_rc 0
checks=$((checks + 1))
[ "$out" = "replayed $eid: queued again as attempt 1" ] || fail "$what: $out"
i=0
while [ $i -lt 200 ]; do
	run_ctl executions --pipeline doomed --admin "$A" --json
	[ "$(printf '%s' "$out" | jq length)" = 2 ] && break
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
expect_json "map(.eventId == \"$eid\" and .status == \"error\" and .attempt == 1)" '[true,true]'
i=0
while [ $i -lt 200 ]; do
	run_ctl dead --pipeline doomed --admin "$A" --json
	[ "$(printf '%s' "$out" | jq length)" = 1 ] && break
	i=$((i + 1))
	sleep 0.05 # poll interval, bounded by the loop
done
expect_json "[.[0].eventId, .[0].deadAtMs > $dead1]" "[\"$eid\",true]"
run_ctl replay 00000000-0000-4000-8000-000000000000 --admin "$A"
expect_rc 3
expect_err_has 'no dead letter with id'

what="outpostctl admin errors: unreachable agent and bad usage"
run_ctl pipelines --admin 127.0.0.1:1
expect_rc 1
expect_err_has "cannot reach the agent's admin endpoint at 127.0.0.1:1: Connection refused"
run_ctl executions --limit 0 --admin "$A"
expect_rc 2
run_ctl execution --admin "$A"
expect_rc 2
run_ctl dead --nope
expect_rc 2

what="the restarted daemon stops cleanly"
kill -TERM $pid
wait $pid
rc=$?
expect_rc 0

finish
