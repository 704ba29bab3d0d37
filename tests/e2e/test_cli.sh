# outpostctl's listing commands, its usage and per-command --help, and the
# shipped JSON Schema being the one the tables generate.
. "$(dirname "$0")/lib.sh"

what="--version names the program and its version"
run_ctl --version
expect_rc 0
check "prints $out" sh -c "printf '%s' '$out' | grep -Eqx 'outpostctl [0-9]+\.[0-9]+\.[0-9]+.*'"

what="steps lists every type"
run_ctl steps
expect_rc 0
for t in set choice for-each do-while parallel retry block call log throw-error transform validate; do
	checks=$((checks + 1))
	printf '%s\n' "$out" | grep -q "^$t " || fail "steps: $t missing from: $out"
done

what="steps TYPE lists its keys from the table"
run_ctl steps for-each
expect_rc 0
for k in items steps parallel maxParallel onItemError; do
	checks=$((checks + 1))
	printf '%s\n' "$out" | grep -qE "^  $k " || fail "steps for-each: key $k missing: $out"
done
checks=$((checks + 1))
printf '%s\n' "$out" | grep -qE '^  maxParallel +integer 1\.\.64 ' || fail "maxParallel bounds: $out"
run_ctl steps choice
checks=$((checks + 1))
printf '%s\n' "$out" | grep -qE '^  when\[\]\.if +expression string +required' ||
	fail "choice when[].if: $out"

what="unknown step type"
run_ctl steps nosuch
expect_rc 2
expect_err_has 'unknown step type "nosuch"'

what="docs/pipeline.schema.json is what outpostctl schema prints"
run_ctl schema
expect_rc 0
checks=$((checks + 1))
if ! printf '%s\n' "$out" | diff -q - "$TOP/docs/pipeline.schema.json" >/dev/null; then
	fail "docs/pipeline.schema.json is stale: regenerate it with outpostctl schema"
fi
expect_json '."$defs"."config-for-each".properties.maxParallel.maximum' '64'
expect_json '.required' '["name","version","steps"]'

what="unknown command and usage"
run_ctl frobnicate
expect_rc 2
expect_err_has 'unknown command "frobnicate"'
run_ctl run
expect_rc 2
expect_err_has 'usage: outpostctl run'
run_ctl steps --bogus
expect_rc 2
expect_err_has 'usage: outpostctl steps'

what="COMMAND --help: usage on stdout, exit 0"
for c in run check steps schema account; do
	run_ctl "$c" --help
	expect_rc 0
	checks=$((checks + 1))
	case $out in
	"usage: outpostctl $c"*) [ -z "$err" ] || fail "$c --help wrote on stderr: $err" ;;
	*) fail "$c --help: stdout: $out; stderr: $err" ;;
	esac
done

finish
