# The control-plane link end to end: outpostd connects to a real mosquitto
# over mutual TLS (broker.sh's throwaway PKI), says online, and applies the
# signed desired documents published to its retained desired topic (signed
# with `outpostctl sign`, published with mosquitto_pub as the control plane
# would). Checked: status online and offline (clean stop and Last Will),
# reported after connect, deploy, update and removal of pipelines (called
# over HTTP), tampered, wrong-key, replayed, other-agent and malformed
# documents refused with the running set untouched, a document whose
# pipeline does not load refused whole, a set whose triggers do not start
# rolled back (and tried again after a restart, not taken as applied), the
# applied set back after a restart without a broker, an agent whose
# certificate the broker does not trust kept out, and a config without
# trusted keys refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/broker.sh"
. "$(dirname "$0")/peer.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"
: "${OUTPOSTCTL:?set OUTPOSTCTL to the outpostctl binary}"

# The debug build's fault injection (agent/core/fault.h) for the set that
# does not start.
export OUTPOST_FAULTS=schedule-start=nightly

pid=""
at_exit stop_daemon

# Sessions survive a broker restart: a watcher away meanwhile gets what
# was published for it.
mkdir -p "$T/broker"
printf 'persistence true\npersistence_location %s/broker/\n' "$T" >"$T/persist.conf"
# The broker as packaging/mosquitto sets it up: each client certificate's CN
# is its user, and the ACL lets an agent touch its own topics only.
start_acl_broker "$T/persist.conf" || exit 1
P=$T/pki
ROOT=outpost/v1/agent-a

"$OUTPOSTCTL" keygen "$T/ops.key" --kid ops-1 >/dev/null || fail "keygen ops"
"$OUTPOSTCTL" keygen "$T/other.key" --kid other-1 >/dev/null || fail "keygen other"
mkdir -p "$T/pipelines"

# conf FILE CERT [LINE...]: the agent's config, agent-a, the control link on
# the broker's TLS listener with client certificate CERT (a name in $P).
conf() {
	_f=$1 _c=$2
	shift 2
	cat >"$_f" <<CONF
[agent]
id = agent-a
data_dir = $T/data
pipelines_dir = $T/pipelines
shutdown_timeout = 2s
[store]
map_initial = 4MB
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
[accounts]
key_file = $T/accounts.key
[control]
url = mqtts://127.0.0.1:$broker_tls_port
ca_file = $P/ca.pem
cert_file = $P/$_c.pem
key_file = $P/$_c.key
trusted_keys = $T/ops.key.pub
group = plants
heartbeat = 1s
metrics_interval = 1s
log_level = warn
reconnect_min = 100ms
reconnect_max = 1s
CONF
	for _l in "$@"; do printf '%s\n' "$_l" >>"$_f"; done
}
conf "$T/outpost.conf" client-a
LOG=$T/outpostd.log

# cp_sub ARGS...: mosquitto_sub as the control plane (outpost-control, MQTT 5).
cp_sub() {
	mosquitto_sub -h 127.0.0.1 -p "$broker_tls_port" --cafile "$P/ca.pem" \
		--cert "$P/control.pem" --key "$P/control.key" -V mqttv5 "$@"
}
cp_pub() {
	mosquitto_pub -h 127.0.0.1 -p "$broker_tls_port" --cafile "$P/ca.pem" \
		--cert "$P/control.pem" --key "$P/control.key" -V mqttv5 "$@"
}
# retained LEAF: the agent's retained message on LEAF ("" if none in 2 s).
retained() { cp_sub -C 1 -W 2 -t "$ROOT/$1" 2>/dev/null; }
# reported_is JQ: the retained reported satisfies the jq filter JQ.
reported_is() { retained reported | jq -e "$1" >/dev/null 2>&1; }
status_is() { retained status | jq -e ".state == \"$1\"" >/dev/null 2>&1; }
# expect_reported WHAT JQ: waits (bounded) until reported satisfies JQ.
expect_reported() {
	checks=$((checks + 1))
	wait_until 10 reported_is "$2" ||
		fail "$1: reported is $(retained reported), expected $2"
}
# doc SEQ PIPELINES [AGENT]: a desired document's JSON.
doc() { printf '{"seq":%s,"agent":"%s","pipelines":[%s]}' "$1" "${3:-agent-a}" "$2"; }
# hello VERSION GREETING: a pipeline answering POST /hello with GREETING.
hello() {
	printf '{"name":"hello","version":"%s","trigger":{"type":"http","config":{"method":"POST","path":"/hello","mode":"sync"}},"steps":[{"type":"set","config":{"template":{"greeting":"%s"}}}]}' "$1" "$2"
}
# deploy KEY DOC: signs DOC with KEY and publishes it, retained.
deploy() {
	printf '%s' "$2" >"$T/doc.json"
	"$OUTPOSTCTL" sign --key "$1" "$T/doc.json" >"$T/env.json" || fail "sign $2"
	cp_pub -r -q 1 -t "$ROOT/desired" -f "$T/env.json" || fail "publish $2"
}
call_hello() { curl -s -X POST "http://127.0.0.1:$port/hello" -d '{}'; }
greets() { [ "$(call_hello | jq -r .greeting 2>/dev/null)" = "$1" ]; }
expect_greeting() {
	checks=$((checks + 1))
	wait_until 5 greets "$2" || fail "$1: POST /hello answered $(call_hello), expected greeting $2"
}

what="a config with a control link but no trusted keys is refused"
conf "$T/nokeys.conf" client-a
sed -i '/^trusted_keys/d' "$T/nokeys.conf"
run_ctl_out=$("$OUTPOSTD" --config "$T/nokeys.conf" --check-config 2>&1)
checks=$((checks + 1))
case "$run_ctl_out" in
*"[control] trusted_keys: not set, expected it with url"*) ;;
*) fail "$what: $run_ctl_out" ;;
esac

what="the agent connects: status online, reported seq 0"
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$LOG" || fail "$what: not ready: $(cat "$LOG")"
checks=$((checks + 1))
wait_until 10 status_is online || fail "$what: status is $(retained status)"
checks=$((checks + 1))
retained status | jq -e '.agent == "agent-a" and .group == "plants" and (.since | test("Z$")) and (.at | test("Z$")) and .heartbeatS == 1' >/dev/null ||
	fail "$what: status is $(retained status)"
expect_reported "$what" '.seq == 0 and .lastError == null and .pipelines == [] and .agent == "agent-a"'

what="deploy: seq 1 with a pipeline, applied and called over HTTP"
deploy "$T/ops.key" "$(doc 1 "$(hello 1 hi)")"
expect_reported "$what" '.seq == 1 and .lastError == null and .pipelines == [{"name":"hello","version":"1","origin":"deployed","status":"running"}]'
expect_greeting "$what" hi
cp "$T/env.json" "$T/env1.json"

what="update: seq 2 changes the pipeline"
deploy "$T/ops.key" "$(doc 2 "$(hello 2 hello)")"
expect_reported "$what" '.seq == 2 and .pipelines[0].version == "2"'
expect_greeting "$what" hello

what="a tampered envelope is refused; the running set goes on"
doc 3 "$(hello 3 forged)" >"$T/doc.json"
jq -c --arg p "$(base64 -w0 "$T/doc.json")" '.payload = $p' "$T/env.json" >"$T/tampered.json"
cp_pub -r -q 1 -t "$ROOT/desired" -f "$T/tampered.json"
expect_reported "$what" '.seq == 2 and .lastError.code == "SIGNATURE" and .lastError.seq == null'
expect_greeting "$what" hello

what="an envelope signed with a key the agent does not trust is refused"
deploy "$T/other.key" "$(doc 3 "$(hello 3 other)")"
expect_reported "$what" '.seq == 2 and .lastError.code == "KEY_UNKNOWN" and (.lastError.message | contains("other-1"))'
expect_greeting "$what" hello

what="a replayed envelope (seq 1) is refused"
cp_pub -r -q 1 -t "$ROOT/desired" -f "$T/env1.json"
expect_reported "$what" '.seq == 2 and .lastError.code == "REPLAY" and .lastError.seq == 1'
expect_greeting "$what" hello

what="a document for another agent is refused"
deploy "$T/ops.key" "$(doc 3 "$(hello 3 theirs)" agent-b)"
expect_reported "$what" '.seq == 2 and .lastError.code == "DOCUMENT" and (.lastError.message | contains("agent-b"))'

what="not an envelope at all is refused"
cp_pub -r -q 1 -t "$ROOT/desired" -m 'not json'
expect_reported "$what" '.seq == 2 and .lastError.code == "ENVELOPE"'

what="a set with a pipeline that does not load is refused whole"
deploy "$T/ops.key" "$(doc 3 "$(hello 3 new),{\"name\":\"broken\",\"version\":\"1\",\"steps\":[{\"type\":\"no-such-step\"}]}")"
expect_reported "$what" '.seq == 2 and .lastError.code == "PIPELINES" and (.lastError.message | contains("pipelines[1]")) and (.lastError.message | contains("no-such-step"))'
expect_greeting "$what" hello

what="two pipelines of one name are refused"
deploy "$T/ops.key" "$(doc 3 "$(hello 3 a),$(hello 4 b)")"
expect_reported "$what" '.seq == 2 and .lastError.code == "PIPELINES" and (.lastError.message | contains("hello"))'

what="a document whose sealed account does not open is refused whole"
checks=$((checks + 1))
retained status | jq -e '.sealKey | test("^[A-Za-z0-9+/]{43}=$")' >/dev/null ||
	fail "$what: status has no sealKey: $(retained status)"
deploy "$T/ops.key" '{"seq":3,"agent":"agent-a","pipelines":['"$(hello 3 sealed)"'],"accounts":{"erp":{"alg":"x25519-hkdf-sha256-aes256gcm","epk":"AAAA","nonce":"AAAA","ct":"AAAA"}}}'
expect_reported "$what" '.seq == 2 and .lastError.code == "ACCOUNTS" and (.lastError.message | startswith("accounts.erp: not a sealed box"))'
expect_greeting "$what" hello

what="a good document after refusals applies and clears lastError"
deploy "$T/ops.key" "$(doc 4 "$(hello 4 again)")"
expect_reported "$what" '.seq == 4 and .lastError == null'
expect_greeting "$what" again

what="a set whose triggers do not start is rolled back; the previous set goes on"
# OUTPOST_FAULTS: a set holding a pipeline named nightly cannot start its
# schedules.
nightly='{"name":"nightly","version":"1","trigger":{"type":"schedule","config":{"cron":"0 0 3 * * *"}},"steps":[{"type":"set","config":{"template":{}}}]}'
deploy "$T/ops.key" "$(doc 5 "$(hello 5 new),$nightly")"
expect_reported "$what" '.seq == 4 and .lastError.code == "START" and .lastError.seq == 5 and (.lastError.message | contains("previous set was restored")) and [.pipelines[] | "\(.name):\(.version):\(.status)"] == ["hello:4:running"]'
expect_greeting "$what" again

what="after a restart the set that did not start is tried again, not taken as applied"
stop_daemon
start_daemon "$T/outpost.conf" "$LOG.s" || fail "$what: not ready: $(cat "$LOG.s")"
expect_reported "$what" '.seq == 4 and .lastError.code == "START" and .lastError.seq == 5'
expect_greeting "$what" again

what="a local pipeline runs beside the deployed ones and is reported as local"
printf '{"name":"local","version":"7","steps":[{"type":"set","config":{"template":{}}}]}' >"$T/pipelines/local.json"
kill -HUP "$pid"
expect_reported "$what" '.seq == 4 and ([.pipelines[] | "\(.name):\(.origin)"] | sort) == ["hello:deployed","local:local"]'

what="remove: an empty set takes the deployed pipelines away"
deploy "$T/ops.key" "$(doc 6 "")"
expect_reported "$what" '.seq == 6 and ([.pipelines[].name] == ["local"])'
checks=$((checks + 1))
wait_until 5 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$port/hello)\" = 404 ]" ||
	fail "$what: POST /hello still answers"

what="a pipeline taken away stops taking events and drains its queue first"
http_peer_start hport || exit 1
gated() { curl -s "http://127.0.0.1:$hport/stats" | jq -r .gated; }
slow='{"name":"slow","version":"1","settings":{"concurrency":1},"trigger":{"type":"http","config":{"method":"POST","path":"/slow","mode":"async"}},"steps":[{"type":"rest","config":{"method":"GET","url":"http://127.0.0.1:'$hport'/gate","timeoutMs":60000}}]}'
deploy "$T/ops.key" "$(doc 7 "$slow")"
expect_reported "$what" '.seq == 7 and [.pipelines[].name] == ["local","slow"]'
for i in 1 2 3; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/slow" -d "{\"n\":$i}")
	checks=$((checks + 1))
	[ "$code" = 202 ] || fail "$what: POST /slow $i answered $code"
done
checks=$((checks + 1))
wait_until 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$hport/stats | jq -r .gated)\" = 1 ]" ||
	fail "$what: $(gated) executions at the gate, expected 1 (concurrency 1)"
deploy "$T/ops.key" "$(doc 8 "")"
expect_reported "$what" '.seq == 8 and (.pipelines | map(select(.name == "slow")) == [{"name":"slow","version":"1","origin":"deployed","status":"draining"}])'
checks=$((checks + 1))
got=$(curl -s "http://127.0.0.1:$admin/api/pipelines" |
	jq -c '[.[] | select(.name == "slow") | .status, .queued, .running]')
[ "$got" = '["draining",2,1]' ] || fail "$what: the admin API lists slow as $got, not [\"draining\",2,1]"
checks=$((checks + 1))
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/slow" -d '{}')
[ "$code" = 404 ] || fail "$what: POST /slow answered $code after the pipeline left"
curl -s "http://127.0.0.1:$hport/open" >/dev/null
expect_reported "$what" '.seq == 8 and [.pipelines[].name] == ["local"]'
checks=$((checks + 1))
[ "$(gated)" = 3 ] || fail "$what: $(gated) of the 3 queued events ran"

what="execution records, logs and metrics go up on out/*"
# watch ID: a watcher with a persistent session (ID) on the agent's out/#,
# its lines ("topic payload") appended to $T/ID.out; returns once it is
# subscribed (a retained probe of its own arrived).
watch() {
	cp_pub -r -q 1 -t "outpost/v1/_probe/$1" -m "probe-$1"
	cp_sub -c -i "$1" -q 1 -v -W 300 -t "$ROOT/out/#" -t "outpost/v1/_probe/$1" >>"$T/$1.out" 2>>"$T/$1.err" &
	watch_pid=$!
	wait_until 10 grep -q "^outpost/v1/_probe/$1 probe-$1" "$T/$1.out" || fail "$what: watcher $1 not subscribed: $(cat "$T/$1.err")"
}
watch_pid=""
unwatch() {
	[ -n "$watch_pid" ] || return 0
	kill "$watch_pid" 2>/dev/null
	wait "$watch_pid" 2>/dev/null
	watch_pid=""
}
at_exit unwatch
# records ID STREAM: the records of STREAM the watcher saw, one JSON per line.
records() { grep -a "^$ROOT/out/$2 " "$T/$1.out" | cut -d' ' -f2- | jq -c '.records[]'; }
fast='{"name":"fast","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/fast","mode":"async"}},"steps":[{"type":"set","config":{"template":{"n":"{{ message.n }}"}}}]}'
fails='{"name":"fails","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/fails","mode":"async"}},"steps":[{"type":"throw-error","config":{"code":"NOPE","message":"on purpose"}}]}'
deploy "$T/ops.key" "$(doc 9 "$fast,$fails")"
expect_reported "$what" '.seq == 9'
watch w1
# post FROM TO: async events n = FROM..TO to /fast.
post() {
	_n=$1
	while [ "$_n" -le "$2" ]; do
		curl -s -o /dev/null -X POST "http://127.0.0.1:$port/fast" -d "{\"n\":$_n}"
		_n=$((_n + 1))
	done
}
post 1 20
curl -s -o /dev/null -X POST "http://127.0.0.1:$port/fails" -d '{}'
have_execs() { [ "$(records w1 executions | jq -s 'map(select(.pipeline == "fast")) | length')" -ge "$1" ]; }
checks=$((checks + 1))
wait_until 10 have_execs 20 || fail "$what: $(records w1 executions | wc -l) execution records arrived, expected 20 of fast"
checks=$((checks + 1))
records w1 executions | jq -s -e 'any(.[]; .pipeline == "fails" and .status == "error" and (.error | contains("NOPE")))' >/dev/null ||
	fail "$what: no error record of fails: $(records w1 executions | tail -n 3)"
checks=$((checks + 1))
wait_until 10 sh -c "grep -a '^$ROOT/out/logs ' '$T/w1.out' | cut -d' ' -f2- | jq -c '.records[]' | grep -q '\"level\":\"warn\"'" ||
	fail "$what: no warn log record arrived: $(grep -a out/logs "$T/w1.out" | tail -n 2)"
checks=$((checks + 1))
wait_until 10 sh -c "grep -a '^$ROOT/out/metrics ' '$T/w1.out' | cut -d' ' -f2- | jq -e '.records[] | .samples | keys | any(startswith(\"outpost_executions_total\"))' >/dev/null" ||
	fail "$what: no metrics record with outpost_executions_total arrived"
checks=$((checks + 1))
records w1 executions | jq -s -e 'map(.seq) == [range(.[0].seq; .[0].seq + length)]' >/dev/null ||
	fail "$what: execution record seqs are not in order without gaps: $(records w1 executions | jq -c .seq | tr '\n' ' ')"

what="the broker stops under load and comes back: no execution record lost, order kept"
unwatch
stop_broker
post 21 320
executed() { [ "$(curl -s "http://127.0.0.1:$admin/metrics" | awk '$1 ~ /^outpost_executions_total\{pipeline="fast",status="success"\}/ { print $2 }')" = "$1" ]; }
checks=$((checks + 1))
wait_until 30 executed 320 || fail "$what: not all 320 events ran while the broker was down"
restart_broker || exit 1
watch w1
checks=$((checks + 1))
wait_until 30 have_execs 320 ||
	fail "$what: $(records w1 executions | jq -s 'map(select(.pipeline == "fast")) | length') of 320 fast records arrived"
checks=$((checks + 1))
# As a control plane reads them: keep a record only when its seq is above
# the highest seen (a resend after a reconnect repeats some); what is kept
# must be 1, 2, 3, ... with no gap.
records w1 executions | jq -s -e '.[0].seq as $first | reduce .[] as $r ({max: 0, kept: []}; if $r.seq > .max then .kept += [$r.seq] | .max = $r.seq else . end) | .kept == [range($first; .max + 1)]' >/dev/null ||
	fail "$what: records lost or out of order: $(records w1 executions | jq -c .seq | tr '\n' ' ' | head -c 2000)"
checks=$((checks + 1))
grep -a "^$ROOT/out/executions " "$T/w1.out" | tail -n 1 | cut -d' ' -f2- | jq -e '.dropped == 0' >/dev/null ||
	fail "$what: records were dropped"
unwatch

what="a clean stop says offline"
deploy "$T/ops.key" "$(doc 10 "$(hello 9 back)")"
expect_reported "$what" '.seq == 10'
stop_daemon
checks=$((checks + 1))
wait_until 5 status_is offline || fail "$what: status is $(retained status)"

what="restarted without a broker, the agent runs the applied set"
stop_broker
start_daemon "$T/outpost.conf" "$LOG.2" || fail "$what: not ready: $(cat "$LOG.2")"
expect_greeting "$what" back
checks=$((checks + 1))
wait_until 10 grep -q "cannot connect to the control plane" "$LOG.2" ||
	fail "$what: no connect failure logged: $(cat "$LOG.2")"

what="the broker comes back: the agent reconnects and reports seq 10"
start_acl_broker "$T/persist.conf" || exit 1
conf "$T/outpost.conf" client-a
stop_daemon
start_daemon "$T/outpost.conf" "$LOG.3" || fail "$what: not ready: $(cat "$LOG.3")"
checks=$((checks + 1))
wait_until 10 status_is online || fail "$what: status is $(retained status)"
expect_reported "$what" '.seq == 10 and .lastError == null'

what="the agent vanishes: the broker publishes its Last Will (offline)"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
pid=""
checks=$((checks + 1))
wait_until 10 status_is offline || fail "$what: status is $(retained status)"

what="an agent with another agent's certificate reads and writes none of its topics"
conf "$T/other.conf" client-a
sed -i "s|^id = agent-a|id = agent-b|; s|^data_dir = .*|data_dir = $T/data-b|" "$T/other.conf"
cp_pub -r -q 1 -t outpost/v1/agent-b/desired -f "$T/env.json"
start_daemon "$T/other.conf" "$LOG.b" || fail "$what: not ready: $(cat "$LOG.b")"
checks=$((checks + 1))
wait_until 10 grep -q "connected to the control plane" "$LOG.b" || fail "$what: $(cat "$LOG.b")"
# Its status and reported are refused; the desired of agent-b never reaches it.
checks=$((checks + 1))
[ -z "$(cp_sub -C 1 -W 2 -t outpost/v1/agent-b/status 2>/dev/null)" ] ||
	fail "$what: agent-b's status was published with agent-a's certificate"
checks=$((checks + 1))
grep -q "desired document" "$LOG.b" && fail "$what: it handled a desired document: $(grep desired "$LOG.b")"
# ... and it says why, instead of looking connected and fine.
checks=$((checks + 1))
wait_until 10 grep -q "the broker refused the publish to outpost/v1/agent-b/status: Not authorized; does its ACL let this client (its certificate) use the topics of agent agent-b?" "$LOG.b" ||
	fail "$what: no refusal logged: $(cat "$LOG.b")"
stop_daemon

what="an agent whose certificate the broker does not trust cannot connect"
conf "$T/rogue.conf" rogue
sed -i "s|^data_dir = .*|data_dir = $T/data-rogue|" "$T/rogue.conf"
start_daemon "$T/rogue.conf" "$LOG.4" || fail "$what: not ready: $(cat "$LOG.4")"
checks=$((checks + 1))
wait_until 10 grep -q "cannot connect to the control plane" "$LOG.4" ||
	fail "$what: $(cat "$LOG.4")"
checks=$((checks + 1))
status_is online && fail "$what: status says online"
stop_daemon

[ -n "${KEEP_LOGS:-}" ] && cp -r "$T" "$KEEP_LOGS"
finish
