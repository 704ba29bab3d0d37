# A corrupt record in the store of a stopped agent: at the next start the
# agent finds it (its checksum no longer matches), sets it aside in the
# quarantine, logs it, counts it in outpost_store_quarantined, and runs on;
# the records around it are untouched. The record is a dead letter whose
# payload carries a marker; the test flips one byte of that marker in the
# store's file while the agent is stopped. Waits poll with a deadline.
. "$(dirname "$0")/lib.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

mkdir -p "$T/p"
cat >"$T/outpost.conf" <<CONF
[agent]
id = e2e
data_dir = $T/data
pipelines_dir = $T/p
shutdown_timeout = 2s
[store]
map_initial = 1MB
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
CONF
cat >"$T/p/doomed.json" <<'JSON'
{"name":"doomed","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/doomed","mode":"async"}},
 "steps":[{"type":"throw-error","config":{"code":"DOOMED","message":"never works","class":"invalid"}}]}
JSON

post() {
	curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
		--data-binary "$1" "http://127.0.0.1:$port/doomed"
}
dead_is() { [ "$(metric outpost_dead_letters)" = "$1" ]; }

start_daemon "$T/outpost.conf" "$T/d.log" || {
	fail "outpostd did not start: $(cat "$T/d.log")"
	finish
	exit 1
}
at_exit stop_daemon


what="two dead letters, one of them marked"
check "the plain event was not accepted" test "$(post '{"n":1}')" = 202
check "the marked event was not accepted" test "$(post '{"mark":"CORRUPT-ME-7f3a"}')" = 202
wait_until 20 dead_is 2
check "$(metric outpost_dead_letters) dead letters, not 2" dead_is 2
check "a new store has quarantined $(metric outpost_store_quarantined)" \
	test "$(metric outpost_store_quarantined)" = 0
stop_daemon
check "the agent did not stop cleanly" test $? -eq 0

what="one byte of the marked record flipped while the agent is stopped"
n=$(grep -c 'CORRUPT-ME-7f3a' "$T/data/store/data.mdb")
check "the marker is not in the store's file" test "$n" -ge 1
perl -pi -e 's/CORRUPT-ME-7f3a/CORRUPT-ME-7f3b/g' "$T/data/store/data.mdb"

what="the next start quarantines it, reports it and runs on"
start_daemon "$T/outpost.conf" "$T/d2.log" || fail "$what: not ready: $(tail -5 "$T/d2.log")"
check "no quarantine line: $(grep -i corrupt "$T/d2.log")" \
	grep -q 'error store: corrupt record in database dead' "$T/d2.log"
check "outpost_store_quarantined is $(metric outpost_store_quarantined), not 1" \
	test "$(metric outpost_store_quarantined)" = 1
check "$(metric outpost_dead_letters) dead letters, not the 1 intact" dead_is 1
OUTPOST_ADMIN=127.0.0.1:$admin run_ctl dead --json
expect_rc 0
expect_json 'length' '1'
code=$(post '{"n":3}')
check "an event after the restart answered $code: $(tail -5 "$T/d2.log")" test "$code" = 202
wait_until 20 dead_is 2
check "the event after the restart did not run" dead_is 2

stop_daemon
check "the agent did not stop cleanly: $(tail -3 "$T/d2.log")" test $? -eq 0
finish
