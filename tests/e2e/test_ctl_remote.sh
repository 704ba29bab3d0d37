# outpostctl's remote commands against a real outpostd and a real mosquitto
# over mutual TLS (broker.sh's throwaway PKI): invoke, the admin commands
# with --agent, logs --follow and rollback, all through the broker alone
# (signed commands on cmd/<id>, answers on cmd-result/<id>, the out/logs
# stream, retained desired and reported). outpostctl speaks as the control
# plane (client-b), the agent as agent-a (client-a). Checked: invoke
# returns the pipeline's output, and fails (exit 1) with PIPELINE_NOT_FOUND,
# with the execution's code, and for an untrusted key (KEY_UNKNOWN); no
# answer in time is exit 1; hand-made commands (outpostctl sign,
# mosquitto_pub with response topic and correlation data) that expired or
# are replayed are refused, the correlation data echoed; executions,
# execution, pipelines, dead and replay with --agent answer as the local
# admin API does; logs --follow prints the warning of a dead letter and the
# audit lines of commands, filters by level, skips a record sent twice and
# ends cleanly on SIGINT, SIGTERM and --for; rollback brings back the
# previous document's pipelines with a higher seq, and exits 3 for a seq
# not in the agent's history; sign takes command documents.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/broker.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

pid=""
at_exit stop_daemon
# Followers (outpostctl logs) still running at exit.
followers=""
stop_followers() {
	for _f in $followers; do
		kill -TERM "$_f" 2>/dev/null && wait "$_f" 2>/dev/null
	done
	followers=""
}
at_exit stop_followers

start_broker || exit 1
P=$T/pki
ROOT=outpost/v1/agent-a
cd "$T" || exit 1

"$OUTPOSTCTL" keygen ops.key --kid ops-1 >/dev/null || fail "keygen ops"
"$OUTPOSTCTL" keygen other.key --kid other-1 >/dev/null || fail "keygen other"
mkdir -p "$T/pipelines"
cat >"$T/outpost.conf" <<CONF
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
cert_file = $P/client-a.pem
key_file = $P/client-a.key
trusted_keys = $T/ops.key.pub
heartbeat = 1s
metrics_interval = 1s
log_level = warn
reconnect_min = 100ms
reconnect_max = 1s
CONF

# outpostctl as the control plane: client-b.
export OUTPOST_BROKER="mqtts://127.0.0.1:$broker_tls_port"
export OUTPOST_CA=$P/ca.pem OUTPOST_CERT=$P/client-b.pem OUTPOST_KEY=$P/client-b.key
unset OUTPOST_PREFIX OUTPOST_ADMIN
SIGN=(--sign-key "$T/ops.key")

# cp_sub, cp_pub ARGS...: mosquitto as the control plane (client-b, MQTT 5).
cp_sub() {
	mosquitto_sub -h 127.0.0.1 -p "$broker_tls_port" --cafile "$P/ca.pem" \
		--cert "$P/client-b.pem" --key "$P/client-b.key" -V mqttv5 "$@"
}
cp_pub() {
	mosquitto_pub -h 127.0.0.1 -p "$broker_tls_port" --cafile "$P/ca.pem" \
		--cert "$P/client-b.pem" --key "$P/client-b.key" -V mqttv5 "$@"
}
# agent_json: outpostctl status --agent agent-a --json, agent-a's entry.
agent_json() { "$OUTPOSTCTL" status --agent agent-a --json 2>/dev/null | jq -c '.["agent-a"]'; }
agent_is() { agent_json | jq -e "$1" >/dev/null 2>&1; }

# greet VERSION WORD: a pipeline answering {"greeting": "WORD <name>"}.
greet() {
	pipeline greet "{\"name\":\"greet\",\"version\":\"$1\",\"steps\":[{\"type\":\"set\",\"config\":{\"template\":{\"greeting\":\"$2 {{ message.name }}\"}}}]}"
}
pipeline fails '{"name":"fails","version":"1","steps":[{"type":"throw-error","config":{"code":"NOPE","message":"on purpose"}}]}'
pipeline dies '{"name":"dies","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/dies","mode":"async"}},"steps":[{"type":"throw-error","config":{"code":"DEAD","message":"into the dead letters"}}]}'

what="the agent connects"
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$T/outpostd.log" || fail "$what: not ready: $(cat "$T/outpostd.log")"
checks=$((checks + 1))
wait_until 10 agent_is '.status.state == "online" and .reported.seq == 0' ||
	fail "$what: $(agent_json)"

what="deploy v1 with outpostctl deploy"
greet 1 hello
run_ctl deploy greet.json fails.json dies.json --agent agent-a "${SIGN[@]}" --timeout 10
expect_rc 0
check "applied: $out" sh -c "printf '%s' '$out' | grep -Eq '^agent agent-a: seq 1 applied \(3 pipelines\)'"

what="invoke: the pipeline's output, from --input FILE and from stdin"
printf '{"name":"world"}' >in.json
run_ctl invoke --agent agent-a greet --input in.json "${SIGN[@]}"
expect_rc 0
expect_json . '{"greeting":"hello world"}'
out=$(printf '{"name":"pipe"}' | "$OUTPOSTCTL" invoke greet --agent agent-a --input - "${SIGN[@]}" --json --timeout-ms 5000)
rc=$?
expect_rc 0
expect_json '[.ok, .agent, .result.output.greeting, (.id | test("^[0-9a-f]{32}$"))]' '[true,"agent-a","hello pipe",true]'
run_ctl invoke --agent agent-a greet "${SIGN[@]}"
expect_rc 0
expect_json . '{"greeting":"hello "}'

what="invoke: an unknown pipeline"
run_ctl invoke --agent agent-a nosuch "${SIGN[@]}"
expect_rc 1
expect_err_has 'outpostctl invoke: agent agent-a: PIPELINE_NOT_FOUND: '

what="invoke: a failing pipeline exits 1 with the execution's code, step and class"
run_ctl invoke --agent agent-a fails "${SIGN[@]}"
expect_rc 1
expect_err_has 'outpostctl invoke: agent agent-a: EXECUTION_FAILED: on purpose (code NOPE, step steps[0]'
expect_err_has 'class '
check "nothing on stdout: $out" test -z "$out"

what="invoke: a key the agent does not trust"
run_ctl invoke --agent agent-a greet --sign-key other.key
expect_rc 1
expect_err_has 'agent agent-a: KEY_UNKNOWN: '
expect_err_has 'other-1'

what="invoke: bad usage and unreadable input are exit 2"
run_ctl invoke --agent agent-a greet
expect_rc 2
expect_err_has '--sign-key KEYFILE is needed'
run_ctl invoke greet "${SIGN[@]}"
expect_rc 2
expect_err_has 'give --agent ID'
run_ctl invoke --agent agent-a "${SIGN[@]}"
expect_rc 2
run_ctl invoke --agent agent-a greet --input none.json "${SIGN[@]}"
expect_rc 2
expect_err_has 'none.json'
printf 'not json' >bad.json
run_ctl invoke --agent agent-a greet --input bad.json "${SIGN[@]}"
expect_rc 2
expect_err_has 'not JSON'
run_ctl invoke --agent agent-a greet --timeout-ms 300001 "${SIGN[@]}"
expect_rc 2
run_ctl invoke --agent agent-a 'no/slash' "${SIGN[@]}"
expect_rc 2

what="no answer in time: exit 1, within the timeout"
t0=$(date +%s%N)
run_ctl executions --agent nobody "${SIGN[@]}" --timeout 1
t1=$(date +%s%N)
expect_rc 1
expect_err_has 'outpostctl executions: agent nobody: no answer to command '
check "gave up after $(((t1 - t0) / 1000000)) ms" test $(((t1 - t0) / 1000000)) -lt 5000

# answers ID COUNT: a watcher of cmd-result/ID that ends after COUNT
# answers (or 20 s); returns once it is subscribed (its retained probe
# came), $ans_pid set. Lines "CORRELATION PAYLOAD" in $T/ID.ans.
answers() {
	cp_pub -r -q 1 -t "probe/$1" -m "probe-$1" || fail "probe $1"
	cp_sub -q 1 -C $(($2 + 1)) -W 20 -F '%D %p' -t "$ROOT/cmd-result/$1" -t "probe/$1" \
		>"$T/$1.ans" 2>"$T/$1.err" &
	ans_pid=$!
	wait_until 10 grep -q "probe-$1" "$T/$1.ans" || fail "$what: watcher of $1 not subscribed: $(cat "$T/$1.err")"
}
# command ID EXPIRES_MS OP: signs the command document and publishes it to
# cmd/ID with the response topic cmd-result/ID and correlation data corr-ID.
command() {
	printf '{"id":"%s","agent":"agent-a","expires":%s,"op":"%s"}' "$1" "$2" "$3" >"$T/cmd.json"
	"$OUTPOSTCTL" sign --key ops.key "$T/cmd.json" >"$T/cmd.env" || fail "sign command $1"
	cp_pub -q 1 -t "$ROOT/cmd/$1" -f "$T/cmd.env" \
		-D publish response-topic "$ROOT/cmd-result/$1" \
		-D publish correlation-data "corr-$1" || fail "publish command $1"
}
# answer ID N: the N-th answer's payload.
answer() { grep -v "probe-$1" "$T/$1.ans" | sed -n "$2p" | cut -d' ' -f2-; }

what="sign takes a command document; an expired command is refused (EXPIRED)"
answers exp1 1
command exp1 $(($(date +%s%3N) - 1000)) pipelines
wait "$ans_pid" || fail "$what: no answer: $(cat "$T/exp1.ans" "$T/exp1.err")"
checks=$((checks + 1))
answer exp1 1 | jq -e '.ok == false and .id == "exp1" and .error.code == "EXPIRED"' >/dev/null ||
	fail "$what: $(answer exp1 1)"
checks=$((checks + 1))
grep -q '^corr-exp1 ' "$T/exp1.ans" || fail "$what: the correlation data was not echoed: $(cat "$T/exp1.ans")"

what="a command replayed is refused (REPLAY)"
answers rep1 2
command rep1 $(($(date +%s%3N) + 120000)) pipelines
cp_pub -q 1 -t "$ROOT/cmd/rep1" -f "$T/cmd.env" -D publish response-topic "$ROOT/cmd-result/rep1" \
	-D publish correlation-data corr-rep1 || fail "publish again"
wait "$ans_pid" || fail "$what: not two answers: $(cat "$T/rep1.ans" "$T/rep1.err")"
checks=$((checks + 1))
[ "$(answer rep1 1 | jq -c '[.ok, (.result | map(.name) | sort)]')" = '[true,["dies","fails","greet"]]' ] ||
	fail "$what: first answer $(answer rep1 1)"
checks=$((checks + 1))
answer rep1 2 | jq -e '.ok == false and .error.code == "REPLAY"' >/dev/null ||
	fail "$what: second answer $(answer rep1 2)"

what="sign still refuses a document that is neither"
printf '{"op":"pipelines"}' >neither.json
run_ctl sign --key ops.key neither.json
expect_rc 2
expect_err_has 'the document needs "seq"'
expect_err_has '"id", "op" and "expires" (a command)'

what="executions --agent: the local admin command's table, through the broker"
run_ctl executions --agent agent-a "${SIGN[@]}"
expect_rc 0
check "header: $(printf '%s' "$out" | head -n 1)" sh -c "printf '%s\n' \"\$1\" | head -n 1 | grep -Eq '^ID +STARTED \(UTC\) +PIPELINE +STATUS +ATTEMPT +DURATION +ERROR$'" - "$out"
check "a greet success row" sh -c "printf '%s\n' \"\$1\" | grep -Eq ' greet +success +1 +[0-9]+ ms'" - "$out"
check "a fails error row" sh -c "printf '%s\n' \"\$1\" | grep -Eq ' fails +error +1 .*NOPE'" - "$out"
run_ctl executions --agent agent-a "${SIGN[@]}" --json
expect_rc 0
expect_json '[.[] | select(.pipeline == "greet")] | length' '3'
remote_ids=$(printf '%s' "$out" | jq -c '[.[].id]')
run_ctl executions --admin "127.0.0.1:$admin" --json
expect_rc 0
expect_json '[.[].id]' "$remote_ids"
run_ctl executions --agent agent-a "${SIGN[@]}" --pipeline fails --limit 1 --json
expect_rc 0
expect_json '[length, .[0].pipeline, .[0].status]' '[1,"fails","error"]'
fails_id=$(printf '%s' "$out" | jq -r '.[0].id')
run_ctl execution --agent agent-a "${SIGN[@]}" "$fails_id"
expect_rc 0
check "execution --agent shows it: $out" sh -c "printf '%s\n' \"\$1\" | grep -qx \"id: *\$2\"" - "$out" "$fails_id"
run_ctl execution --agent agent-a "${SIGN[@]}" no-such-execution
expect_rc 3
run_ctl executions --agent agent-a
expect_rc 2
expect_err_has '--agent needs --sign-key'
run_ctl executions "${SIGN[@]}"
expect_rc 2
expect_err_has '--sign-key is for --agent ID'
run_ctl executions --agent agent-a --admin 127.0.0.1:1 "${SIGN[@]}"
expect_rc 2

# follow NAME ARGS...: outpostctl logs --agent agent-a --follow ARGS in
# the background, stdout in $T/NAME.log, stderr in $T/NAME.lerr; returns
# once it is subscribed, $fpid set.
follow() {
	_n=$1
	shift
	"$OUTPOSTCTL" logs --agent "${LOGS_AGENT:-agent-a}" --follow "$@" >"$T/$_n.log" 2>"$T/$_n.lerr" &
	fpid=$!
	followers="$followers $fpid"
	wait_until 10 grep -q 'outpostctl logs: following ' "$T/$_n.lerr" ||
		fail "$what: $_n not following: $(cat "$T/$_n.lerr")"
}
# end_follower PID SIGNAL: signals it and waits; sets $rc.
end_follower() {
	kill "-$2" "$1"
	wait "$1"
	rc=$?
	followers=$(printf '%s' "$followers" | sed "s/ $1\b//")
}

what="logs --follow: a dead letter's warning and the audit line of a command"
follow all --for 60
all_pid=$fpid
follow warn --level warn --json --for 60
warn_pid=$fpid
run_ctl pipelines --agent agent-a "${SIGN[@]}"
expect_rc 0
check "pipelines --agent lists dies: $out" sh -c "printf '%s\n' \"\$1\" | grep -Eq '^dies +1 +running +http POST /dies \(async\)'" - "$out"
curl -s -o /dev/null -X POST "http://127.0.0.1:$port/dies" -H 'content-type: application/json' -d '{"n":1}'
checks=$((checks + 1))
wait_until 15 grep -Eq '^[0-9T:.-]+Z warn runtime: dies: execution .*dead-lettered' "$T/all.log" ||
	fail "$what: no dead-letter warning: $(cat "$T/all.log" "$T/all.lerr")"
checks=$((checks + 1))
grep -Eq '^[0-9T:.-]+Z info audit: command [0-9a-f]{32} \(pipelines\): ok$' "$T/all.log" ||
	fail "$what: no audit line of the pipelines command: $(cat "$T/all.log")"
checks=$((checks + 1))
wait_until 15 sh -c "jq -e 'select(.level == \"warn\" and (.message | contains(\"dead-lettered\")))' '$T/warn.log' >/dev/null 2>&1" ||
	fail "$what: --level warn --json: no warning: $(cat "$T/warn.log" "$T/warn.lerr")"
checks=$((checks + 1))
jq -s -e 'all(.[]; .level == "warn" or .level == "error") and all(.[]; .seq > 0 and .module != null)' "$T/warn.log" >/dev/null ||
	fail "$what: --level warn let through: $(cat "$T/warn.log")"
end_follower "$all_pid" INT
expect_rc 0
end_follower "$warn_pid" TERM
expect_rc 0
check "no record twice" sh -c "[ \"\$(sort '$T/all.log' | uniq -d)\" = '' ]"

what="logs: --for ends it (exit 0); without --follow exit 2"
run_ctl logs --agent agent-a --follow --for 0.5
expect_rc 0
run_ctl logs --agent agent-a
expect_rc 2
expect_err_has 'live stream'
expect_err_has '--follow'
run_ctl logs --agent agent-a --follow --level loud
expect_rc 2

what="logs: a record sent again (after a reconnect) is printed once"
LOGS_AGENT=fake-a follow fake --for 60
fake_pid=$fpid
batch() { cp_pub -q 1 -t outpost/v1/fake-a/out/logs -m "{\"agent\":\"fake-a\",\"stream\":\"logs\",\"dropped\":0,\"records\":[$1]}"; }
rec() { printf '{"seq":%s,"at":"2026-01-01T00:00:0%sZ","level":"warn","module":"m","message":"r%s"}' "$1" "$1" "$1"; }
batch "$(rec 1),$(rec 2)"
batch "$(rec 2),$(rec 3)"
batch "$(rec 3)"
batch "$(rec 4)"
checks=$((checks + 1))
wait_until 10 grep -q ' r4$' "$T/fake.log" || fail "$what: $(cat "$T/fake.log" "$T/fake.lerr")"
end_follower "$fake_pid" TERM
expect_rc 0
check "each once, in order: $(tr '\n' '|' <"$T/fake.log")" test "$(cut -d' ' -f4 "$T/fake.log" | tr '\n' ' ')" = "r1 r2 r3 r4 "
check "the line's form" test "$(head -n 1 "$T/fake.log")" = "2026-01-01T00:00:01Z warn m: r1"

what="dead --agent, and replay of a dead letter"
dead_event() {
	"$OUTPOSTCTL" dead --agent agent-a "${SIGN[@]}" --pipeline dies --json 2>/dev/null | jq -r '.[0].eventId // empty'
}
checks=$((checks + 1))
wait_until 10 sh -c "[ -n \"\$(\"\$OUTPOSTCTL\" dead --agent agent-a --sign-key '$T/ops.key' --pipeline dies --json 2>/dev/null | jq -r '.[0].eventId // empty')\" ]" ||
	fail "$what: no dead letter of dies"
ev=$(dead_event)
run_ctl dead --agent agent-a "${SIGN[@]}"
expect_rc 0
check "the dead letters' table lists $ev" sh -c "printf '%s\n' \"\$1\" | grep -Eq \"^\$2 +.* dies +1 \"" - "$out" "$ev"
run_ctl dead --agent agent-a "${SIGN[@]}" "$ev"
expect_rc 0
check "one dead letter with its payload: $out" sh -c "printf '%s\n' \"\$1\" | grep -q '^    \"n\": 1$'" - "$out"
run_ctl replay --agent agent-a "${SIGN[@]}" "$ev"
expect_rc 0
check "replayed: $out" test "$out" = "replayed $ev: queued again as attempt 1"
dies_runs() { [ "$("$OUTPOSTCTL" executions --agent agent-a "${SIGN[@]}" --pipeline dies --json 2>/dev/null | jq length)" = "$1" ]; }
checks=$((checks + 1))
wait_until 10 dies_runs 2 || fail "$what: the replayed event did not run again"
run_ctl replay --agent agent-a "${SIGN[@]}" no-such-event
expect_rc 3
expect_err_has 'agent agent-a: NOT_FOUND: '

what="rollback: v2 deployed, then the previous document (v1) back with a higher seq"
greet 2 hi
run_ctl deploy greet.json fails.json dies.json --agent agent-a "${SIGN[@]}" --timeout 10
expect_rc 0
run_ctl invoke --agent agent-a greet --input in.json "${SIGN[@]}"
expect_json .greeting '"hi world"'
run_ctl rollback --agent agent-a "${SIGN[@]}" --timeout 10
expect_rc 0
check "the line: $out" sh -c "printf '%s' '$out' | grep -Eq '^agent agent-a: rolled back to seq 1 as seq 3, applied \(3 pipelines\) in [0-9]+\.[0-9]{2} s$'"
checks=$((checks + 1))
agent_is '.reported.seq == 3 and (.reported.pipelines | map(select(.name == "greet"))[0].version == "1")' ||
	fail "$what: reported is $(agent_json | jq -c .reported)"
run_ctl invoke --agent agent-a greet --input in.json "${SIGN[@]}"
expect_json .greeting '"hello world"'

what="rollback --to: a seq of the history, and one not in it (exit 3)"
run_ctl rollback --agent agent-a --to 2 "${SIGN[@]}" --json --timeout 10
expect_rc 0
expect_json '[.[] | [.agent, .seq, .from, .result, .error]]' '[["agent-a",4,2,"applied",null]]'
run_ctl invoke --agent agent-a greet --input in.json "${SIGN[@]}"
expect_json .greeting '"hi world"'
run_ctl rollback --agent agent-a --to 99 "${SIGN[@]}"
expect_rc 3
expect_err_has 'agent agent-a: seq 99 is not in its history'
expect_err_has 'seqs 4, 3, 2, 1'
checks=$((checks + 1))
agent_is '.reported.seq == 4' || fail "$what: something was deployed: $(agent_json | jq -c .reported)"
run_ctl rollback --agent agent-a --to 0 "${SIGN[@]}"
expect_rc 2
run_ctl rollback "${SIGN[@]}"
expect_rc 2

what="account put: an account sealed to the agent lands in its vault; the pipelines stay"
printf '{"type":"basic","username":"erp-user","password":"Sup3r-s3cret"}' >"$T/acct.json"
seq_before=$(agent_json | jq .reported.seq)
run_ctl account put --agent agent-a erp --file "$T/acct.json" "${SIGN[@]}" --timeout 10
expect_rc 0
checks=$((checks + 1))
agent_is ".reported.seq == $((seq_before + 1)) and .reported.lastError == null and (.reported.pipelines | map(.name) | index(\"greet\") != null)" ||
	fail "$what: reported is $(agent_json | jq -c .reported)"
run_ctl account list --json --config "$T/outpost.conf"
expect_json '[.[] | select(.name == "erp") | .type]' '["basic"]'
checks=$((checks + 1))
cp_sub -C 1 -W 5 -t "$ROOT/desired" | jq -r .payload | base64 -d >"$T/desired.doc"
grep -q "Sup3r-s3cret" "$T/desired.doc" && fail "$what: the secret travels in the clear"
checks=$((checks + 1))
jq -e '.accounts.erp.alg == "x25519-hkdf-sha256-aes256gcm"' "$T/desired.doc" >/dev/null ||
	fail "$what: no sealed account in the document: $(head -c 300 "$T/desired.doc")"
printf '{"type":"basic","username":"u"}' >"$T/bad-acct.json"
run_ctl account put --agent agent-a erp --file "$T/bad-acct.json" "${SIGN[@]}"
expect_rc 2
expect_err_has "password"
run_ctl account put --agent agent-a "../x" --file "$T/acct.json" "${SIGN[@]}"
expect_rc 2

what="deploy signed with a key the agent does not trust: reported refused, not lost"
# The agent cannot read such an envelope's seq; it names the envelope by its
# digest, which outpostctl knows.
"$OUTPOSTCTL" keygen "$T/stranger.key" --kid stranger-1 >/dev/null || fail "keygen stranger"
run_ctl deploy greet.json --agent agent-a --sign-key "$T/stranger.key" --timeout 10 --json
expect_rc 1
expect_json '.[0] | [.result, .error.code, (.error.message | contains("stranger-1"))]' '["refused","KEY_UNKNOWN",true]'

[ -n "${KEEP_LOGS:-}" ] && cp -r "$T" "$KEEP_LOGS"
finish
