# The file step end to end through outpostctl run: JSON, JSON lines, CSV
# (header, delimiters, quoting) and text, read and written (atomically) and
# appended, inside the folders of [files] dirs only: "..", absolute paths
# and symbolic links that lead out are refused, as is a folder the config
# does not list.
. "$(dirname "$0")/lib.sh"

X=$T/exchange
mkdir -p "$X/in" "$T/secret"
printf 'top secret\n' >"$T/secret/key.txt"
ln -s "$T/secret" "$X/escape"
agent_config '[files]' "dirs = $X, /nonexistent/also-allowed"

# file NAME CONFIG: a pipeline of one file step.
file() { step_pipeline "$1" file "$2"; }

what="JSON: written atomically, read back"
file wj "\"dir\":\"$X\",\"path\":\"{{ message.name }}.json\",\"operation\":\"write\",\"content\":{\"id\":\"{{ message.id }}\",\"n\":[1,2.5]}"
run wj '{"name":"order-7","id":"A-7"}'
expect_rc 0
expect_json '.' '{"path":"order-7.json","bytes":25}'
checks=$((checks + 1))
[ "$(cat "$X/order-7.json")" = '{"id":"A-7","n":[1,2.5]}' ] || fail "$what: $(cat "$X/order-7.json")"
checks=$((checks + 1))
[ -z "$(find "$X" -name '.*.tmp')" ] || fail "$what: a temporary file was left"
file rj "\"dir\":\"$X\",\"path\":\"{{ message.name }}\""
run rj '{"name":"order-7.json"}'
expect_json '.' '{"id":"A-7","n":[1,2.5]}'

what="CSV: header, quoting, another delimiter; append adds a header only to a new file"
printf 'id;name;note\r\n1;"Smith; John";"said ""hi""\nand left"\r\n\r\n2;Doe;\r\n' >"$X/in/people.csv"
file rc "\"dir\":\"$X/in\",\"path\":\"people.csv\",\"format\":\"csv\",\"delimiter\":\";\""
run rc
expect_rc 0
expect_json '.' '[{"id":"1","name":"Smith; John","note":"said \"hi\"\nand left"},{"id":"2","name":"Doe","note":""}]'
file wc "\"dir\":\"$X\",\"path\":\"out.csv\",\"format\":\"csv\",\"operation\":\"append\""
run wc '[{"a":1,"b":"x,y"},{"a":null,"b":true}]'
run wc '[{"a":2,"b":"z"}]'
checks=$((checks + 1))
[ "$(cat "$X/out.csv")" = "$(printf 'a,b\r\n1,"x,y"\r\n,true\r\n2,z\r')" ] || fail "$what: $(od -c "$X/out.csv" | head)"
file rc2 "\"dir\":\"$X\",\"path\":\"out.csv\",\"format\":\"csv\",\"header\":false"
run rc2
expect_json '.' '[["a","b"],["1","x,y"],["","true"],["2","z"]]'
printf 'a,b\n"open\n' >"$X/bad.csv"
file rbad "\"dir\":\"$X\",\"path\":\"bad.csv\",\"format\":\"csv\""
run rbad
expect_err_json '[.code, .class]' '["FILE_FORMAT","parse"]'
expect_err_has 'line 2: a quoted field is not closed'

what="JSON lines and text"
file wl "\"dir\":\"$X\",\"path\":\"log.jsonl\",\"format\":\"jsonl\",\"operation\":\"append\""
run wl '[{"e":1},{"e":2}]'
run wl '{"e":3}'
file rl "\"dir\":\"$X\",\"path\":\"log.jsonl\",\"format\":\"jsonl\""
run rl
expect_json '.' '[{"e":1},{"e":2},{"e":3}]'
printf '{"e":1}\n{"e":\n' >"$X/broken.jsonl"
file rl2 "\"dir\":\"$X\",\"path\":\"broken.jsonl\",\"format\":\"jsonl\""
run rl2
expect_err_has 'line 2: invalid JSON'
file wt "\"dir\":\"$X\",\"path\":\"note.txt\",\"format\":\"text\",\"operation\":\"write\",\"content\":\"héllo {{ message.who }}\""
run wt '{"who":"you"}'
file rt "\"dir\":\"$X\",\"path\":\"note.txt\",\"format\":\"text\""
run rt
expect_json '.' '"héllo you"'

what="paths never leave the folder"
for p in '../secret/key.txt' '/etc/passwd' 'escape/key.txt' 'in/../../secret/key.txt'; do
	file rp "\"dir\":\"$X\",\"path\":\"{{ message.p }}\",\"format\":\"text\""
	run rp "{\"p\":\"$p\"}"
	expect_rc 1
	expect_err_json '.class' '"invalid"'
done
expect_err_has 'leads out of the folder'
file wp "\"dir\":\"$X\",\"path\":\"{{ message.p }}\",\"operation\":\"write\",\"format\":\"text\",\"content\":\"x\""
run wp '{"p":"escape/planted.txt"}'
expect_rc 1
checks=$((checks + 1))
[ ! -e "$T/secret/planted.txt" ] || fail "$what: a file was written through the link"
file other "\"dir\":\"$T/secret\",\"path\":\"key.txt\",\"format\":\"text\""
run other
expect_err_json '[.code, .class]' '["FILE_DIR","config"]'
file near "\"dir\":\"${X}2\",\"path\":\"x\""
run near
expect_err_json '.code' '"FILE_DIR"'
expect_err_has "config.dir: ${X}2 is not inside a folder of the agent's [files] dirs"
file dotdot "\"dir\":\"$X/in/../../secret\",\"path\":\"key.txt\",\"format\":\"text\""
run dotdot
expect_err_json '[.code, .class]' '["FILE_DIR","config"]'
expect_err_has "config.dir: $X/in/../../secret has a \\\"..\\\"; name the folder without it"
run_ctl run "$T/rt.json" --compact
expect_err_json '.code' '"FILE_DIR"'
expect_err_json '.class' '"unsupported"'
expect_err_has 'no local folders here'
expect_err_has '[files] dirs in the agent config lists the folders steps may use; outpostctl run reads them with --config'

what="missing files, limits, bad config"
file miss "\"dir\":\"$X\",\"path\":\"nope.json\""
run miss
expect_err_json '[.code, .class]' '["FILE_OPEN","notfound"]'
head -c 2000 /dev/zero | tr '\0' 'a' >"$X/big.txt"
file big "\"dir\":\"$X\",\"path\":\"big.txt\",\"format\":\"text\",\"maxBytes\":1000"
run big
expect_err_json '[.code, .class]' '["FILE_TOO_LARGE","limit"]'
file badcfg '"dir":"relative","path":"x","operation":"append","format":"json","delimiter":"ab"'
run_ctl check "$T/badcfg.json"
expect_rc 2
expect_err_has 'steps[0].config.dir: expected an absolute folder, got "relative"'
expect_err_has 'steps[0].config.delimiter: expected one character'
expect_err_has 'steps[0].config.operation: append needs jsonl, csv or text'
printf '[agent]\ndata_dir = %s/d\n[files]\ndirs = relative/dir\n' "$T" >"$T/bad.conf"
"$OUTPOSTD" --config "$T/bad.conf" --check-config >"$T/out" 2>"$T/err"
rc=$?
err=$(cat "$T/err")
expect_rc 2
expect_err_has '[files] dirs: "relative/dir" is not an absolute path'

finish
