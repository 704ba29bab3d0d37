# Crash test: at-least-once delivery across kill -9.
#
# Starts outpostd on a generated config (free ports, store in the test's temp
# dir) with one async HTTP pipeline that burns a little CPU in jq (so a kill
# finds events in flight before their sink line: losing an in-flight event on
# restart then shows) and then logs "sink <event id>": those log lines are the
# sink, counted by event id. Background curl loops post events over
# keep-alive connections and keep every answer; the daemon is killed with
# SIGKILL at a random-ish point of each round (after a random number of 202
# answers) and restarted on the same data dir (ports may change, so they are
# read again). After the last kill a final instance runs
# under load, then the load stops, the queue drains and SIGTERM stops it.
# Then every event id that was answered 202 must appear in at least one sink
# line. Duplicates are allowed (at-least-once) and reported, as are events
# that were executed although their 202 never reached the client (committed,
# then killed before the answer).
# The pipeline allows 10 attempts: an event in flight at several kills in a
# row is redelivered each time (past the larger of 3 and its attempts the
# runtime would dead-letter it as an event that stops the agent).
# Every wait polls a condition with a deadline; nothing sleeps for a fixed time.
. "$(dirname "$0")/lib.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

KILLS=${CRASH_KILLS:-5}
LOADERS=3

pid=""
loaders=""
cleanup() {
	# shellcheck disable=SC2086 # a list of pids
	[ -n "$loaders" ] && kill $loaders 2>/dev/null
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

mkdir -p "$T/pipelines"
cat >"$T/outpost.conf" <<CONF
[agent]
id = crash
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
CONF
cat >"$T/pipelines/crash.json" <<'JSON'
{"name":"crash","version":"1","settings":{"retry":{"attempts":10}},
 "trigger":{"type":"http","config":{"method":"POST","path":"/crash","mode":"async"}},
 "steps":[{"type":"transform","config":{"program":"{n: (reduce range(0; 3000) as $i (0; . + $i))}"}},
  {"type":"log","config":{"level":"info","message":"sink {{ metadata.event_id }}"}}]}
JSON
body='{"order":"A-17","customer":"c-42","lines":[{"sku":"X1","qty":3}]}'

# rnd LO HI: a random integer in [LO, HI].
rnd() {
	r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
	echo $(($1 + r % ($2 - $1 + 1)))
}

# metric SERIES: the value of one series from /metrics (series written as in
# the exposition, labels included), or empty.
metric() {
	curl -s -m 1 "http://127.0.0.1:$admin/metrics" | awk -v s="$1" '$1 == s { printf "%d\n", $2 }'
}

# start N: starts instance N appending its stderr to $T/d.N.log, waits until it
# is ready, sets $pid, $port and $admin. Fails the test and exits otherwise.
start() {
	log="$T/d.$1.log"
	start_daemon "$T/outpost.conf" "$log"
	if [ -z "$port" ] || [ -z "$admin" ]; then
		fail "instance $1 did not become ready: $(tail -20 "$log")"
		finish
		exit 1
	fi
}

# load_start N: starts the background posters for instance N; each keeps the
# answers ("<body> <status>" per line) in $T/acc.N.K.
load_start() {
	rm -f "$T/stop"
	loaders=""
	k=0
	while [ $k -lt $LOADERS ]; do
		(
			while [ ! -e "$T/stop" ]; do
				curl -s -m 5 -w ' %{http_code}\n' -H 'content-type: application/json' \
					--data-binary "$body" "http://127.0.0.1:$port/crash?i=$1&k=$k&n=[1-50]" \
					>>"$T/acc.$1.$k" 2>/dev/null
			done
		) &
		loaders="$loaders $!"
		k=$((k + 1))
	done
}

load_stop() {
	: >"$T/stop"
	# shellcheck disable=SC2086
	wait $loaders
	loaders=""
}

# load_until N: waits until this instance answered N times 202 (or 3 s).
load_until() {
	dl=$(($(date +%s) + 3))
	while [ "$(date +%s)" -lt $dl ]; do
		got=$(metric 'outpost_http_requests_total{code="202"}')
		[ "${got:-0}" -ge "$1" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05 # poll interval, bounded by the deadline
	done
	return 0
}

t0=$(date +%s)
round=1
queued_at_kill=""
# A slow machine gets fewer rounds (at least two) so the test stays bounded.
while [ $round -le "$KILLS" ] && { [ $round -le 2 ] || [ $(($(date +%s) - t0)) -lt 30 ]; }; do
	start $round
	load_start $round
	load_until "$(rnd 100 600)"
	q=$(metric 'outpost_queue_depth{pipeline="crash"}')
	f=$(metric 'outpost_inflight')
	queued_at_kill="$queued_at_kill ${q:-?}+${f:-?}"
	checks=$((checks + 1))
	kill -0 "$pid" 2>/dev/null || fail "instance $round died by itself: $(tail -20 "$T/d.$round.log")"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	pid=""
	load_stop
	round=$((round + 1))
done

# The last instance: more load, then no load until the queue is drained.
start $round
load_start $round
load_until "$(rnd 100 600)"
load_stop
checks=$((checks + 1))
kill -0 "$pid" 2>/dev/null || fail "instance $round died by itself: $(tail -20 "$T/d.$round.log")"
dl=$(($(date +%s) + 15))
q=""
f=""
while [ "$(date +%s)" -lt $dl ]; do
	q=$(metric 'outpost_queue_depth{pipeline="crash"}')
	f=$(metric 'outpost_inflight')
	[ "${q:-1}" -eq 0 ] && [ "${f:-1}" -eq 0 ] && break
	sleep 0.05 # poll interval, bounded by the deadline
done
checks=$((checks + 1))
if [ "${q:-1}" -ne 0 ] || [ "${f:-1}" -ne 0 ]; then
	fail "queue did not drain: depth ${q:-?}, in flight ${f:-?}"
fi
# The last instance's executions against its sink lines: fewer lines than
# successful executions means the logger dropped lines, not the queue.
done_last=$(metric 'outpost_executions_total{pipeline="crash",status="success"}')
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=""
checks=$((checks + 1))
[ "$rc" -eq 0 ] || fail "last instance exited $rc on SIGTERM: $(tail -20 "$T/d.$round.log")"
checks=$((checks + 1))
grep -q 'stopped' "$T/d.$round.log" || fail "no clean stop: $(tail -5 "$T/d.$round.log")"

# Accepted: every answer "{"eventId":"<id>"} 202". Sink: every "sink <id>".
cat "$T"/acc.* >"$T/answers"
sed -n 's/^{"eventId":"\([0-9a-f-]*\)"} 202$/\1/p' "$T/answers" | sort >"$T/accepted"
sort -u "$T/accepted" >"$T/accepted.u"
cat "$T"/d.*.log >"$T/daemon.log"
sed -n 's/.* sink \([0-9a-f-]*\)$/\1/p' "$T/daemon.log" | sort >"$T/sink"
sort -u "$T/sink" >"$T/sink.u"
comm -23 "$T/accepted.u" "$T/sink.u" >"$T/missing"
awk 'NR == FNR { a[$1] = 1; next } $1 in a' "$T/accepted.u" "$T/sink" >"$T/sink.acc"

accepted=$(wc -l <"$T/accepted")
unique=$(wc -l <"$T/accepted.u")
missing=$(wc -l <"$T/missing")
sink_lines=$(wc -l <"$T/sink")
rerun=$(($(wc -l <"$T/sink.acc") - (unique - missing)))
unacked=$(comm -13 "$T/accepted.u" "$T/sink.u" | wc -l)
statuses=$(awk '{ n[$NF]++ } END { for (s in n) printf " %s:%d", s, n[s] }' "$T/answers")

checks=$((checks + 1))
[ "$accepted" -ge $((round * 50)) ] || fail "too little load: only $accepted events accepted"
checks=$((checks + 1))
[ "$unique" -eq "$accepted" ] ||
	fail "event ids answered twice: $(sort "$T/accepted" | uniq -d | head -5 | tr '\n' ' ')"
checks=$((checks + 1))
[ "$missing" -eq 0 ] ||
	fail "$missing of $unique accepted events never executed, e.g. $(head -5 "$T/missing" | tr '\n' ' ')"
checks=$((checks + 1))
sink_last=$(grep -c ' sink [0-9a-f-]*$' "$T/d.$round.log")
[ "$sink_last" -ge "${done_last:-0}" ] ||
	fail "the last instance ran ${done_last} executions but logged $sink_last sink lines:" \
		"the logger dropped log-step lines (rate limit?), so the sink is incomplete"

[ $round -gt 2 ] || fail "only $((round - 1)) kills in the time budget"
echo "crash: $((round - 1)) kills, $((round)) instances, $(($(date +%s) - t0)) s"
echo "crash: answers by status:$statuses"
echo "crash: queued+in flight at each kill:$queued_at_kill"
echo "crash: $unique accepted, $sink_lines sink lines, $rerun re-executions of accepted events," \
	"$unacked executed without a 202 seen, $missing missing"
finish
