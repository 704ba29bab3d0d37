# The rest step end to end through outpostctl run, against real HTTP(S)
# servers on loopback (tests/peers/http_peer.py): requests built from
# expressions, bodies of each type, responses of each type, the status
# mapping, accounts of every kind (HTTP Basic, bearer, OAuth2 with its token
# cache and refetch, TLS client certificates), TLS verification, connection
# reuse, and hostile peers: garbage, a truncated answer, a huge one, a hang.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/peer.sh"
. "$E2E_DIR/broker.sh" # broker_pki: the same throwaway PKI

broker_pki "$T/pki" || exit 1
http_peer_start PORT --oauth 'svc id:s3cr&t' --basic 'alice:wonder land' || exit 1
http_peer_start TLS_PORT --cert "$T/pki/server.pem" --key "$T/pki/server.key" \
	--client-ca "$T/pki/ca.pem" || exit 1
http_peer_start TLS_OPEN_PORT --cert "$T/pki/server.pem" --key "$T/pki/server.key" || exit 1
URL=http://127.0.0.1:$PORT

agent_config

# rest NAME CONFIG: a pipeline of one rest step with CONFIG (JSON members).
rest() { step_pipeline "$1" rest "$2"; }

what="GET with a query from expressions; the answer is {status, headers, body}"
rest get "\"url\":\"$URL/echo?fixed=1\",\"query\":{\"q\":\"{{ message.q }}\",\"n\":\"{{ message.n }}\",\"tag\":[\"a\",\"b\"],\"skip\":null}"
run get '{"q":"a b&c=d/é","n":7}'
expect_rc 0
expect_json '.status' '200'
expect_json '.body.method' '"GET"'
expect_json '.body.query' '"fixed=1&q=a%20b%26c%3Dd%2F%C3%A9&n=7&tag=a&tag=b"'
expect_json '.headers["content-type"]' '"application/json"'
expect_json '.body.headers.expect' 'null'

what="POST a JSON body with headers; Content-Type is set for it"
rest post "\"url\":\"$URL/echo\",\"method\":\"POST\",\"headers\":{\"X-Order\":\"{{ message.id }}\",\"X-Num\":3,\"X-Gone\":null},\"body\":{\"id\":\"{{ message.id }}\",\"items\":\"{{ message.items }}\"}"
run post '{"id":"A-1","items":[1,2]}'
expect_rc 0
expect_json '.body.method' '"POST"'
expect_json '.body.headers["x-order"]' '"A-1"'
expect_json '.body.headers["x-num"]' '"3"'
expect_json '.body.headers["x-gone"]' 'null'
expect_json '.body.headers["content-type"]' '"application/json"'
expect_json '.body.body | fromjson' '{"id":"A-1","items":[1,2]}'

what="form and raw bodies, PUT/PATCH/DELETE, a method from an expression"
rest form "\"url\":\"$URL/echo\",\"method\":\"{{ message.m }}\",\"bodyType\":\"form\",\"body\":{\"a\":\"x y\",\"b\":[1,2],\"c\":true}"
run form '{"m":"PUT"}'
expect_json '[.body.method, .body.body, .body.headers["content-type"]]' \
	'["PUT","a=x%20y&b=1&b=2&c=true","application/x-www-form-urlencoded"]'
rest raw "\"url\":\"$URL/echo\",\"method\":\"PATCH\",\"bodyType\":\"raw\",\"body\":\"<a>{{ message.v }}</a>\",\"headers\":{\"content-type\":\"application/xml\"}"
run raw '{"v":"1"}'
expect_json '[.body.method, .body.body, .body.headers["content-type"]]' \
	'["PATCH","<a>1</a>","application/xml"]'
rest del "\"url\":\"$URL/echo\",\"method\":\"DELETE\""
run del
expect_json '.body.method' '"DELETE"'
rest head "\"url\":\"$URL/text\",\"method\":\"HEAD\""
run head
expect_json '[.status, .body]' '[200,null]'

what="text, binary and broken-JSON answers"
rest text "\"url\":\"$URL/text\""
run text
expect_json '.body' '"héllo, world"'
rest bin "\"url\":\"$URL/binary\""
run bin
expect_json '.bodyEncoding' '"base64"'
expect_json '.body' "\"$(/usr/bin/python3 -c 'import base64; print(base64.b64encode(bytes(range(256))).decode())')\""
rest b64 "\"url\":\"$URL/text\",\"responseType\":\"base64\""
run b64
expect_json '.body' "\"$(printf 'h\303\251llo, world' | base64)\""
rest badjson "\"url\":\"$URL/badjson\""
run badjson
expect_rc 1
expect_err_json '[.code, .class]' '["HTTP_BAD_RESPONSE","parse"]'
expect_err_has 'not JSON'

what="status mapping: 5xx, 429 and 408 retryable, other 4xx not"
for s in 500:retry 503:retry 429:busy 408:timeout 404:notfound 401:auth 400:rejected 302:rejected; do
	rest st "\"url\":\"$URL/status/${s%%:*}\""
	run st
	expect_rc 1
	expect_err_json '[.code, .class]' "[\"HTTP_STATUS\",\"${s#*:}\"]"
done
expect_err_has "GET http://127.0.0.1:$PORT/status/302 answered 302"
rest st "\"url\":\"$URL/status/503\",\"errorOnStatus\":false"
run st
expect_rc 0
expect_json '[.status, .body.error, .headers["retry-after"]]' '[503,"status 503","1"]'
rest redir "\"url\":\"$URL/redirect?to=/echo\",\"followRedirects\":true"
run redir
expect_json '[.status, .body.path]' '[200,"/echo"]'

what="bad requests are refused before anything is sent"
rest badurl "\"url\":\"{{ message.u }}\""
run badurl '{"u":"ftp://127.0.0.1/x"}'
expect_err_json '[.code, .class]' '["REST_REQUEST","invalid"]'
rest badm "\"url\":\"$URL/echo\",\"method\":\"{{ message.m }}\""
run badm '{"m":"BREW"}'
expect_err_json '.message' '"config.method: expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS, got \"BREW\""'
rest hdr "\"url\":\"$URL/echo\",\"headers\":{\"x\":\"{{ message.v }}\"}"
run hdr '{"v":"a\r\nInjected: 1"}'
expect_err_json '.class' '"invalid"'
rest static '"url":"file:///etc/passwd","method":"BREW","account":"../x"'
run_ctl check "$T/static.json"
expect_rc 2
expect_err_has 'steps[0].config.url: expected an absolute http:// or https:// URL'
expect_err_has 'steps[0].config.method: "BREW" is not a method'
expect_err_has 'steps[0].config.account: "../x" is not an account name'

what="accounts: Basic, bearer; none in outpostctl run without --config"
account peer-basic '{"type":"basic","username":"alice","password":"wonder land"}'
rest basic "\"url\":\"$URL/basic\",\"account\":\"peer-basic\""
run basic
expect_rc 0
expect_json '.body.user' '"alice"'
run_ctl run "$T/basic.json" --compact
expect_err_json '[.code, .class]' '["ACCOUNT","unsupported"]'
account peer-wrong '{"type":"basic","username":"alice","password":"nope"}'
rest basic2 "\"url\":\"$URL/basic\",\"account\":\"peer-wrong\""
run basic2
expect_err_json '.class' '"auth"'
account tok '{"type":"bearer","token":"static-token-1"}'
rest bearer "\"url\":\"$URL/echo\",\"account\":\"tok\""
run bearer
expect_json '.body.headers.authorization' '"Bearer static-token-1"'
rest missing "\"url\":\"$URL/echo\",\"account\":\"nobody-here\""
run missing
expect_err_json '[.code, .class]' '["ACCOUNT","notfound"]'
expect_err_has 'no account named nobody-here'
rest both "\"url\":\"$URL/echo\",\"account\":\"tok\",\"headers\":{\"Authorization\":\"x\"}"
run both
expect_err_json '.class' '"config"'

what="OAuth2: a token is fetched once, cached, and fetched again after a 401"
account api "{\"type\":\"oauth2\",\"tokenUrl\":\"$URL/token\",\"clientId\":\"svc id\",\"clientSecret\":\"s3cr&t\",\"scope\":\"orders.read\"}"
pipeline oauth "{\"name\":\"o\",\"version\":\"1\",\"steps\":[{\"type\":\"for-each\",\"config\":{\"items\":\"{{ message.list }}\",\"steps\":[
  {\"type\":\"choice\",\"config\":{\"when\":[{\"if\":\"{{ message == 3 }}\",\"steps\":[
    {\"type\":\"rest\",\"config\":{\"url\":\"$URL/revoke\",\"method\":\"POST\"}}]}]}},
  {\"type\":\"rest\",\"config\":{\"url\":\"$URL/protected\",\"account\":\"api\"}}]}},
  {\"type\":\"rest\",\"config\":{\"url\":\"$URL/stats\"}}]}"
run oauth '{"list":[1,2,3,4]}'
expect_rc 0
expect_json '.body.tokens' '2'
what="OAuth2: a token is fetched again as its lifetime runs out (a tenth early), not only after a 401"
# The peer's tokens live 1 s and are never refused, so only the client's own
# refresh (a tenth of the lifetime early) brings tok-2: the loop runs until
# it does, or fails at maxIterations.
http_peer_start SHORT_PORT --oauth 'svc id:s3cr&t' --token-ttl 1 || exit 1
account short "{\"type\":\"oauth2\",\"tokenUrl\":\"http://127.0.0.1:$SHORT_PORT/token\",\"clientId\":\"svc id\",\"clientSecret\":\"s3cr&t\"}"
pipeline refresh "{\"name\":\"r\",\"version\":\"1\",\"steps\":[{\"type\":\"do-while\",\"config\":{\"maxIterations\":1000000,
  \"condition\":\"{{ message.body.token == 'tok-1' }}\",
  \"steps\":[{\"type\":\"rest\",\"config\":{\"url\":\"http://127.0.0.1:$SHORT_PORT/protected\",\"account\":\"short\"}}]}},
  {\"type\":\"rest\",\"output\":\"stats\",\"config\":{\"url\":\"http://127.0.0.1:$SHORT_PORT/stats\"}}]}"
run refresh
expect_rc 0
expect_json '[.body.token, .stats.body.tokens]' '["tok-2",2]'
account api-bad "{\"type\":\"oauth2\",\"tokenUrl\":\"$URL/token\",\"clientId\":\"svc id\",\"clientSecret\":\"wrong\"}"
rest oauthbad "\"url\":\"$URL/protected\",\"account\":\"api-bad\""
run oauthbad
expect_rc 1
expect_err_json '.class' '"auth"'
expect_err_has 'invalid_client (client authentication failed)'

what="connections are reused between requests of a step"
pipeline reuse "{\"name\":\"r\",\"version\":\"1\",\"steps\":[
  {\"type\":\"rest\",\"config\":{\"url\":\"$URL/stats\"},\"output\":\"before\"},
  {\"type\":\"for-each\",\"config\":{\"items\":\"{{ [1,2,3,4,5,6,7,8,9,10] }}\",\"steps\":[
    {\"type\":\"rest\",\"config\":{\"url\":\"$URL/echo\"}}]},\"output\":\"loop\"},
  {\"type\":\"rest\",\"config\":{\"url\":\"$URL/stats\"},\"output\":\"after\"}]}"
run reuse
expect_rc 0
# The ten echo requests share one connection (the stats steps have their own).
expect_json '.after.body.connections - .before.body.connections' '2'

what="TLS: verified against a CA file, refused without it, client certificates"
rest tls "\"url\":\"https://127.0.0.1:$TLS_OPEN_PORT/echo\",\"caFile\":\"$T/pki/ca.pem\""
run tls
expect_rc 0
expect_json '.status' '200'
rest tlsno "\"url\":\"https://127.0.0.1:$TLS_OPEN_PORT/echo\""
run tlsno
expect_rc 1
expect_err_json '.class' '"auth"'
rest tlsrogue "\"url\":\"https://127.0.0.1:$TLS_OPEN_PORT/echo\",\"caFile\":\"$T/pki/rogue-ca.pem\""
run tlsrogue
expect_err_json '.class' '"auth"'
rest tlsoff "\"url\":\"https://127.0.0.1:$TLS_OPEN_PORT/echo\",\"tlsVerify\":false"
run tlsoff
expect_json '.status' '200'
jq -n --rawfile c "$T/pki/client-a.pem" --rawfile k "$T/pki/client-a.key" \
	'{type:"certificate",certificate:$c,privateKey:$k}' >"$T/cert.json"
account agent-a "$(cat "$T/cert.json")"
rest mtls "\"url\":\"https://127.0.0.1:$TLS_PORT/echo\",\"caFile\":\"$T/pki/ca.pem\",\"account\":\"agent-a\""
run mtls
expect_rc 0
expect_json '.body.clientCert' '"agent-a"'
rest mtls2 "\"url\":\"https://127.0.0.1:$TLS_PORT/echo\",\"caFile\":\"$T/pki/ca.pem\",\"account\":\"tok\",\"certificateAccount\":\"agent-a\""
run mtls2
expect_json '[.body.clientCert, .body.headers.authorization]' '["agent-a","Bearer static-token-1"]'
rest nocert "\"url\":\"https://127.0.0.1:$TLS_PORT/echo\",\"caFile\":\"$T/pki/ca.pem\""
run nocert
expect_rc 1
checks=$((checks + 1))
case "$err" in *'"class": "noconn"'* | *'"class": "io"'*) ;; *) fail "$what: no client certificate: $err" ;; esac

what="hostile peers: refused port, garbage, truncated, huge, hang"
rest refused "\"url\":\"http://127.0.0.1:1/x\""
run refused
expect_err_json '[.code, .class]' '["HTTP_CONNECT","noconn"]'
rest garbage "\"url\":\"$URL/garbage\""
run garbage
expect_err_json '.class' '"parse"'
rest trunc "\"url\":\"$URL/truncated\""
run trunc
expect_err_json '.class' '"io"'
rest huge "\"url\":\"$URL/huge?bytes=5000000\",\"maxResponseBytes\":1000000"
run huge
expect_err_json '[.code, .class]' '["HTTP_RESPONSE_TOO_LARGE","limit"]'
rest hugec "\"url\":\"$URL/huge?bytes=5000000&chunked=1\",\"maxResponseBytes\":1000000"
run hugec
expect_err_json '[.code, .class]' '["HTTP_RESPONSE_TOO_LARGE","limit"]'
expect_err_has 'larger than maxResponseBytes (1000000)'
rest big "\"url\":\"$URL/huge?bytes=3000000&chunked=1\",\"responseType\":\"base64\""
run big
expect_rc 0
expect_json '.body | length' '4000000'
rest hang "\"url\":\"$URL/hang\",\"timeoutMs\":300"
run hang
expect_err_json '[.code, .class]' '["HTTP_TIMEOUT","timeout"]'
expect_err_has 'no complete answer within 300 ms'

what="outpostd: an account set while it runs is used by the next execution"
mkdir -p "$T/pipelines"
cat >"$T/pipelines/proxy.json" <<JSON
{"name":"proxy","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/proxy","mode":"sync"}},
 "steps":[{"type":"rest","config":{"url":"$URL/protected","account":"later"}},
          {"type":"set","config":{"template":"{{ message.body }}"}}]}
JSON
cat >"$T/daemon.conf" <<CONF
[agent]
data_dir = $T/ddata
pipelines_dir = $T/pipelines
shutdown_timeout = 2s
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
[accounts]
key_file = $T/daemon.key
CONF
if start_daemon "$T/daemon.conf" "$T/daemon.log"; then
	out=$(curl -s "http://127.0.0.1:$port/proxy")
	expect_json '.error.message' '"config.account: no account named later: no accounts key at '"$T"'/daemon.key yet (it is made when the first account is set)"'
	printf '{"type":"oauth2","tokenUrl":"%s/token","clientId":"svc id","clientSecret":"s3cr&t"}' "$URL" |
		"$OUTPOSTCTL" account set later --config "$T/daemon.conf" >/dev/null
	out=$(curl -s "http://127.0.0.1:$port/proxy")
	expect_json '.ok' 'true'
	kill "$pid"
	wait "$pid"
else
	fail "$what: the daemon did not start: $(cat "$T/daemon.log")"
fi

what="outpostd: shutdown stops a request that hangs, and the event is kept"
cat >"$T/pipelines/slow.json" <<JSON
{"name":"slow","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/slow","mode":"async"}},
 "steps":[{"type":"rest","config":{"url":"$URL/hang","timeoutMs":600000}}]}
JSON
sed -i 's/^shutdown_timeout = .*/shutdown_timeout = 500ms/' "$T/daemon.conf"
hanging() { [ "$(curl -s "$URL/stats" | jq .hanging)" -ge "$1" ]; }
h0=$(curl -s "$URL/stats" | jq .hanging)
if start_daemon "$T/daemon.conf" "$T/daemon2.log"; then
	out=$(curl -s -XPOST -d '{}' -H 'content-type: application/json' "http://127.0.0.1:$port/slow")
	expect_json '.eventId | length' '36'
	checks=$((checks + 1))
	wait_until 20 hanging $((h0 + 1)) || fail "$what: the request never reached the peer"
	kill -TERM "$pid"
	checks=$((checks + 1))
	# The step polls for cancellation about once a second: bounded well
	# below its 600 s timeout.
	wait_until 30 sh -c "! kill -0 $pid 2>/dev/null" || fail "$what: outpostd still runs"
	wait "$pid"
	expect_log() {
		checks=$((checks + 1))
		grep -q "$1" "$T/daemon2.log" || fail "$what: the log lacks \"$1\""
	}
	expect_log 'executions still running after 500 ms: stopping them'
	# The event went back to its queue: the next start runs it again.
	if start_daemon "$T/daemon.conf" "$T/daemon3.log"; then
		checks=$((checks + 1))
		wait_until 20 hanging $((h0 + 2)) || fail "$what: the event was not run again"
		kill -TERM "$pid"
		wait "$pid"
	else
		fail "$what: the daemon did not start again: $(cat "$T/daemon3.log")"
	fi
else
	fail "$what: the daemon did not start: $(cat "$T/daemon2.log")"
fi

what="no secret in any error or log line"
checks=$((checks + 1))
grep -q -e 'wonder land' -e 's3cr&t' -e 's3cr%26t' -e 'static-token-1' -e 'tok-[0-9]' \
	-e 'PRIVATE KEY' "$T/errors" "$T"/daemon*.log && fail "$what: a secret was printed"

finish
