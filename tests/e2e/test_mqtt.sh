# MQTT trigger end to end: outpostd subscribes at a real mosquitto over
# mutual TLS (certificates from broker.sh's throwaway PKI) and runs a
# pipeline per message. Checked: every QoS 1 message is run (counted by its
# id at the sink: the pipeline's log lines), metadata.trigger, payload modes,
# a bad payload dead-lettered, messages published while the agent is down
# run after it restarts (persistent session, acked only after the commit),
# an agent started before its broker connects when the broker comes, an
# untrusted broker refused, reloads start and stop consumers, and a pipeline
# naming an unknown broker refused with the file and key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/broker.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

pid=""

start_broker || exit 1
P=$T/pki

# conf FILE CA: the agent's config with broker "plant" on the TLS listener.
conf() {
	cat >"$1" <<CONF
[agent]
id = e2e
data_dir = $T/data
pipelines_dir = $T/pipelines
workers = 4
shutdown_timeout = 2s
[store]
map_initial = 4MB
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
[broker plant]
url = mqtts://127.0.0.1:$broker_tls_port
ca_file = $2
cert_file = $P/client-a.pem
key_file = $P/client-a.key
[broker plain]
url = mqtt://127.0.0.1:$broker_port
CONF
}
mkdir -p "$T/pipelines"
conf "$T/outpost.conf" "$P/ca.pem"
cat >"$T/pipelines/orders.json" <<'JSON'
{"name":"orders","version":"1",
 "trigger":{"type":"mqtt","config":{"broker":"plant","topic":"plant/+/orders","consumers":3}},
 "steps":[{"type":"log","config":{"message":"sink {{ message.id }} {{ metadata.trigger.topic }} {{ metadata.trigger.qos }} {{ metadata.trigger.broker }}"}}]}
JSON
cat >"$T/pipelines/notes.json" <<'JSON'
{"name":"notes","version":"1",
 "trigger":{"type":"mqtt","config":{"broker":"plain","topic":"notes","payload":"text","qos":1}},
 "steps":[{"type":"log","config":{"message":"note [{{ message }}]"}},
  {"type":"mqtt-publish","config":{"broker":"plant","topic":"notes/out/{{ metadata.trigger.topic }}",
   "payload":{"note":"{{ message }}","from":"{{ metadata.trigger.broker }}"},"qos":1}}]}
JSON
# One log per daemon run (start_daemon waits for the ready line of its log).
LOG=$T/d1.log

# sinks: number of distinct ids run by orders, over every run.
sinks() { cat "$T"/d[0-9].log | grep -o 'sink [0-9a-z-]*' | sort -u | wc -l; }
# consumers: the running daemon's consumer processes.
consumers() { pgrep -P "$pid" -f -- '--mqtt-consumer' | wc -l; }
# gone PIDS...: none of PIDS runs any more.
gone() {
	for _p in "$@"; do kill -0 "$_p" 2>/dev/null && return 1; done
	return 0
}
# subscribed N: N consumers are subscribed now.
subscribed() { [ "$(metric outpost_mqtt_consumers_subscribed)" = "$1" ]; }
has_sinks() { [ "$(sinks)" -ge "$1" ]; }
log_has() { grep -q -- "$1" "$LOG"; }
pub_tls() {
	mosquitto_pub -h 127.0.0.1 -p "$broker_tls_port" --cafile "$P/ca.pem" \
		--cert "$P/client-b.pem" --key "$P/client-b.key" "$@"
}
# pub_orders FROM TO: QoS 1 orders with ids oFROM..oTO, spread over 3 plants.
pub_orders() {
	i=$1
	while [ "$i" -le "$2" ]; do
		printf '{"id":"o%d","qty":%d}\n' "$i" "$i"
		i=$((i + 1))
	done | pub_tls -q 1 -t "plant/p$(($1 % 3))/orders" -l
}

what="the daemon starts with MQTT triggers"
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$LOG" || fail "$what: not ready: $(cat "$LOG")"
# Ready means subscribed: the start waits for the consumers.
checks=$((checks + 1))
subscribed 4 || fail "$what: ready with $(metric outpost_mqtt_consumers_subscribed) of 4 consumers subscribed: $(cat "$LOG")"
consumers_are() { [ "$(consumers)" -eq "$1" ]; }
expect_consumers() {
	checks=$((checks + 1))
	wait_until 10 consumers_are "$1" || fail "$what: $(consumers) consumer processes, expected $1"
}
expect_consumers 4

what="300 QoS 1 messages over mutual TLS all run"
pub_orders 1 300
checks=$((checks + 1))
wait_until 30 has_sinks 300 || fail "$what: $(sinks) of 300 ran"
checks=$((checks + 1))
log_has 'sink o17 plant/p1/orders 1 plant' || fail "$what: no 'sink o17 plant/p1/orders 1 plant' line"

what="the MQTT metrics count them"
checks=$((checks + 1))
got=$(metric 'outpost_mqtt_messages_total{result="accepted"}')
[ "${got:-0}" -ge 300 ] || fail "$what: accepted is '$got', expected at least 300"
checks=$((checks + 1))
got=$(metric outpost_mqtt_consumers_connected)
[ "$got" = 4 ] || fail "$what: consumers connected is '$got', expected 4"

what="text payload, republished over mutual TLS by mqtt-publish"
broker_sub_count 'notes/out/#' 1 20 "$T/notes.out" || exit 1
mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t notes -m 'hello, plant'
checks=$((checks + 1))
wait_until 10 log_has 'note \[hello, plant\]' || fail "$what: no note line"
checks=$((checks + 1))
wait "$sub_pid" || fail "$what: nothing arrived on notes/out/#"
checks=$((checks + 1))
got=$(cat "$T/notes.out")
[ "$got" = '{"note":"hello, plant","from":"plain"}' ] || fail "$what: got '$got'"

what="a payload that is not JSON is dead-lettered, not dropped"
pub_tls -q 1 -t plant/p1/orders -m 'not json {'
OUTPOST_ADMIN=127.0.0.1:$admin
export OUTPOST_ADMIN
dead_bad() {
	run_ctl dead --json
	printf '%s' "$out" | jq -e 'map(select(.error | startswith("BAD_PAYLOAD: payload is not JSON"))) | length == 1' >/dev/null
}
checks=$((checks + 1))
wait_until 10 dead_bad || fail "$what: dead letters: $out"
checks=$((checks + 1))
grep -Eq 'orders: execution [0-9a-f-]{36} \(event [0-9a-f-]{36}\) not run: BAD_PAYLOAD' "$LOG" ||
	fail "$what: no log line with the execution id"

checks=$((checks + 1))
got=$(metric 'outpost_mqtt_messages_total{result="bad_payload"}')
[ "$got" = 1 ] || fail "$what: bad_payload is '$got', expected 1"

what="messages published while the agent is down run after restart"
# shellcheck disable=SC2046 # a list of pids
set -- $(pgrep -P "$pid" -f -- '--mqtt-consumer')
stop_daemon
checks=$((checks + 1))
wait_until 10 gone "$@" || fail "$what: consumers outlived the daemon"
pub_orders 301 400
LOG=$T/d2.log
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$LOG" || fail "$what: not ready"
checks=$((checks + 1))
wait_until 30 has_sinks 400 || fail "$what: $(sinks) of 400 ran"

what="the broker goes away and comes back"
kill_broker
checks=$((checks + 1))
wait_until 20 subscribed 0 || fail "$what: the consumers did not notice"
checks=$((checks + 1))
log_has 'reconnecting' || fail "$what: no lost-connection line"
restart_broker || exit 1
checks=$((checks + 1))
wait_until 60 subscribed 4 || fail "$what: consumers did not come back: $(tail -20 "$LOG")"
pub_orders 401 450
checks=$((checks + 1))
wait_until 30 has_sinks 450 || fail "$what: $(sinks) of 450 ran"

what="a reload that removes the MQTT pipelines stops their consumers"
mv "$T/pipelines/orders.json" "$T/orders.json.off"
mv "$T/pipelines/notes.json" "$T/notes.json.off"
kill -HUP "$pid"
expect_consumers 0
what="a reload that adds one back starts its consumers"
mv "$T/orders.json.off" "$T/pipelines/orders.json"
kill -HUP "$pid"
expect_consumers 3

what="a reload adds a broker and a pipeline that uses it, without a restart"
cp "$T/outpost.conf" "$T/outpost.conf.before"
cat >>"$T/outpost.conf" <<CONF
[broker extra]
url = mqtt://127.0.0.1:$broker_port
client_id = e2e-extra
CONF
cat >"$T/pipelines/extra.json" <<'JSON'
{"name":"extra","version":"1",
 "trigger":{"type":"mqtt","config":{"broker":"extra","topic":"extra/in","payload":"text"}},
 "steps":[{"type":"mqtt-publish","config":{"broker":"extra","topic":"extra/out",
   "payload":{"got":"{{ message }}","from":"{{ metadata.trigger.broker }}"},"qos":1}}]}
JSON
kill -HUP "$pid"
expect_consumers 4
checks=$((checks + 1))
wait_until 20 subscribed 4 || fail "$what: the new consumer did not subscribe: $(tail -20 "$LOG")"
# relayed N TEXT: publishes TEXT to extra/in and checks that the extra
# pipeline publishes it to extra/out, the Nth time.
relayed() {
	broker_sub_count extra/out 1 20 "$T/extra.out" || exit 1
	mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t extra/in -m "$2"
	checks=$((checks + 1))
	wait "$sub_pid" || fail "$what: nothing arrived on extra/out"
	checks=$((checks + 1))
	got=$(cat "$T/extra.out")
	[ "$got" = "{\"got\":\"$2\",\"from\":\"extra\"}" ] || fail "$what: got '$got'"
}
relayed 1 'first'
checks=$((checks + 1))
log_has 'next restart' && fail "$what: the log says a restart is needed: $(grep 'next restart' "$LOG")"

what="a reload that drops the broker but not the pipeline using it is refused whole"
refusals() { grep -c 'reload refused' "$LOG"; }
refused_once() { [ "$(refusals)" = 1 ]; }
cp "$T/outpost.conf.before" "$T/outpost.conf"
kill -HUP "$pid"
checks=$((checks + 1))
wait_until 10 refused_once || fail "$what: not refused: $(tail -5 "$LOG")"
checks=$((checks + 1))
log_has "extra.json: trigger.config.broker: 'extra' is not a broker of the agent's config" ||
	fail "$what: the problem is not logged: $(tail -5 "$LOG")"
relayed 2 'after the refusal'

what="a reload that drops the broker with its pipeline stops the pipeline's consumer"
rm "$T/pipelines/extra.json"
kill -HUP "$pid"
expect_consumers 3
checks=$((checks + 1))
[ "$(refusals)" = 1 ] || fail "$what: refused: $(tail -5 "$LOG")"
# Nothing of the pipeline drains: its broker's publisher ends (within a
# second, at the daemon's housekeeping).
checks=$((checks + 1))
wait_until 10 log_has 'broker extra (.*): no pipeline uses it any more' ||
	fail "$what: the removed broker's publisher was not ended: $(tail -5 "$LOG")"
stop_daemon

what="a daemon started without MQTT triggers starts them with the reload that adds one"
mv "$T/pipelines/orders.json" "$T/orders.json.off"
LOG=$T/d3.log
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$LOG" || fail "$what: not ready: $(cat "$LOG")"
checks=$((checks + 1))
[ "$(metric outpost_mqtt_consumers)" = 0 ] || fail "$what: $(metric outpost_mqtt_consumers) consumers"
mv "$T/orders.json.off" "$T/pipelines/orders.json"
kill -HUP "$pid"
expect_consumers 3
checks=$((checks + 1))
wait_until 20 subscribed 3 || fail "$what: consumers did not subscribe: $(tail -20 "$LOG")"
pub_orders 451 460
checks=$((checks + 1))
wait_until 30 has_sinks 460 || fail "$what: $(sinks) of 460 ran"
stop_daemon

what="a broker whose certificate the agent does not trust is refused"
conf "$T/rogue.conf" "$P/rogue-ca.pem"
LOG=$T/rogue.log
checks=$((checks + 1))
start_daemon "$T/rogue.conf" "$LOG" || fail "$what: not ready"
checks=$((checks + 1))
wait_until 20 log_has 'orders: MQTT consumer 0: .*\(TLS\|SSL\|certificate\|verify\)' ||
	fail "$what: no TLS failure logged: $(cat "$LOG")"
checks=$((checks + 1))
log_has 'orders: MQTT consumer 0 connected' && fail "$what: it connected"
stop_daemon

what="a full queue is backpressure: messages wait at the broker, none is lost"
# A queue of at most 3 events, one slow execution at a time, 25 messages in a
# burst: most are refused at first (not acknowledged), offered again, and all
# run in the end.
mkdir -p "$T/slowp"
cat >"$T/slow.conf" <<CONF
[agent]
id = e2e-slow
data_dir = $T/slowdata
pipelines_dir = $T/slowp
workers = 2
shutdown_timeout = 2s
[store]
map_initial = 4MB
queue_max_events = 3
[http]
listen =
[admin]
listen = 127.0.0.1:0
[broker plain]
url = mqtt://127.0.0.1:$broker_port
CONF
cat >"$T/slowp/slow.json" <<'JSON'
{"name":"slow","version":"1",
 "trigger":{"type":"mqtt","config":{"broker":"plain","topic":"slow","consumers":2}},
 "settings":{"concurrency":1},
 "steps":[{"type":"transform","config":{"program":"{id, n: (reduce range(0; 20000) as $i (0; . + $i))}"}},
  {"type":"log","config":{"message":"slowsink {{ message.id }}"}}]}
JSON
LOG=$T/slow.log
checks=$((checks + 1))
start_daemon "$T/slow.conf" "$LOG" || fail "$what: not ready: $(cat "$LOG")"
checks=$((checks + 1))
wait_until 20 subscribed 2 || fail "$what: consumers did not subscribe"
i=1
while [ $i -le 25 ]; do
	printf '{"id":"s%d"}\n' $i
	i=$((i + 1))
done | mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t slow -l
slow_sinks() { grep -o 'slowsink s[0-9]*' "$LOG" | sort -u | wc -l; }
all_slow() { [ "$(slow_sinks)" -ge 25 ]; }
checks=$((checks + 1))
wait_until 90 all_slow || fail "$what: $(slow_sinks) of 25 ran"
checks=$((checks + 1))
got=$(metric 'outpost_mqtt_messages_total{result="busy"}')
[ "${got:-0}" -ge 1 ] || fail "$what: no message was refused (busy is '$got'): the test did not fill the queue"
stop_daemon

what="a pipeline naming a broker the config lacks is refused"
sed 's/"broker":"plant"/"broker":"nowhere"/' "$T/pipelines/orders.json" >"$T/pipelines/bad.json"
sed -i 's/"name":"orders"/"name":"bad"/' "$T/pipelines/bad.json"
"$OUTPOSTD" --config "$T/outpost.conf" --check-config >"$T/out" 2>"$T/err"
rc=$?
out=$(cat "$T/out")
err=$(cat "$T/err")
expect_rc 2
expect_err_has "bad.json: trigger.config.broker: 'nowhere' is not a broker of the agent's config, expected a [broker nowhere] section"

finish
