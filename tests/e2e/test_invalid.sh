# Invalid pipelines are refused whole, with every problem named by its JSON
# path, and nothing runs (exit 2).
. "$(dirname "$0")/lib.sh"

what="many problems at once"
pipeline bad '{
  "name": "bad name!",
  "version": "1",
  "colour": "blue",
  "steps": [
    {"type": "set", "config": {"template": {"a": "{{ message.x + }}"}}},
    {"type": "nosuch"},
    {"type": "choice", "config": {"when": [{"if": "{{ FOO(1) }}", "steps": []}], "extra": 1}},
    {"type": "transform", "config": {"program": ".a | | .b"}},
    {"type": "validate", "config": {"schema": {"type": "nonsense"}}},
    {"type": "for-each", "config": {"steps": [], "maxParallel": 1000}},
    {"type": "log", "config": {"level": "loud"}},
    {"type": "retry", "config": {"steps": [{"type": "set"}]}}
  ]
}'
run_ctl run "$T/bad.json"
expect_rc 2
expect_err_has 'bad.json: name: expected 1 to 128 letters'
expect_err_has 'bad.json: colour: unknown key'
expect_err_has 'bad.json: steps[0].config.template.a: '
expect_err_has 'bad.json: steps[1].type: unknown step type "nosuch"'
expect_err_has 'bad.json: steps[2].config.when[0].if: bad expression: '
expect_err_has 'unknown function'
expect_err_has 'bad.json: steps[2].config.extra: unknown key; expected one of: when, otherwise'
expect_err_has 'bad.json: steps[3].config.program: jq program does not compile'
expect_err_has 'bad.json: steps[4].config.schema: bad schema'
expect_err_has 'bad.json: steps[5].config.maxParallel: 1000 is out of range; expected 1 to 64'
expect_err_has 'bad.json: steps[6].config.level: unknown value "loud"; expected one of "error", "warn", "info", "debug"'
expect_err_has 'bad.json: steps[6].config.message: missing required key'
expect_err_has 'bad.json: steps[7].config.steps[0].config.template: missing required key'
expect_err_has 'nothing was run'
case "$out" in "") ;; *) fail "stdout should be empty, got $out" ;; esac

what="expression syntax error gives the column"
pipeline col '{"name":"c","version":"1","steps":[{"type":"log","config":{"message":"x {{ CONCAT(1, }}"}}]}'
run_ctl run "$T/col.json"
expect_rc 2
expect_err_has 'steps[0].config.message: bad expression: column'

what="not JSON"
printf '{"name": "x",\n  "version": 1,,\n}' >"$T/nojson.json"
run_ctl run "$T/nojson.json"
expect_rc 2
expect_err_has 'not valid JSON: syntax error at line 2'

what="wrong types"
pipeline types '{"name":"t","version":2,"steps":{"a":1},"settings":{"timeoutMs":"soon"}}'
run_ctl run "$T/types.json"
expect_rc 2
expect_err_has 'version: expected string, got a number'
expect_err_has 'steps: expected array of steps, got an object'
expect_err_has 'settings.timeoutMs: expected an integer, got a string'

what="too deeply nested"
deep='{"type":"set","config":{"template":1}}'
i=0
while [ $i -lt 40 ]; do
	deep="{\"type\":\"block\",\"config\":{\"steps\":[$deep]}}"
	i=$((i + 1))
done
pipeline deep "{\"name\":\"d\",\"version\":\"1\",\"steps\":[$deep]}"
run_ctl run "$T/deep.json"
expect_rc 2
expect_err_has 'steps are nested deeper than 32 levels'

what="check command"
pipeline good '{"name":"g","version":"1","steps":[{"type":"set","config":{"template":{"ok":true}}}]}'
run_ctl check "$T/good.json"
expect_rc 0
run_ctl check "$T/good.json" "$T/types.json"
expect_rc 2
expect_err_has 'types.json: version'

what="check a file that is also in --pipelines loads it once"
mkdir "$T/dir"
pipeline dir/caller '{"name":"caller","version":"1","steps":[{"type":"call","config":{"pipeline":"callee"}}]}'
pipeline dir/callee '{"name":"callee","version":"1","steps":[{"type":"set","config":{"template":1}}]}'
run_ctl check "$T/dir/caller.json" --pipelines "$T/dir"
expect_rc 0
run_ctl check "$T/dir/caller.json"
expect_rc 2
expect_err_has 'callee'

what="a key given twice is refused, not silently ignored"
pipeline dup '{"name":"dup","version":"1","steps":[{"type":"log","config":{"message":"a","message":"b"}}]}'
run_ctl check "$T/dup.json"
expect_rc 2
expect_err_has 'dup.json: steps[0].config.message: key given more than once'

finish
