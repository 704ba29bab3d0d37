# outpostctl deploy and status against a real mosquitto over mutual TLS
# (broker.sh's throwaway PKI). The agents are played with mosquitto_pub and
# mosquitto_sub on the plain port: retained status and reported messages,
# and a report published once the desired envelope arrives. Checked: the
# published envelope verifies and holds the agent, seq and pipelines; seq
# follows the retained desired, reported and lastError; --group targets
# only the group; invalid pipelines, missing options, plain MQTT, an
# unreachable or untrusted broker are refused; --wait reports applied,
# refused and timeout; status shows the fleet and one agent, survives
# garbage on the wire, and exits 3 for an unknown agent; a fleet prefix;
# a PUBACK refusal (not authorized) is an error.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/broker.sh"

start_broker || exit 1
P=$T/pki
use_broker() {
	export OUTPOST_BROKER="mqtts://127.0.0.1:$broker_tls_port"
}
use_broker
export OUTPOST_CA=$P/ca.pem OUTPOST_CERT=$P/client-a.pem OUTPOST_KEY=$P/client-a.key
unset OUTPOST_PREFIX
cd "$T" || exit 1

# pub TOPIC PAYLOAD: a retained QoS 1 message, as an agent publishes it.
pub() {
	mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -r -t "$1" -m "$2" ||
		fail "mosquitto_pub $1"
}
# retained TOPIC: prints the retained message of TOPIC (the test makes sure
# there is one, so this returns at once).
retained() {
	mosquitto_sub -h 127.0.0.1 -p "$broker_port" -t "$1" -C 1 -W 5
}
# desired_doc AGENT: the document of AGENT's retained desired envelope, as
# outpostctl verify opens it with the deploy key; sets $out, $rc.
desired_doc() {
	retained "outpost/v1/$1/desired" >"$T/env.json"
	run_ctl verify --pub ops.key.pub "$T/env.json"
}
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
# status AGENT GROUP STATE AT: a status message.
status_msg() {
	printf '{"state":"%s","agent":"%s","group":"%s","version":"0.1.0","since":"%s","at":"%s"}' \
		"$3" "$1" "$2" "$4" "$4"
}

"$OUTPOSTCTL" keygen ops.key >/dev/null || fail "keygen"
"$OUTPOSTCTL" keygen other.key >/dev/null || fail "keygen other"
pipeline orders '{"name":"orders","version":"3","steps":[{"type":"log","config":{"message":"o"}}]}'
pipeline audit '{"name":"audit","version":"1","steps":[{"type":"log","config":{"message":"a"}}]}'
pipeline orders-copy '{"name":"orders","version":"4","steps":[{"type":"log","config":{"message":"c"}}]}'
pipeline bad '{"name":"bad","version":"1","steps":[{"type":"no-such-step","config":{}}]}'

# The fleet: a1 (group g1, online), a2 (group g2, heartbeat long ago, a
# failed pipeline, a refused seq 4), a3 (offline, group g1 in its reported).
pub outpost/v1/a1/status "$(status_msg a1 g1 online "$now")"
pub outpost/v1/a1/reported '{"agent":"a1","group":"g1","version":"0.1.0","seq":0,"pipelines":[{"name":"local-demo","version":"1","origin":"local","status":"running"}],"lastError":null}'
pub outpost/v1/a2/status "$(status_msg a2 g2 online 2020-01-01T00:00:00.000Z)"
pub outpost/v1/a2/reported '{"agent":"a2","group":"g2","version":"0.1.0","seq":5,"appliedAt":"2020-01-01T00:00:00.000Z","pipelines":[{"name":"orders","version":"3","origin":"deployed","status":"failed"},{"name":"x","version":"1","origin":"local","status":"running"}],"lastError":{"seq":4,"at":"2020-01-01T00:00:01.000Z","code":"SIGNATURE","message":"envelope kid k: the signature does not verify"}}'
pub outpost/v1/a3/status '{"state":"offline","agent":"a3"}'
pub outpost/v1/a3/reported '{"agent":"a3","group":"g1","version":"0.1.0","seq":0,"pipelines":[],"lastError":null}'

what="deploy --no-wait: a signed envelope, retained, with agent, seq 1 and the pipelines"
run_ctl deploy orders.json audit.json --agent a1 --sign-key ops.key --no-wait
expect_rc 0
check "the line says published: $out" test "$out" = "agent a1: seq 1 published (2 pipelines)"
desired_doc a1
expect_rc 0
expect_json '[.seq, .agent, [.pipelines[].name], .pipelines[0].version, (.issued | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))]' '[1,"a1",["orders","audit"],"3",true]'
run_ctl verify --pub other.key.pub "$T/env.json"
expect_rc 1

what="a second deploy takes the next seq"
run_ctl deploy orders.json --agent a1 --sign-key ops.key --no-wait --json
expect_rc 0
expect_json '[.[] | [.agent, .seq, .result, .error]]' '[["a1",2,"published",null]]'
desired_doc a1
expect_json '[.seq, [.pipelines[].name]]' '[2,["orders"]]'

what="seq follows reported.seq and lastError.seq when they are higher"
run_ctl deploy orders.json --agent a2 --sign-key ops.key --no-wait
expect_rc 0
check "a2 above its reported 5: $out" test "$out" = "agent a2: seq 6 published (1 pipeline)"
pub outpost/v1/a2/reported '{"agent":"a2","group":"g2","seq":10,"pipelines":[],"lastError":{"seq":12,"code":"REPLAY","message":"m"}}'
run_ctl deploy orders.json --agent a2 --sign-key ops.key --no-wait
expect_rc 0
check "a2 above its refused 12: $out" test "$out" = "agent a2: seq 13 published (1 pipeline)"

what="--group g1: the agents whose status or reported say g1, no other"
run_ctl deploy audit.json --group g1 --sign-key ops.key --no-wait --json
expect_rc 0
expect_json '[.[] | [.agent, .seq, .result]]' '[["a1",3,"published"],["a3",1,"published"]]'
desired_doc a3
expect_json '[.agent, .seq, [.pipelines[].name]]' '["a3",1,["audit"]]'
run_ctl deploy audit.json --group nobody --sign-key ops.key --no-wait
expect_rc 3
expect_err_has 'no agent of group "nobody"'

what="an invalid pipeline, or two of one name: exit 2, nothing published"
run_ctl deploy orders.json bad.json --agent a1 --sign-key ops.key --no-wait
expect_rc 2
expect_err_has 'bad.json: steps[0].type'
expect_err_has 'nothing was deployed'
run_ctl deploy orders.json orders-copy.json --agent a1 --sign-key ops.key --no-wait
expect_rc 2
expect_err_has 'a pipeline named "orders" is already loaded'
desired_doc a1
expect_json '.seq' '3'

what="bad usage and options: exit 2"
run_ctl deploy orders.json --agent 'no/slash' --sign-key ops.key
expect_rc 2
expect_err_has 'an agent id is 1 to 64 letters'
run_ctl deploy orders.json --agent a1 --group g1 --sign-key ops.key
expect_rc 2
run_ctl deploy orders.json --agent a1
expect_rc 2
expect_err_has '--sign-key'
run_ctl deploy orders.json --agent a1 --sign-key ops.key.pub --no-wait
expect_rc 2
expect_err_has 'not an Ed25519 private key file'
(
	unset OUTPOST_BROKER OUTPOST_KEY
	run_ctl deploy orders.json --agent a1 --sign-key ops.key
	expect_rc 2
	expect_err_has 'give --broker or set OUTPOST_BROKER'
	expect_err_has 'give --key or set OUTPOST_KEY'
	run_ctl status
	expect_rc 2
	finish >/dev/null
) || fail "missing options"
run_ctl status --broker "mqtt://127.0.0.1:$broker_port"
expect_rc 2
expect_err_has 'plain MQTT is refused'
run_ctl status --ca "$T/none.pem"
expect_rc 2
expect_err_has 'none.pem: No such file'

what="an unreachable broker: exit 1 within the timeout"
t0=$(date +%s%N)
run_ctl status --broker mqtts://127.0.0.1:1 --timeout 2
t1=$(date +%s%N)
expect_rc 1
expect_err_has 'cannot connect to the broker at mqtts://127.0.0.1:1'
check "gave up after $(((t1 - t0) / 1000000)) ms" test $(((t1 - t0) / 1000000)) -lt 6000
what="a broker whose certificate the CA did not sign: refused at once"
run_ctl status --ca "$P/rogue-ca.pem"
expect_rc 1
expect_err_has 'TLS: certificate verify failed'

# deploy_with_report AGENT REPORT_JQ ARGS...: runs deploy --wait for AGENT
# in the background while playing the agent: once the envelope arrives on
# desired, publishes AGENT's reported made by jq REPORT_JQ from $seq (the
# envelope's seq). Sets $rc, $out, $err as run_ctl.
deploy_with_report() {
	_agent=$1
	_report=$2
	shift 2
	# The desired topic holds one retained envelope already: ours is second.
	broker_sub_count "outpost/v1/$_agent/desired" 2 20 "$T/desired.out" || {
		fail "subscribe to desired"
		return
	}
	"$OUTPOSTCTL" deploy "$@" --agent "$_agent" --sign-key ops.key >"$T/out" 2>"$T/err" &
	_dpid=$!
	wait "$sub_pid" || fail "no envelope arrived on desired"
	seq=$(tail -n 1 "$T/desired.out" | jq -r .payload | base64 -d | jq .seq)
	pub "outpost/v1/$_agent/reported" "$(jq -nc --argjson seq "${seq:-0}" "$_report")"
	wait "$_dpid"
	rc=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
}

what="--wait: applied once reported.seq reaches the document's"
# shellcheck disable=SC2016 # $seq is jq's variable
deploy_with_report a1 '{agent:"a1",group:"g1",seq:$seq,pipelines:[{name:"orders",version:"3",origin:"deployed",status:"running"}],lastError:null}' orders.json
expect_rc 0
check "seq 4 applied: $out" sh -c "printf '%s' '$out' | grep -Eq '^agent a1: seq 4 applied \(1 pipeline\) in [0-9]+\.[0-9]{2} s$'"

what="--wait: refused when lastError names the document's seq"
# shellcheck disable=SC2016 # $seq is jq's variable
deploy_with_report a1 '{agent:"a1",group:"g1",seq:4,pipelines:[],lastError:{seq:$seq,code:"PIPELINES",message:"orders: steps[0]: boom"}}' orders.json --json
expect_rc 1
expect_json '[.[] | [.agent, .seq, .result, .error.code, .error.message]]' '[["a1",5,"refused","PIPELINES","orders: steps[0]: boom"]]'
expect_err_has 'agent a1: seq 5 refused: PIPELINES: orders: steps[0]: boom'

what="--wait: no report in time"
run_ctl deploy audit.json --agent a3 --sign-key ops.key --timeout 2
expect_rc 1
expect_err_has 'seq 2 published, but no report from agent a3 within 2 s; it may be offline: outpostctl status --agent a3'

what="status: the fleet table"
run_ctl status
expect_rc 0
check "header: $out" sh -c "printf '%s\n' '$out' | head -n 1 | grep -Eq '^AGENT +ONLINE +SEQ +PIPELINES +ERRORS +HEARTBEAT$'"
row() { printf '%s\n' "$out" | awk -v a="$1" '$1 == a { $1 = $1; print }'; }
check "a1: $(row a1)" sh -c "printf '%s' '$(row a1)' | grep -Eq '^a1 yes 4 0 1 [0-9]+s ago$'"
check "a2: $(row a2)" sh -c "printf '%s' '$(row a2)' | grep -Eq '^a2 stale 10 0 1 [0-9]+d ago$'"
check "a3: $(row a3)" test "$(row a3)" = "a3 no 0 0 0 -"
check "sorted by agent" test "$(printf '%s\n' "$out" | awk 'NR > 1 { print $1 }' | tr '\n' ' ')" = "a1 a2 a3 "

what="status --json: the collected objects"
run_ctl status --json
expect_rc 0
expect_json '[.a1.status.group, .a1.reported.lastError.code, .a2.reported.seq, .a3.status.state, (keys)]' '["g1","PIPELINES",10,"offline",["a1","a2","a3"]]'

what="status --agent: one agent in detail"
pub outpost/v1/a2/reported '{"agent":"a2","group":"g2","version":"0.1.0","seq":5,"appliedAt":"2020-01-01T00:00:00.000Z","pipelines":[{"name":"orders","version":"3","origin":"deployed","status":"failed"},{"name":"x","version":"1","origin":"local","status":"running"}],"lastError":{"seq":4,"at":"2020-01-01T00:00:01.000Z","code":"SIGNATURE","message":"envelope kid k: the signature does not verify"}}'
run_ctl status --agent a2
expect_rc 0
for line in 'agent:      a2' 'state:      online, but stale: no heartbeat for more than 90 s' \
	'group:      g2' 'version:    0.1.0' 'applied:    seq 5' \
	'last error: seq 4 at 2020-01-01T00:00:01.000Z: SIGNATURE: envelope kid k: the signature does not verify'; do
	check "line \"$line\"" sh -c "printf '%s\n' \"\$1\" | grep -qxF \"\$2\"" - "$out" "$line"
done
check "pipelines table" sh -c "printf '%s\n' \"\$1\" | grep -Eq '^orders +3 +deployed +failed$'" - "$out"
run_ctl status --agent a2 --json
expect_json '[keys, .a2.reported.seq]' '[["a2"],5]'
run_ctl status --agent nobody
expect_rc 3
expect_err_has 'agent nobody has no retained status or reported'

what="status: stale after three of the agent's own heartbeats (heartbeatS)"
ago=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%S.000Z)
pub outpost/v1/hourly/status "$(printf '{"state":"online","agent":"hourly","at":"%s","heartbeatS":3600}' "$ago")"
pub outpost/v1/minutely/status "$(printf '{"state":"online","agent":"minutely","at":"%s","heartbeatS":60}' "$ago")"
run_ctl status --agent hourly
expect_rc 0
check "hourly, 10 min ago: $out" sh -c "printf '%s\n' \"\$1\" | grep -qxF 'state:      online'" - "$out"
run_ctl status --agent minutely
expect_rc 0
check "minutely, 10 min ago: $out" sh -c "printf '%s\n' \"\$1\" | grep -qxF \"\$2\"" - "$out" \
	'state:      online, but stale: no heartbeat for more than 180 s'

what="status and deploy survive garbage on the wire"
pub outpost/v1/junk/status 'not json at all'
pub outpost/v1/junk/reported '[1,2,3]'
pub 'outpost/v1/bad id!/status' '{"state":"online"}'
pub outpost/v1/evil/status "$(printf '{"state":"online","group":"\\u001b[2J\\u009b","at":"%s"}' "$now")"
head -c 1100000 /dev/zero | tr '\0' ' ' >big.json
mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -r -t outpost/v1/big/reported -f big.json ||
	fail "publish big"
pub outpost/v1/a3/desired 'garbage, not an envelope'
run_ctl status
expect_rc 0
expect_err_has 'outpost/v1/junk/status: not a JSON object (15 bytes); ignored'
expect_err_has 'outpost/v1/junk/reported: not a JSON object'
expect_err_has 'outpost/v1/bad id!/status: not an agent id; ignored'
expect_err_has 'outpost/v1/big/reported: 1100000 bytes, more than 1048576; ignored'
check "a1 still listed" sh -c "printf '%s\n' \"\$1\" | grep -q '^a1 '" - "$out"
check "no escape sequence reaches the terminal" sh -c "! printf '%s' \"\$1\" | grep -q \"\$(printf '\\033')\"" - "$out"
run_ctl status --agent evil
expect_rc 0
check "no escape in the detail view" sh -c "! printf '%s' \"\$1\" | grep -q \"\$(printf '\\033')\"" - "$out"
run_ctl deploy audit.json --agent a3 --sign-key ops.key --no-wait
expect_rc 0
expect_err_has 'outpost/v1/a3/desired: not a signed envelope with a seq'
check "a3 seq above its reported: $out" test "$out" = "agent a3: seq 1 published (1 pipeline)"

what="a fleet prefix"
OUTPOST_PREFIX=site1 run_ctl deploy orders.json --agent p1 --sign-key ops.key --no-wait
expect_rc 0
expect_err_has 'agent p1 has nothing retained under site1/outpost/v1/p1/'
retained site1/outpost/v1/p1/desired >"$T/env.json"
run_ctl verify --pub ops.key.pub "$T/env.json"
expect_json '[.agent, .seq]' '["p1",1]'
pub site1/outpost/v1/p1/status "$(status_msg p1 g1 online "$now")"
run_ctl status --prefix site1 --json
expect_json 'keys' '["p1"]'
run_ctl status --prefix /bad/
expect_rc 2

what="a PUBACK refusal: exit 1 naming it"
stop_broker
printf 'acl_file %s/acl\n' "$T" >"$T/acl.conf"
# shellcheck disable=SC2016 # topics, not variables
printf '%s\n' 'topic read $SYS/#' 'topic readwrite $outpost-e2e/#' \
	'topic readwrite outpost/v1/_ctl/#' 'topic read outpost/v1/#' >"$T/acl"
start_broker "$T/acl.conf" || exit 1
use_broker
run_ctl deploy orders.json --agent a1 --sign-key ops.key --no-wait
expect_rc 1
expect_err_has 'agent a1: seq 1 not published: publishing to outpost/v1/a1/desired: the broker refused it: Not authorized (0x87)'

finish
