#!/bin/bash
# W3: MQTT through the agent against the broker's own rate, in one run.
#
# Starts a real mosquitto (tests/e2e/broker.sh: max_inflight_messages 1000,
# a large max_queued_messages) and measures with tests/bench/mqtt_load (one
# paho publisher with a 900-message QoS 1 window, one QoS 1 subscriber):
#   mosquitto:  QoS 1 publish -> QoS 1 subscriber, through the broker only;
#   relay:      QoS 1 publish -> mqtt_load's relay (PUBACK at once, publish
#               again QoS 1, nothing durable) -> the subscriber;
#   outpostd:   QoS 1 publish to bench/in -> mqtt trigger (each message
#               durably committed before its PUBACK) -> jq transform ->
#               mqtt-publish QoS 1 to bench/out -> the subscriber.
# Prints "bench: NAME VALUE UNIT" lines; the ratio is what to compare.
# Installs nothing: without mosquitto it prints a skip line and exits 0.
set -u
: "${OUTPOSTCTL:=/bin/true}" # lib.sh wants it; this script does not use it
export OUTPOSTCTL
top=$(cd "$(dirname "$0")/../.." && pwd)
OUTPOSTD=${OUTPOSTD:-$top/build/release/outpostd}
MQTT_LOAD=${MQTT_LOAD:-$top/build/release/tests/bench/mqtt_load}
N=${BENCH_MQTT_N:-20000}
CONSUMERS=${BENCH_MQTT_CONSUMERS:-16}
CONCURRENCY=${BENCH_MQTT_CONCURRENCY:-16}

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
	echo "bench: skip bench_mqtt: mosquitto not found (packaging/install-deps.sh bench)"
	exit 0
fi
PATH=$PATH:/usr/sbin
for f in "$OUTPOSTD" "$MQTT_LOAD"; do
	[ -x "$f" ] || {
		echo "bench_mqtt: $f not found (make VARIANT=release)" >&2
		exit 1
	}
done
# shellcheck source=../e2e/lib.sh
. "$top/tests/e2e/lib.sh"
# shellcheck source=../e2e/broker.sh
. "$top/tests/e2e/broker.sh"
# shellcheck source=lib.sh
. "$top/tests/bench/lib.sh"
start_broker >/dev/null || exit 1

dpid=""
stop_agent() {
	[ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	dpid=""
}
# The agent goes first at exit, then the broker and $T (lib.sh, broker.sh).
at_exit stop_agent

# The broker alone, twice; the better run counts (the first warms up).
base=0 base_cpu=0
for _ in 1 2; do
	c0=$(cpu_ticks "$broker_pid")
	out=$("$MQTT_LOAD" "$broker_port" bench/base bench/base "$N") || {
		echo "bench_mqtt: the broker alone lost messages: $out" >&2
		exit 1
	}
	c1=$(cpu_ticks "$broker_pid")
	r=$(printf '%s\n' "$out" | sed -n 's/.*: \([0-9]*\) msg\/s$/\1/p')
	[ "$r" -gt "$base" ] && base=$r && base_cpu=$(cpu_us "$c0" "$c1" "$N")
done

# The least any agent must do between two topics: mqtt_load's relay, a
# subscriber that PUBACKs at once and republishes each message (QoS 1, no
# transform, nothing durable). Every message passes the broker twice.
"$MQTT_LOAD" relay "$broker_port" bench/rin bench/rout >"$T/relay.log" 2>&1 &
relay_pid=$!
wait_until 10 grep -q relaying "$T/relay.log" || {
	echo "bench_mqtt: the relay did not start: $(cat "$T/relay.log")" >&2
	exit 1
}
c0=$(cpu_ticks "$broker_pid")
r0=$(cpu_ticks "$relay_pid")
out=$("$MQTT_LOAD" "$broker_port" bench/rin bench/rout "$N") || {
	echo "bench_mqtt: the relay lost messages: $out" >&2
	exit 1
}
relay_cpu=$(cpu_us "$r0" "$(cpu_ticks "$relay_pid")" "$N")
relay_broker_cpu=$(cpu_us "$c0" "$(cpu_ticks "$broker_pid")" "$N")
kill "$relay_pid" 2>/dev/null
wait "$relay_pid" 2>/dev/null
relay=$(printf '%s\n' "$out" | sed -n 's/.*: \([0-9]*\) msg\/s$/\1/p')

mkdir -p "$T/p"
cat >"$T/outpost.conf" <<CONF
[agent]
id = bench
data_dir = $T/data
pipelines_dir = $T/p
workers = 16
log_level = info
[http]
listen =
[admin]
listen = 127.0.0.1:0
[broker local]
url = mqtt://127.0.0.1:$broker_port
CONF
cat >"$T/p/w3.json" <<JSON
{"name":"w3","version":"1","settings":{"concurrency":$CONCURRENCY},
 "trigger":{"type":"mqtt","config":{"broker":"local","topic":"bench/in","consumers":$CONSUMERS}},
 "steps":[{"type":"transform","config":{"program":"{id, orderId: .order, customerId: .customer.id, total: ([.lines[] | .qty * .price] | add), currency, source: \"mqtt\"}"}},
  {"type":"mqtt-publish","config":{"broker":"local","topic":"bench/out","qos":1}}]}
JSON
"$OUTPOSTD" --config "$T/outpost.conf" 2>>"$T/d.log" &
dpid=$!
subscribed() {
	admin=$(sed -n 's/.*admin endpoint on [^ ]*:\([0-9]*\).*/\1/p' "$T/d.log")
	[ -n "$admin" ] && [ "$(curl -s "http://127.0.0.1:$admin/metrics" |
		awk '$1 == "outpost_mqtt_consumers_subscribed" { print $2 }')" = "$CONSUMERS" ]
}
wait_until 20 subscribed || {
	echo "bench_mqtt: the agent's consumers did not subscribe: $(tail -5 "$T/d.log")" >&2
	exit 1
}
# The consumers are processes of their own (mqtt_in.c): their CPU counts
# apart from the daemon's.
cons=$(children "$dpid")
c0=$(cpu_ticks "$broker_pid")
d0=$(cpu_ticks "$dpid")
# shellcheck disable=SC2086 # one PID per word
p0=$(cpu_ticks $cons)
k0=$(metric outpost_store_commit_seconds_count)
w0=$(disk_written "$T")
out=$("$MQTT_LOAD" "$broker_port" bench/in bench/out "$N")
rc=$?
agent_cpu=$(cpu_us "$d0" "$(cpu_ticks "$dpid")" "$N")
# shellcheck disable=SC2086
cons_cpu=$(cpu_us "$p0" "$(cpu_ticks $cons)" "$N")
agent_broker_cpu=$(cpu_us "$c0" "$(cpu_ticks "$broker_pid")" "$N")
k1=$(metric outpost_store_commit_seconds_count)
w1=$(disk_written "$T")
stop_agent
agent=$(printf '%s\n' "$out" | sed -n 's/.*: \([0-9]*\) msg\/s$/\1/p')
[ $rc -eq 0 ] || echo "bench_mqtt: not every message came through the agent: $out" >&2
echo "bench: w3_mosquitto_qos1_pub_sub $base msg/s"
echo "bench: w3_outpostd_mqtt_in_transform_out ${agent:-0} msg/s ($CONSUMERS consumers, concurrency $CONCURRENCY, $N messages)"
echo "bench: w3_relay_no_agent $relay msg/s"
echo "bench: w3_relay_vs_mosquitto $(ratio "$relay" "$base") ratio"
echo "bench: w3_outpostd_vs_mosquitto $(ratio "${agent:-0}" "$base") ratio"
echo "bench: w3_outpostd_vs_relay $(ratio "${agent:-0}" "$relay") ratio"
echo "bench: w3_mosquitto_cpu $base_cpu us/msg (the broker alone)"
echo "bench: w3_relay_cpu $relay_cpu us/msg (broker $relay_broker_cpu)"
echo "bench: w3_outpostd_cpu $agent_cpu us/msg (consumers $cons_cpu, broker $agent_broker_cpu)"
echo "bench: w3_commits_per_msg $(awk -v k=$((${k1:-0} - ${k0:-0})) -v n="$N" \
	'BEGIN { printf "%.3f", n ? k / n : 0 }') commits"
echo "bench: w3_written_per_msg $(awk -v w=$((w1 - w0)) -v n="$N" \
	'BEGIN { printf "%d", n ? w / n : 0 }') bytes"
[ $rc -eq 0 ]
