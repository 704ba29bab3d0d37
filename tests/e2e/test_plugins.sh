# outpostd's connector plugins (connectors/registry.c): an agent whose
# pipelines use no connector maps none of their libraries; the first pipeline
# with a rest step loads the http plugin, and only it; a plugin that does not
# load (missing, not a shared object, of another version) is a load problem
# naming the step and the file, and a reload after the plugin is in place
# succeeds. outpostd looks for its plugins in "plugins"
# beside the executable, so a copy of it elsewhere has none until they are
# copied there. Waits poll a condition with a deadline.
. "$(dirname "$0")/lib.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"
PLUGINS=$(dirname "$OUTPOSTD")/plugins

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
[admin]
listen = 127.0.0.1:0
CONF
cat >"$T/pipelines/echo.json" <<'JSON'
{"name":"echo","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/echo"}},
 "steps":[{"type":"set","config":{"template":{"echo":"{{ message.body }}"}}}]}
JSON

start_daemon "$T/outpost.conf" "$T/d.log" || fail "outpostd did not start: $(cat "$T/d.log")"
at_exit stop_daemon

# mapped PID PATTERN: PID has a file mapped whose path matches PATTERN (ERE).
mapped() {
	grep -Eq "$2" "/proc/$1/maps"
}
LIBS='/lib(curl|pq|ssh2|odbc)\.so'

what="an agent whose pipelines use no connector maps no plugin and none of their libraries"
check "plugin mapped: $(grep -E "$LIBS|/plugins/" /proc/$pid/maps | awk '{print $6}' | sort -u)" \
	sh -c "! grep -Eq '$LIBS|/plugins/' /proc/$pid/maps"

what="a pipeline with a rest step loads the http plugin on reload, and it runs"
cat >"$T/pipelines/proxy.json" <<JSON
{"name":"proxy","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/proxy"}},
 "steps":[{"type":"rest","config":{"method":"POST","url":"http://127.0.0.1:$port/echo",
   "body":"{{ message.body }}","timeoutMs":10000}}]}
JSON
kill -HUP $pid
proxy() {
	out=$(curl -s -m 10 -X POST "http://127.0.0.1:$port/proxy" -H 'content-type: application/json' \
		--data-binary '{"n":7}')
	[ "$(printf '%s' "$out" | jq -c '[.status, .body.echo]' 2>/dev/null)" = '[200,{"n":7}]' ]
}
out=""
wait_until 10 proxy
check "the proxy pipeline did not answer through the rest step: $out; log: $(tail -3 "$T/d.log")" \
	proxy
check "no load logged" grep -q "step type rest loaded from $PLUGINS/http.so" "$T/d.log"
check "http.so not mapped" mapped $pid '/plugins/http\.so$'
check "libcurl not mapped" mapped $pid '/libcurl\.so'
# (libcurl brings libssh2 with it.)
check "db or sftp mapped with only rest used" sh -c "! grep -Eq '/lib(pq|odbc)\.so|/plugins/(db|sftp)\.so' /proc/$pid/maps"

# A copy of outpostd without its plugins folder.
mkdir -p "$T/bin" "$T/p2"
cp "$OUTPOSTD" "$T/bin/outpostd"
cat >"$T/p2/orders.json" <<'JSON'
{"name":"orders","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/orders","mode":"async"}},
 "steps":[{"type":"log","config":{"message":"order"}},
          {"type":"db","config":{"connection":"host=127.0.0.1 dbname=erp","account":"erp",
           "sql":"SELECT 1"}}]}
JSON

# check_copy: the copy's --check-config of $T/p2; sets $rc, $out, $err.
check_copy() {
	"$T/bin/outpostd" --dev --pipelines "$T/p2" --check-config >/dev/null 2>"$T/err"
	rc=$?
	out=""
	err=$(cat "$T/err")
}

what="--check-config names the step and the plugin that does not load"
check_copy
expect_rc 2
expect_err_has "orders.json: steps[1].type: step type \"db\": its plugin did not load: $T/bin/plugins/db.so: cannot open shared object file"

what="a plugin that is not a shared object is refused the same way"
mkdir -p "$T/bin/plugins"
printf 'not ELF\n' >"$T/bin/plugins/db.so"
check_copy
expect_rc 2
expect_err_has "orders.json: steps[1].type: step type \"db\": its plugin did not load: $T/bin/plugins/db.so:"

what="a plugin of another version is refused (an upgrade not finished)"
v=$("$OUTPOSTD" --version | awk '{ print $2 }')
w=$(printf '%s' "$v" | tr 0-9 1-90) # another version of the same length
# The version string, NUL-terminated in the plugin's read-only data.
V=$v W=$w perl -0777 -pe 's/\Q$ENV{V}\E\x00/$ENV{W}\x00/g' "$PLUGINS/db.so" >"$T/bin/plugins/db.so"
check_copy
expect_rc 2
expect_err_has "orders.json: steps[1].type: step type \"db\": the plugin $T/bin/plugins/db.so is of version $w, this outpostd of $v (an upgrade not finished: restart outpostd)"

what="with the plugin in place, the same pipeline is fine"
cp "$PLUGINS/db.so" "$T/bin/plugins/db.so"
check_copy
expect_rc 0

what="a reload refused for a missing plugin succeeds once it is installed"
rm "$T/bin/plugins/db.so"
stop_daemon
sed -i "s|pipelines_dir = .*|pipelines_dir = $T/p3|" "$T/outpost.conf"
mkdir -p "$T/p3"
cp "$T/pipelines/echo.json" "$T/p3/"
OUTPOSTD="$T/bin/outpostd" start_daemon "$T/outpost.conf" "$T/d2.log" ||
	fail "the copy did not start: $(cat "$T/d2.log")"
cp "$T/p2/orders.json" "$T/p3/"
kill -HUP $pid
check "no refusal logged: $(tail -3 "$T/d2.log")" wait_until 10 grep -q 'reload refused' "$T/d2.log"
# The problems are logged on the lines after "reload refused".
check "the refusal does not name the plugin" wait_until 10 grep -q "steps\[1\].type: step type \"db\": its plugin did not load" "$T/d2.log"
curl -s -m 2 "http://127.0.0.1:$admin/metrics" >"$T/metrics"
check "no metrics from the running set" grep -q '^outpost_queue_depth{pipeline="echo"}' "$T/metrics"
check "orders deployed though its plugin is missing" sh -c "! grep -q 'pipeline=\"orders\"' '$T/metrics'"
cp "$PLUGINS/db.so" "$T/bin/plugins/db.so"
kill -HUP $pid
queued() {
	curl -s -m 2 "http://127.0.0.1:$admin/metrics" | grep -q '^outpost_queue_depth{pipeline="orders"}'
}
check "orders not deployed after the plugin was installed: $(tail -3 "$T/d2.log")" wait_until 10 queued
check "db.so not mapped" mapped $pid "$T/bin/plugins/db\.so$"

finish
