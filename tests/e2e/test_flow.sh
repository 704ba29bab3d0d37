# Logic steps end to end: choice, for-each, do-while, parallel, retry, block,
# throw-error, call, log, output paths, pipeline onError and limits.
. "$(dirname "$0")/lib.sh"

what="choice picks the first true condition"
pipeline choice '{"name":"c","version":"1","steps":[{"type":"choice","config":{
  "when":[{"if":"{{ message.n > 10 }}","steps":[{"type":"set","config":{"template":"big"}}]},
          {"if":"{{ message.n > 5 }}","steps":[{"type":"set","config":{"template":"medium"}}]}],
  "otherwise":[{"type":"set","config":{"template":"small"}}]}}]}'
for n in 20:big 7:medium 1:small; do
	printf '{"n": %s}' "${n%%:*}" >"$T/in.json"
	run_ctl run "$T/choice.json" --input "$T/in.json" --compact
	expect_rc 0
	expect_json '.' "\"${n#*:}\""
done

what="choice without otherwise passes the message on"
pipeline choice2 '{"name":"c","version":"1","steps":[{"type":"choice","config":{
  "when":[{"if":"{{ false }}","steps":[{"type":"set","config":{"template":1}}]}]}}]}'
printf '{"keep": true}' >"$T/in.json"
run_ctl run "$T/choice2.json" --input "$T/in.json" --compact
expect_json '.' '{"keep":true}'

what="for-each sequential and parallel give results in order"
for par in false true; do
	pipeline fe "{\"name\":\"f\",\"version\":\"1\",\"steps\":[{\"type\":\"for-each\",\"config\":{
	  \"items\":\"{{ message.list }}\",\"parallel\":$par,\"maxParallel\":3,
	  \"steps\":[{\"type\":\"set\",\"config\":{\"template\":{\"sq\":\"{{ message * message }}\"}}}]}}]}"
	printf '{"list": [1,2,3,4,5,6,7,8,9,10]}' >"$T/in.json"
	run_ctl run "$T/fe.json" --input "$T/in.json" --compact
	expect_rc 0
	expect_json '[.[].sq]' '[1,4,9,16,25,36,49,64,81,100]'
done

what="for-each over something that is not an array"
printf '{"list": {"a": 1}}' >"$T/in.json"
run_ctl run "$T/fe.json" --input "$T/in.json"
expect_rc 1
expect_err_json '.code' '"ITEMS_NOT_ARRAY"'
expect_err_has 'expected an array, got an object'

what="for-each collect keeps going after a failing item"
pipeline fec '{"name":"f","version":"1","steps":[{"type":"for-each","config":{
  "onItemError":"collect","parallel":true,
  "steps":[{"type":"choice","config":{"when":[{"if":"{{ message == 2 }}","steps":[
     {"type":"throw-error","name":"no twos","config":{"code":"TWO","message":"two is not allowed"}}]}]}}]}}]}'
printf '[1,2,3]' >"$T/in.json"
run_ctl run "$T/fec.json" --input "$T/in.json" --compact
expect_rc 0
expect_json '.' '[1,{"error":{"code":"TWO","message":"two is not allowed","step":"no twos","class":"user"}},3]'

what="for-each fail mode stops on the failing item"
sed 's/"collect"/"fail"/' "$T/fec.json" >"$T/fef.json"
run_ctl run "$T/fef.json" --input "$T/in.json" --compact
expect_rc 1
expect_err_json '.code' '"TWO"'
expect_err_json '.step' '"no twos"'

what="do-while runs until the condition is false"
pipeline dw '{"name":"d","version":"1","steps":[{"type":"do-while","config":{
  "condition":"{{ message.i < 5 }}",
  "steps":[{"type":"set","config":{"template":{"i":"{{ message.i + 1 }}","s":"{{ CONCAT(message.s, message.i) }}"}}}]}}]}'
printf '{"i": 0, "s": ""}' >"$T/in.json"
run_ctl run "$T/dw.json" --input "$T/in.json" --compact
expect_rc 0
expect_json '.' '{"i":5,"s":"01234"}'

what="do-while stops at maxIterations with an error"
pipeline dw2 '{"name":"d","version":"1","steps":[{"type":"do-while","config":{
  "condition":"{{ true }}","maxIterations":7,"steps":[{"type":"set","config":{"template":1}}]}}]}'
run_ctl run "$T/dw2.json"
expect_rc 1
expect_err_json '.code' '"MAX_ITERATIONS"'
expect_err_json '.class' '"limit"'

what="parallel joins branch results in order"
pipeline par '{"name":"p","version":"1","steps":[{"type":"parallel","config":{"branches":[
  {"steps":[{"type":"set","config":{"template":{"a":"{{ message.x }}"}}}]},
  {"steps":[{"type":"transform","config":{"program":".x * 2"}}]},
  {"steps":[{"type":"set","config":{"template":"{{ UPPER(\"c\") }}"}}]}]}}]}'
printf '{"x": 21}' >"$T/in.json"
run_ctl run "$T/par.json" --input "$T/in.json" --compact
expect_rc 0
expect_json '.' '[{"a":21},42,"C"]'

what="a failing parallel branch fails the step"
pipeline parf '{"name":"p","version":"1","steps":[{"type":"parallel","config":{"branches":[
  {"steps":[{"type":"set","config":{"template":1}}]},
  {"steps":[{"type":"throw-error","name":"boom","config":{"code":"BOOM","message":"branch {{ 2 }} failed","class":"rejected"}}]}]}}]}'
run_ctl run "$T/parf.json"
expect_rc 1
expect_err_json '.' '{"code":"BOOM","message":"branch 2 failed","step":"boom","class":"rejected"}'

what="retry tries retryable classes again, up to attempts"
pipeline rt '{"name":"r","version":"1","steps":[{"type":"retry","config":{"attempts":3,"backoffMs":1,
  "steps":[{"type":"log","config":{"level":"info","message":"attempt"}},
           {"type":"throw-error","name":"flaky","config":{"code":"DOWN","message":"peer down","class":"noconn"}}]}}]}'
run_ctl run "$T/rt.json"
expect_rc 1
expect_err_json '.code' '"DOWN"'
n=$(grep -c 'r/steps\[0\].config.steps\[0\] exec=[0-9a-f-]*: attempt' "$T/err")
checks=$((checks + 1))
[ "$n" -eq 3 ] || fail "retry: $n attempts logged, expected 3"

what="retry does not retry a permanent class"
sed 's/"noconn"/"invalid"/' "$T/rt.json" >"$T/rt2.json"
run_ctl run "$T/rt2.json"
expect_rc 1
n=$(grep -c 'attempt$' "$T/err")
checks=$((checks + 1))
[ "$n" -eq 1 ] || fail "retry of a permanent error: $n attempts logged, expected 1"

what="block onError gets the error object and its output continues"
pipeline blk '{"name":"b","version":"1","steps":[
  {"type":"block","config":{"steps":[{"type":"throw-error","name":"inner","config":{"message":"oops"}}],
     "onError":[{"type":"set","config":{"template":{"handled":"{{ message.code }}","at":"{{ message.step }}"}}}]}},
  {"type":"set","config":{"merge":true,"template":{"after":true}}}]}'
run_ctl run "$T/blk.json" --compact
expect_rc 0
expect_json '.' '{"handled":"USER_ERROR","at":"inner","after":true}'

what="pipeline onError receives {code, message, step, class}"
pipeline oe '{"name":"o","version":"1",
  "steps":[{"type":"throw-error","name":"fail here","config":{"code":"E1","message":"{{ CONCAT(\"bad \", message.v) }}","class":"timeout"}}],
  "onError":[{"type":"set","config":{"template":{"caught":"{{ message }}"}}}]}'
printf '{"v": "thing"}' >"$T/in.json"
run_ctl run "$T/oe.json" --input "$T/in.json" --compact
expect_rc 0
expect_json '.caught' '{"code":"E1","message":"bad thing","step":"fail here","class":"timeout"}'

what="an error in onError is the execution's error"
pipeline oe2 '{"name":"o","version":"1",
  "steps":[{"type":"throw-error","config":{"message":"first"}}],
  "onError":[{"type":"throw-error","name":"handler","config":{"code":"SECOND","message":"handler failed"}}]}'
run_ctl run "$T/oe2.json"
expect_rc 1
expect_err_json '.code' '"SECOND"'
expect_err_json '.step' '"handler"'

what="call runs another pipeline; output stores its result"
mkdir -p "$T/calldir"
pipeline calldir/callee '{"name":"callee","version":"2.0","steps":[{"type":"set","config":{"template":{"got":"{{ message }}","by":"{{ metadata.pipeline.name }}","caller":"{{ metadata.caller }}"}}}]}'
pipeline calldir/caller '{"name":"caller","version":"1","steps":[{"type":"call","output":"res.inner","config":{"pipeline":"callee","input":"{{ message.x }}"}}]}'
printf '{"x": [1,2]}' >"$T/in.json"
run_ctl run "$T/calldir/caller.json" --pipelines "$T/calldir" --input "$T/in.json" --compact
expect_rc 0
expect_json '.' '{"x":[1,2],"res":{"inner":{"got":[1,2],"by":"callee","caller":"caller"}}}'

what="recursion is stopped by the depth limit"
pipeline rec '{"name":"rec","version":"1","settings":{"limits":{"maxDepth":10}},"steps":[{"type":"call","config":{"pipeline":"rec"}}]}'
mkdir -p "$T/recdir" && cp "$T/rec.json" "$T/recdir/"
run_ctl run "$T/recdir/rec.json" --pipelines "$T/recdir"
expect_rc 1
expect_err_json '.code' '"DEPTH_LIMIT"'
expect_err_json '.class' '"limit"'

what="message size limit"
pipeline big '{"name":"big","version":"1","settings":{"limits":{"maxMessageBytes":2048}},"steps":[
  {"type":"do-while","config":{"condition":"{{ true }}","maxIterations":100,"steps":[
    {"type":"set","config":{"template":"{{ CONCAT(message, \"0123456789012345678901234567890123456789\") }}"}}]}}]}'
printf '""' >"$T/in.json"
run_ctl run "$T/big.json" --input "$T/in.json"
expect_rc 1
expect_err_json '.code' '"MESSAGE_TOO_LARGE"'

what="step count limit"
pipeline many '{"name":"m","version":"1","settings":{"limits":{"maxSteps":50}},"steps":[
  {"type":"for-each","config":{"items":"{{ [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30] }}",
   "steps":[{"type":"set","config":{"template":1}},{"type":"set","config":{"template":2}}]}}]}'
run_ctl run "$T/many.json"
expect_rc 1
expect_err_json '.code' '"STEP_LIMIT"'

what="iteration limit"
pipeline iters '{"name":"i","version":"1","settings":{"limits":{"maxIterations":5}},"steps":[
  {"type":"do-while","config":{"condition":"{{ true }}","steps":[{"type":"set","config":{"template":1}}]}}]}'
run_ctl run "$T/iters.json"
expect_rc 1
expect_err_json '.code' '"ITERATION_LIMIT"'

what="execution timeout"
pipeline slow '{"name":"s","version":"1","settings":{"timeoutMs":50},"steps":[
  {"type":"retry","config":{"attempts":100,"backoffMs":20,"jitter":false,"multiplier":1,
   "steps":[{"type":"throw-error","config":{"message":"again","class":"retry"}}]}},
  {"type":"set","config":{"template":"not reached"}}]}'
run_ctl run "$T/slow.json"
expect_rc 1
expect_err_json '.code' '"EXECUTION_TIMEOUT"'
expect_err_json '.class' '"timeout"'
expect_err_has 'last error USER_ERROR: again'

what="log masks sensitive fields"
pipeline mask '{"name":"mask","version":"1","settings":{"sensitiveFields":["password","card"]},"steps":[
  {"type":"log","config":{"message":"{{ message }}"}}]}'
printf '{"user":"ann","password":"hunter2","nested":[{"card":"4111"}]}' >"$T/in.json"
run_ctl run "$T/mask.json" --input "$T/in.json" --compact
expect_rc 0
expect_json '.password' '"hunter2"'
expect_err_has '"password":"***"'
expect_err_has '"card":"***"'
checks=$((checks + 1))
case "$err" in *hunter2*|*4111*) fail "secret in log: $err" ;; esac

what="log masks sensitive fields inside a string it builds"
pipeline mask2 '{"name":"mask2","version":"1","settings":{"sensitiveFields":["password","card"]},"steps":[
  {"type":"log","config":{"message":"got {{ message }}"}},
  {"type":"log","config":{"message":"pw {{ message.password }} card {{ UPPER(message.nested[0].card) }}"}}]}'
run_ctl run "$T/mask2.json" --input "$T/in.json" --compact
expect_rc 0
expect_json '.password' '"hunter2"'
expect_err_has 'got {"user":"ann","password":"***","nested":[{"card":"***"}]}'
expect_err_has 'pw *** card ***'
checks=$((checks + 1))
case "$err" in *hunter2*|*4111*) fail "secret in log: $err" ;; esac

what="metadata and globals"
pipeline meta '{"name":"meta","version":"3.1","steps":[{"type":"set","config":{"template":{
  "p":"{{ metadata.pipeline }}","a":"{{ metadata.attempt }}","t":"{{ metadata.trigger.type }}",
  "idlen":"{{ SIZE(metadata.execution_id) }}","g":"{{ globals.region }}"}}}]}'
run_ctl run "$T/meta.json" --global region=eu-1 --compact
expect_rc 0
expect_json '.' '{"p":{"name":"meta","version":"3.1"},"a":1,"t":"manual","idlen":36,"g":"eu-1"}'

what="a retryable class raised by the pipeline still reaches onError"
pipeline busy '{"name":"b","version":"1",
  "steps":[{"type":"block","name":"inner","config":{
     "steps":[{"type":"throw-error","config":{"code":"B1","message":"busy now","class":"busy"}}],
     "onError":[{"type":"throw-error","config":{"code":"B2","message":"{{ message.code }}","class":"busy"}}]}}],
  "onError":[{"type":"log","config":{"message":"handled"}}]}'
run_ctl run "$T/busy.json" --compact
expect_rc 0
expect_json '.code' '"B2"'
expect_json '.message' '"B1"'
expect_json '.class' '"busy"'

what="the top onError still runs after the execution timed out"
pipeline slow2 '{"name":"s2","version":"1","settings":{"timeoutMs":50},"steps":[
  {"type":"block","config":{
    "steps":[{"type":"retry","config":{"attempts":100,"backoffMs":20,"jitter":false,"multiplier":1,
       "steps":[{"type":"throw-error","config":{"message":"again","class":"retry"}}]}}],
    "onError":[{"type":"log","config":{"message":"a block does not catch a timeout"}}]}}],
  "onError":[{"type":"log","name":"report","config":{"message":"timed out: {{ message.code }}"}}]}'
run_ctl run "$T/slow2.json" --compact
expect_rc 0
expect_json '.code' '"EXECUTION_TIMEOUT"'
expect_err_has 'timed out: EXECUTION_TIMEOUT'
checks=$((checks + 1))
case "$err" in *"does not catch"*) fail "block onError caught a timeout: $err" ;; esac

what="the top onError still runs after the step limit"
pipeline lim '{"name":"lim","version":"1","settings":{"limits":{"maxSteps":3}},"steps":[
  {"type":"log","config":{"message":"1"}},{"type":"log","config":{"message":"2"}},
  {"type":"log","config":{"message":"3"}},{"type":"log","name":"fourth","config":{"message":"4"}}],
  "onError":[{"type":"log","name":"handler","config":{"message":"{{ message.step }}"}}]}'
run_ctl run "$T/lim.json" --compact
expect_rc 0
expect_json '.code' '"STEP_LIMIT"'
expect_json '.step' '"fourth"'

what="a failure in one parallel branch is not masked by a cancelled nested loop"
pipeline par2 '{"name":"par2","version":"1","steps":[{"type":"parallel","name":"par","config":{"branches":[
  {"steps":[{"type":"throw-error","name":"boom","config":{"code":"REAL","message":"real failure","class":"busy"}}]},
  {"steps":[{"type":"for-each","name":"fe","config":{"items":"{{ [1,2,3,4,5,6,7,8] }}","parallel":true,"maxParallel":4,
     "steps":[{"type":"retry","config":{"attempts":50,"backoffMs":10,"jitter":false,"multiplier":1,
        "steps":[{"type":"throw-error","config":{"message":"slow","class":"retry"}}]}}]}}]}]}}]}'
run_ctl run "$T/par2.json"
expect_rc 1
expect_err_json '.code' '"REAL"'
expect_err_json '.class' '"busy"'

what="masking keeps the key names of sensitive members, whatever their type"
pipeline mask2 '{"name":"mask2","version":"1","settings":{"sensitiveFields":["pw","pin"]},"steps":[
  {"type":"log","config":{"message":"{{ message }}"}}]}'
printf '{"pw":"s3cret","pin":1234,"list":[{"pw":{"deep":"x"}}]}' >"$T/in.json"
run_ctl run "$T/mask2.json" --input "$T/in.json" --compact
expect_rc 0
expect_err_has '{"pw":"***","pin":"***","list":[{"pw":"***"}]}'

finish
