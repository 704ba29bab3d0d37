# The demo pipeline from `make run`, end to end through outpostctl run.
. "$(dirname "$0")/lib.sh"
P=$TOP/packaging/demo/pipelines

what="demo order"
run_ctl run "$P/demo-orders.json" --pipelines "$P" --input "$TOP/packaging/demo/input.json" --compact
expect_rc 0
expect_json '.id' '"A-1001"'
expect_json '.subtotal' '1041.5'
expect_json '.tax' '{"rate":0.2,"amount":208.3}'
expect_json '.total' '1249.8'
expect_json '.reference' '"DE-A-1001"'
expect_json '.route' '"approval"'
expect_json '.lines | length' '2'
expect_json 'has("cardNumber")' 'false'

what="small order with a global tax rate"
printf '{"id":"B-7","customer":"x","country":"FR","items":[{"sku":"a","qty":1,"price":10}]}' >"$T/in.json"
run_ctl run "$P/demo-orders.json" --pipelines "$P" --input "$T/in.json" \
	--global 'taxRates={"FR":0.055}' --compact
expect_rc 0
expect_json '.tax' '{"rate":0.055,"amount":0.55}'
expect_json '.total' '10.55'
expect_json '.route' '"automatic"'

what="input from stdin"
"$OUTPOSTCTL" run "$P/demo-orders.json" --pipelines "$P" --input - --compact \
	<"$TOP/packaging/demo/input.json" >"$T/out" 2>"$T/err"
rc=$?
out=$(cat "$T/out")
expect_rc 0
expect_json '.route' '"approval"'

what="invalid order goes to onError"
printf '{"id":"","customer":"x","country":"germany","items":[]}' >"$T/bad.json"
run_ctl run "$P/demo-orders.json" --pipelines "$P" --input "$T/bad.json" --compact
expect_rc 0
expect_json '.accepted' 'false'
expect_json '.error.code' '"VALIDATION"'
expect_json '.error.class' '"invalid"'
expect_json '.error.step' '"check order"'
expect_json '.error.message | test("/country")' 'true'

what="input that is not JSON"
printf '{"id": ' >"$T/broken.json"
run_ctl run "$P/demo-orders.json" --pipelines "$P" --input "$T/broken.json"
expect_rc 2
expect_err_has "not valid JSON"

what="called pipeline missing"
run_ctl run "$P/demo-orders.json" --input "$TOP/packaging/demo/input.json"
expect_rc 2
expect_err_has 'calls pipeline "demo-tax", which is not loaded'

finish
