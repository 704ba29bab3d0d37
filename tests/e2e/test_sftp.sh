# The sftp step end to end through outpostctl run and outpostd, against a
# real OpenSSH sshd on loopback (tests/e2e/sshd.sh: generated host and user
# keys, internal-sftp): every operation, password and key logins (ed25519
# OpenSSH format, encrypted ed25519, PEM ECDSA), host keys by fingerprint and
# by known_hosts (and refused when they do not match, before anything is
# sent), atomic puts, 50 MB round trips checked byte for byte, localDir only
# inside the folders of [files] dirs and localPath kept below localDir,
# limits, session reuse, and hostile peers: TCP servers that send garbage,
# truncated or huge answers or nothing at all (tests/peers/ssh_peer.py), and
# SFTP servers behind a real sshd that hang, send garbage, or never end a
# listing or a file (tests/peers/sftp_peer.py).
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/sshd.sh"

sshd_start || exit 1
LOG=$T/sshd/sshd.log
H=$sshd_home
mkdir -p "$T/local"

# localDir must be a folder of [files] dirs, or inside one.
agent_config '[files]' "dirs = $T/local"

# sp NAME MEMBERS: a pipeline NAME of one sftp step with MEMBERS (JSON
# members), on the test server as account "key" with its hostKey unless
# MEMBERS say otherwise.
sp() {
	_c=$2
	case $_c in *'"port"'*) ;; *) _c="\"host\":\"$sshd_host\",\"port\":$sshd_port,$_c" ;; esac
	case $_c in *'"account"'*) ;; *) _c="$_c,\"account\":\"key\"" ;; esac
	case $_c in *'"hostKey"'* | *'"knownHosts"'*) ;; *) _c="$_c,\"hostKey\":\"$sshd_fingerprint\"" ;; esac
	step_pipeline "$1" sftp "$_c"
}
# sha FILE: its SHA-256 ("-": standard input's).
sha() { sha256sum "$1" | cut -c1-64; }
# accepted: logins the server accepted so far.
accepted() { grep -c 'Accepted \(publickey\|password\) for' "$LOG"; }
# accepted_at_least N: the server has accepted N logins or more (polled).
accepted_at_least() { [ "$(accepted)" -ge "$1" ]; }
# owned: files the test makes on the server belong to the login user.
owned() { chown -R "$sshd_user:" "$H" 2>/dev/null || :; }

jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key" \
	'{type:"key",username:$u,privateKey:$k}' >"$T/acc.json"
account key "$(cat "$T/acc.json")"
jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key_enc" --arg p "$sshd_key_passphrase" \
	'{type:"key",username:$u,privateKey:$k,passphrase:$p}' >"$T/acc.json"
account keyenc "$(cat "$T/acc.json")"
jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key_enc" \
	'{type:"key",username:$u,privateKey:$k,passphrase:"not-the-passphrase"}' >"$T/acc.json"
account keybadpass "$(cat "$T/acc.json")"
jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key_pem" \
	'{type:"key",username:$u,privateKey:$k}' >"$T/acc.json"
account keypem "$(cat "$T/acc.json")"
account tok '{"type":"bearer","token":"static-token-sftp"}'
account wrongpw "{\"type\":\"basic\",\"username\":\"$sshd_user\",\"password\":\"wrong-pass-9f3\"}"
if [ -n "$sshd_password" ]; then
	account pw "$(jq -n --arg u "$sshd_user" --arg p "$sshd_password" \
		'{type:"basic",username:$u,password:$p}')"
fi
rm -f "$T/acc.json"

what="logins: ed25519 key, encrypted key, PEM ECDSA key, password"
sp login '"operation":"stat","path":"."'
run login
expect_rc 0
expect_json '.type' '"dir"'
sp loginenc "\"operation\":\"stat\",\"path\":\".\",\"account\":\"keyenc\",\"knownHosts\":\"$sshd_known_hosts\""
run loginenc
expect_rc 0
expect_json '.type' '"dir"'
sp loginpem '"operation":"stat","path":".","account":"keypem"'
run loginpem
expect_rc 0
expect_json '.type' '"dir"'
if [ -n "$sshd_password" ]; then
	sp loginpw '"operation":"stat","path":".","account":"pw"'
	run loginpw
	expect_rc 0
	expect_json '.type' '"dir"'
else
	echo "note: not root: password logins are not tested (sshd cannot read the shadow file)"
fi

what="logins refused: wrong password, wrong passphrase, an account sftp cannot use"
sp badpw '"operation":"stat","path":".","account":"wrongpw"'
run badpw
expect_rc 1
expect_err_json '[.code, .class]' '["SFTP_AUTH","auth"]'
expect_err_has "login as $sshd_user with the password of account wrongpw refused"
sp badpass '"operation":"stat","path":".","account":"keybadpass"'
run badpass
expect_err_json '[.code, .class]' '["SFTP_AUTH","auth"]'
expect_err_has 'the private key of account keybadpass cannot be used'
sp bearer '"operation":"stat","path":".","account":"tok"'
run bearer
expect_err_json '[.code, .class]' '["ACCOUNT","config"]'
sp nobody '"operation":"stat","path":".","account":"nobody-here"'
run nobody
expect_err_json '[.code, .class]' '["ACCOUNT","notfound"]'
run_ctl run "$T/login.json" --compact
expect_err_json '[.code, .class]' '["ACCOUNT","unsupported"]'

what="host key: a wrong fingerprint is refused before anything is sent"
a0=$(accepted)
sp wrongfp "\"operation\":\"put\",\"path\":\"never.txt\",\"content\":\"x\",\"hostKey\":\"$sshd_fingerprint_ecdsa\""
run wrongfp
expect_rc 1
expect_err_json '[.code, .class]' '["SFTP_HOST_KEY","auth"]'
expect_err_has "the server's ssh-ed25519 key is $sshd_fingerprint, hostKey expects $sshd_fingerprint_ecdsa; refused"
check "a file was written" test ! -e "$H/never.txt"
check "a login was accepted" test "$(accepted)" = "$a0"

what="host key: known_hosts with another key, without the host, with only the ECDSA key, hashed"
ssh-keygen -q -N '' -t ed25519 -f "$T/other" </dev/null
printf '[%s]:%s %s\n' "$sshd_host" "$sshd_port" "$(cut -d' ' -f1,2 "$T/other.pub")" >"$T/kh_other"
sp khother "\"operation\":\"put\",\"path\":\"never.txt\",\"content\":\"x\",\"knownHosts\":\"$T/kh_other\""
run khother
expect_err_json '[.code, .class]' '["SFTP_HOST_KEY","auth"]'
expect_err_has "host key mismatch: the server's ssh-ed25519 key $sshd_fingerprint is not the one knownHosts $T/kh_other holds for it"
check "a file was written" test ! -e "$H/never.txt"
printf '[%s]:1 %s\n' "$sshd_host" "$(cut -d' ' -f1,2 "$T/other.pub")" >"$T/kh_none"
sp khnone "\"operation\":\"stat\",\"path\":\".\",\"knownHosts\":\"$T/kh_none\""
run khnone
expect_err_json '[.code, .class]' '["SFTP_HOST_KEY","auth"]'
expect_err_has "not in knownHosts $T/kh_none (the server's ssh-ed25519 key is $sshd_fingerprint); refused"
# Only the ECDSA key known: the preference asks the server for that one.
grep ecdsa "$sshd_known_hosts" >"$T/kh_ecdsa"
sp khecdsa "\"operation\":\"stat\",\"path\":\".\",\"knownHosts\":\"$T/kh_ecdsa\""
run khecdsa
expect_rc 0
cp "$sshd_known_hosts" "$T/kh_hashed"
ssh-keygen -q -H -f "$T/kh_hashed" >/dev/null 2>&1
check "known_hosts was not hashed" grep -q '^|1|' "$T/kh_hashed"
sp khhashed "\"operation\":\"stat\",\"path\":\".\",\"knownHosts\":\"$T/kh_hashed\""
run khhashed
expect_rc 0
# Both checks configured: both must pass.
sp khboth "\"operation\":\"stat\",\"path\":\".\",\"knownHosts\":\"$T/kh_other\",\"hostKey\":\"$sshd_fingerprint\""
run khboth
expect_err_json '.code' '"SFTP_HOST_KEY"'
{
	echo "@revoked * $(cut -d' ' -f1,2 "$T/other.pub")"
	cat "$sshd_known_hosts"
} >"$T/kh_marker"
sp khmarker "\"operation\":\"stat\",\"path\":\".\",\"knownHosts\":\"$T/kh_marker\""
run khmarker
expect_err_json '[.code, .class]' '["SFTP_HOST_KEY","config"]'
expect_err_has 'line 1: markers (@cert-authority, @revoked) are not supported'
sp khmissing "\"operation\":\"stat\",\"path\":\".\",\"knownHosts\":\"$T/no-such-file\""
run khmissing
expect_err_json '[.code, .class]' '["SFTP_HOST_KEY","config"]'

what="load-time checks"
pipeline static "{\"name\":\"s\",\"version\":\"1\",\"steps\":[
 {\"type\":\"sftp\",\"config\":{\"host\":\"h\",\"account\":\"a\",\"operation\":\"list\",\"path\":\"/\"}},
 {\"type\":\"sftp\",\"config\":{\"host\":\"h\",\"account\":\"../a\",\"hostKey\":\"MD5:aa\",\"knownHosts\":\"kh\",\"operation\":\"get\",\"path\":\"x\",\"localDir\":\"rel\",\"localPath\":\"../x\"}},
 {\"type\":\"sftp\",\"config\":{\"host\":\"h\",\"account\":\"a\",\"hostKey\":\"$sshd_fingerprint\",\"operation\":\"move\",\"path\":\"x\",\"pattern\":\"*\",\"content\":1}},
 {\"type\":\"sftp\",\"config\":{\"host\":\"h\",\"account\":\"a\",\"hostKey\":\"$sshd_fingerprint\",\"operation\":\"put\",\"path\":\"x\",\"localPath\":\"y\"}}]}"
run_ctl check "$T/static.json"
expect_rc 2
expect_err_has 'steps[0].config.hostKey: set hostKey'
expect_err_has 'steps[1].config.hostKey: expected SHA256: and 43 characters of base64'
expect_err_has 'steps[1].config.knownHosts: must be an absolute path'
expect_err_has 'steps[1].config.account: "../a" is not an account name'
expect_err_has 'steps[1].config.localDir: must be an absolute path'
expect_err_has 'steps[1].config.localPath: localPath "../x" has a ".."'
expect_err_has 'steps[2].config.to: operation move needs the new path'
expect_err_has 'steps[2].config.pattern: is only for operation list'
expect_err_has 'steps[2].config.content: is only for operation put'
expect_err_has 'steps[3].config.localPath: needs localDir'

what="list with a glob; entries have name, path, type, size, mtime, mode"
mkdir -p "$H/in/sub"
printf 'a' >"$H/in/a.csv"
printf 'bb' >"$H/in/b.csv"
printf 'c' >"$H/in/c.txt"
printf 'h' >"$H/in/.hidden.csv"
chmod 600 "$H/in/b.csv"
ln -s a.csv "$H/in/link.csv"
touch -d '2024-05-01T12:00:00Z' "$H/in/a.csv"
owned
sp list '"operation":"list","path":"in","pattern":"{{ message.glob }}"'
run list '{"glob":"*.csv"}'
expect_rc 0
expect_json '[.[].name]' '["a.csv","b.csv","link.csv"]'
expect_json '.[0]' '{"name":"a.csv","path":"in/a.csv","type":"file","size":1,"mtime":"2024-05-01T12:00:00Z","mode":"0644"}'
expect_json '[.[1].mode, .[1].size, .[2].type]' '["0600",2,"link"]'
sp listall '"operation":"list","path":"in/"'
run listall
expect_json '[.[] | [.name, .type]]' '[[".hidden.csv","file"],["a.csv","file"],["b.csv","file"],["c.txt","file"],["link.csv","link"],["sub","dir"]]'
sp listmissing '"operation":"list","path":"no-such-dir"'
run listmissing
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'
expect_err_has "127.0.0.1:$sshd_port: list no-such-dir: no such file or directory"

what="stat: a file, a directory, nothing"
sp stat '"operation":"stat","path":"{{ message.p }}"'
run stat '{"p":"in/a.csv"}'
expect_json '.' '{"name":"a.csv","path":"in/a.csv","type":"file","size":1,"mtime":"2024-05-01T12:00:00Z","mode":"0644"}'
run stat '{"p":"in/sub"}'
expect_json '[.name, .type]' '["sub","dir"]'
run stat '{"p":"in/nothing"}'
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'

what="get as text, as base64, into a local file; maxBytes; not text; a directory"
printf 'héllo\nworld' >"$H/in/text.txt"
head -c 3000 /dev/urandom >"$H/in/bin.dat"
owned
sp gettext '"operation":"get","path":"in/text.txt"'
run gettext
expect_rc 0
expect_json '.' '{"path":"in/text.txt","size":12,"content":"héllo\nworld","encoding":"text"}'
sp getb64 '"operation":"get","path":"in/bin.dat","encoding":"base64"'
run getb64
expect_json '[.size, .encoding, .content]' "[3000,\"base64\",\"$(base64 -w0 "$H/in/bin.dat")\"]"
sp getbin '"operation":"get","path":"in/bin.dat"'
run getbin
expect_err_json '[.code, .class]' '["SFTP_NOT_TEXT","parse"]'
sp getfile "\"operation\":\"get\",\"path\":\"in/bin.dat\",\"localDir\":\"$T/local\",\"localPath\":\"{{ message.to }}\""
run getfile '{"to":"bin.copy"}'
expect_json '.' '{"path":"in/bin.dat","size":3000,"localPath":"bin.copy"}'
check "the local copy differs" cmp -s "$H/in/bin.dat" "$T/local/bin.copy"
check "a temp file is left locally" test -z "$(find "$T/local" -name '*.outpost-*')"
sp getbig '"operation":"get","path":"in/bin.dat","encoding":"base64","maxBytes":2999'
run getbig
expect_err_json '[.code, .class]' '["SFTP_TOO_LARGE","limit"]'
expect_err_has 'get in/bin.dat: 3000 bytes, more than maxBytes (2999)'
sp getdir '"operation":"get","path":"in/sub"'
run getdir
expect_err_json '.class' '"rejected"'
sp getnone '"operation":"get","path":"in/none.txt"'
run getnone
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'

what="put from content (text, JSON, base64, the message) and from a local file"
sp puttext '"operation":"put","path":"out/{{ message.name }}","content":"{{ message.text }}"'
mkdir -p "$H/out"
owned
run puttext '{"name":"t.txt","text":"line 1\nline 2"}'
expect_rc 0
expect_json '.' '{"path":"out/t.txt","size":13}'
check "the text differs" test "$(printf 'line 1\nline 2' | sha -)" = "$(sha "$H/out/t.txt")"
sp putjson '"operation":"put","path":"out/j.json","content":{"id":"{{ message.id }}","n":[1,2]}'
run putjson '{"id":"A-1"}'
check "the JSON differs" test "$(cat "$H/out/j.json")" = '{"id":"A-1","n":[1,2]}'
head -c 5000 /dev/urandom >"$T/b64.src"
sp putb64 '"operation":"put","path":"out/b.bin","content":"{{ message.data }}","encoding":"base64"'
run putb64 "{\"data\":\"$(base64 -w76 "$T/b64.src" | sed 's/$/\\n/' | tr -d '\n')\"}"
expect_json '.size' '5000'
check "the decoded bytes differ" test "$(sha "$T/b64.src")" = "$(sha "$H/out/b.bin")"
run putb64 '{"data":"not base64!"}'
expect_err_json '[.code, .class]' '["SFTP_REQUEST","invalid"]'
sp putmsg '"operation":"put","path":"out/m.json"'
run putmsg '{"whole":"message"}'
check "the message was not put" test "$(cat "$H/out/m.json")" = '{"whole":"message"}'
head -c 100000 /dev/urandom >"$T/local/up.bin"
sp putfile "\"operation\":\"put\",\"path\":\"out/up.bin\",\"localDir\":\"$T/local\",\"localPath\":\"up.bin\""
run putfile
expect_json '.' '{"path":"out/up.bin","size":100000}'
check "the uploaded file differs" test "$(sha "$T/local/up.bin")" = "$(sha "$H/out/up.bin")"

what="put over an existing file replaces it; overwrite false refuses; no temp file is left"
printf 'old' >"$H/out/t.txt"
owned
run puttext '{"name":"t.txt","text":"new"}'
expect_rc 0
check "the file was not replaced" test "$(cat "$H/out/t.txt")" = new
sp putkeep '"operation":"put","path":"out/t.txt","content":"newer","overwrite":false'
run putkeep
expect_err_json '[.code, .class]' '["SFTP_EXISTS","rejected"]'
check "the file changed" test "$(cat "$H/out/t.txt")" = new
run puttext '{"name":"no-such-dir/t.txt","text":"x"}'
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'
check "a temp file is left on the server" test -z "$(find "$H" -name '*.outpost-*')"

what="a 50 MB file round trip: put from and get to local files, byte for byte"
head -c 52428800 /dev/urandom >"$T/local/big.bin"
sp bigput "\"operation\":\"put\",\"path\":\"out/big.bin\",\"localDir\":\"$T/local\",\"localPath\":\"big.bin\""
run bigput
expect_json '.size' '52428800'
check "the server's copy differs" test "$(sha "$T/local/big.bin")" = "$(sha "$H/out/big.bin")"
sp bigget "\"operation\":\"get\",\"path\":\"out/big.bin\",\"localDir\":\"$T/local\",\"localPath\":\"back/big.bin\""
mkdir -p "$T/local/back"
run bigget
expect_json '.size' '52428800'
check "the copy back differs" test "$(sha "$T/local/big.bin")" = "$(sha "$T/local/back/big.bin")"
check "a temp file is left" test -z "$(find "$H" "$T/local" -name '*.outpost-*')"

what="a get to a local file of 64 MiB or more is split over sessions (streams), byte for byte"
# logins A0 N: the server accepted N logins since it had accepted A0.
logins() {
	checks=$((checks + 1))
	wait_until 10 accepted_at_least $(($1 + $2))
	[ "$(accepted)" -eq $(($1 + $2)) ] || fail "$what: $(($(accepted) - $1)) logins, expected $2"
}
head -c $((100 * 1048576)) /dev/urandom >"$H/out/huge.bin"
owned
# 100 MiB makes at most three parts of 32 MiB or more.
for n in 1:1 2:2 3:3 8:3; do
	sp split "\"operation\":\"get\",\"path\":\"out/huge.bin\",\"localDir\":\"$T/local\",\"localPath\":\"back/huge.bin\",\"streams\":${n%%:*}"
	a0=$(accepted)
	run split
	expect_json '.size' '104857600'
	check "the copy over ${n%%:*} streams differs" test "$(sha "$H/out/huge.bin")" = "$(sha "$T/local/back/huge.bin")"
	logins "$a0" "${n#*:}"
done
a0=$(accepted)
sp bigget "\"operation\":\"get\",\"path\":\"out/big.bin\",\"localDir\":\"$T/local\",\"localPath\":\"back/big.bin\""
run bigget
logins "$a0" 1
# The sessions of the parts go back to the pool, answers read ahead and all:
# the second get of a run logs in no more.
a0=$(accepted)
pipeline splits "{\"name\":\"r\",\"version\":\"1\",\"steps\":[{\"type\":\"for-each\",\"config\":{\"items\":\"{{ [\\\"x1.bin\\\",\\\"x2.bin\\\"] }}\",\"steps\":[
  {\"type\":\"sftp\",\"config\":{\"host\":\"$sshd_host\",\"port\":$sshd_port,\"account\":\"key\",\"hostKey\":\"$sshd_fingerprint\",\"operation\":\"get\",\"path\":\"out/huge.bin\",\"localDir\":\"$T/local\",\"localPath\":\"{{ message }}\",\"streams\":3}},
  {\"type\":\"sftp\",\"config\":{\"host\":\"$sshd_host\",\"port\":$sshd_port,\"account\":\"key\",\"hostKey\":\"$sshd_fingerprint\",\"operation\":\"stat\",\"path\":\"out/huge.bin\"}}]}}]}"
run splits
expect_json '[.[].size]' '[104857600,104857600]'
check "the second copy differs" test "$(sha "$H/out/huge.bin")" = "$(sha "$T/local/x2.bin")"
logins "$a0" 4
rm -f "$H/out/huge.bin" "$T/local/back/huge.bin" "$T/local/x1.bin" "$T/local/x2.bin"

what="localPath stays below localDir"
sp escape "\"operation\":\"get\",\"path\":\"in/a.csv\",\"localDir\":\"$T/local\",\"localPath\":\"{{ message.p }}\""
for p in ../escaped.txt back/../../escaped.txt /tmp/escaped.txt; do
	run escape "{\"p\":\"$p\"}"
	expect_err_json '[.code, .class]' '["SFTP_LOCAL","invalid"]'
done
mkdir -p "$T/outside"
ln -s "$T/outside" "$T/local/link"
run escape '{"p":"link/escaped.txt"}'
expect_err_json '[.code, .class]' '["SFTP_LOCAL","invalid"]'
expect_err_has 'a symbolic link'
ln -s "$T/outside/target.txt" "$T/local/filelink"
sp upescape "\"operation\":\"put\",\"path\":\"out/x\",\"localDir\":\"$T/local\",\"localPath\":\"filelink\""
printf 'secret' >"$T/outside/target.txt"
run upescape
expect_err_json '[.code, .class]' '["SFTP_LOCAL","invalid"]'
check "a file escaped localDir" test -z "$(find "$T" -name escaped.txt)"
sp getnodir "\"operation\":\"get\",\"path\":\"in/a.csv\",\"localDir\":\"$T/local\",\"localPath\":\"no/such/dir.txt\""
run getnodir
expect_err_json '[.code, .class]' '["SFTP_LOCAL","notfound"]'

what="localDir only inside the folders of [files] dirs, refused before anything is sent"
mkdir -p "$T/unlisted" "$T/local2"
printf 'not for the server' >"$T/unlisted/secret.txt"
a0=$(accepted)
sp getout "\"operation\":\"get\",\"path\":\"in/a.csv\",\"localDir\":\"$T/unlisted\",\"localPath\":\"a.copy\""
run getout
expect_rc 1
expect_err_json '[.code, .class]' '["SFTP_LOCAL","config"]'
expect_err_has "config.localDir: $T/unlisted is not inside a folder of the agent's [files] dirs"
sp putout "\"operation\":\"put\",\"path\":\"out/stolen.txt\",\"localDir\":\"$T/unlisted\",\"localPath\":\"secret.txt\""
run putout
expect_err_json '[.code, .class]' '["SFTP_LOCAL","config"]'
check "a file was put from outside" test ! -e "$H/out/stolen.txt"
# A neighbour whose name starts the same is another folder.
sp getnear "\"operation\":\"get\",\"path\":\"in/a.csv\",\"localDir\":\"$T/local2\",\"localPath\":\"a.copy\""
run getnear
expect_err_json '[.code, .class]' '["SFTP_LOCAL","config"]'
sp getup "\"operation\":\"get\",\"path\":\"in/a.csv\",\"localDir\":\"$T/local/../unlisted\",\"localPath\":\"a.copy\""
run getup
expect_err_json '[.code, .class]' '["SFTP_LOCAL","config"]'
expect_err_has "config.localDir: $T/local/../unlisted has a \\\"..\\\"; name the folder without it"
check "a file was written outside [files] dirs" test "$(ls -A "$T/unlisted")" = secret.txt
check "a file was written in the neighbour" test -z "$(ls -A "$T/local2")"
check "a login was made" test "$(accepted)" = "$a0"
# A folder inside one of them is fine; without an agent config none is.
sp getsub "\"operation\":\"get\",\"path\":\"in/a.csv\",\"localDir\":\"$T/local/back\",\"localPath\":\"a.copy\""
run getsub
expect_rc 0
expect_json '.localPath' '"a.copy"'
check "the copy differs" cmp -s "$H/in/a.csv" "$T/local/back/a.copy"
run_ctl run "$T/getsub.json" --compact
expect_rc 1
expect_err_json '[.code, .class]' '["SFTP_LOCAL","unsupported"]'
expect_err_has "config.localDir: no local folders here: $T/local/back cannot be used ([files] dirs in the agent config lists the folders steps may use; outpostctl run reads them with --config)"

what="move: rename, over an existing file, onto itself, overwrite false, nothing to move"
printf 'm1' >"$H/out/m1"
printf 'm2' >"$H/out/m2"
owned
sp move '"operation":"move","path":"{{ message.from }}","to":"{{ message.to }}"'
run move '{"from":"out/m1","to":"out/m3"}'
expect_json '.' '{"from":"out/m1","to":"out/m3"}'
check "m3 is not m1" test "$(cat "$H/out/m3")" = m1
run move '{"from":"out/m3","to":"out/m2"}'
expect_rc 0
check "m2 was not replaced" test "$(cat "$H/out/m2")" = m1
check "m3 is still there" test ! -e "$H/out/m3"
# The same entry by another name: nothing to do, and nothing is lost.
run move '{"from":"out/m2","to":"./out/m2"}'
expect_rc 0
check "m2 was lost" test "$(cat "$H/out/m2")" = m1
printf 'm4' >"$H/out/m4"
owned
sp movekeep '"operation":"move","path":"out/m4","to":"out/m2","overwrite":false'
run movekeep
expect_err_json '[.code, .class]' '["SFTP_EXISTS","rejected"]'
check "m2 changed" test "$(cat "$H/out/m2")" = m1
run move '{"from":"out/none","to":"out/m5"}'
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'

what="delete: a file, nothing (and with ignoreMissing), an empty directory, a full one"
sp delete '"operation":"delete","path":"{{ message.p }}"'
run delete '{"p":"out/m4"}'
expect_json '.' '{"path":"out/m4","deleted":true}'
check "out/m4 is still there" test ! -e "$H/out/m4"
run delete '{"p":"out/m4"}'
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'
sp deleteok '"operation":"delete","path":"out/m4","ignoreMissing":true'
run deleteok
expect_json '.' '{"path":"out/m4","deleted":false}'
run delete '{"p":"in/sub"}'
expect_json '.deleted' 'true'
check "in/sub is still there" test ! -e "$H/in/sub"
run delete '{"p":"in"}'
expect_err_json '.class' '"rejected"'

what="mkdir: with parents, again, without parents, over a file"
sp mkdirp '"operation":"mkdir","path":"p/q/r","parents":true'
run mkdirp
expect_json '.' '{"path":"p/q/r","created":true}'
check "p/q/r is no directory" test -d "$H/p/q/r"
run mkdirp
expect_json '.created' 'false'
sp mkdir '"operation":"mkdir","path":"{{ message.p }}"'
run mkdir '{"p":"x/y"}'
expect_err_json '[.code, .class]' '["SFTP_NOT_FOUND","notfound"]'
run mkdir '{"p":"p/s"}'
expect_json '.created' 'true'
run mkdir '{"p":"out/m2"}'
expect_err_json '[.code, .class]' '["SFTP_EXISTS","rejected"]'

what="one session for the steps of a run (pooled), and a login per run"
a0=$(accepted)
pipeline reuse "{\"name\":\"r\",\"version\":\"1\",\"steps\":[{\"type\":\"for-each\",\"config\":{\"items\":\"{{ [1,2,3,4,5] }}\",\"steps\":[
  {\"type\":\"sftp\",\"config\":{\"host\":\"$sshd_host\",\"port\":$sshd_port,\"account\":\"key\",\"hostKey\":\"$sshd_fingerprint\",\"operation\":\"stat\",\"path\":\"in/a.csv\"}}]}}]}"
run reuse
expect_json '[.[].size]' '[1,1,1,1,1]'
checks=$((checks + 1))
wait_until 10 accepted_at_least $((a0 + 1))
[ "$(accepted)" -eq $((a0 + 1)) ] || fail "$what: $(($(accepted) - a0)) logins, expected 1"

what="hostile TCP peers: garbage, silence, a banner and then garbage, truncated, huge"
set -- /usr/bin/python3 "$TOP/tests/peers/ssh_peer.py" --port-file "$T/peer.ports"
command -v setpriv >/dev/null 2>&1 && set -- setpriv --pdeathsig KILL "$@"
"$@" >"$T/peer.log" 2>&1 &
peer_pid=$!
stop_peer() {
	kill "$peer_pid" 2>/dev/null
	wait "$peer_pid" 2>/dev/null
}
at_exit stop_peer
wait_until 10 test -s "$T/peer.ports" || fail "$what: the peer did not listen: $(cat "$T/peer.log")"
peer_port() { awk -v m="$1" '$1 == m { print $2 }' "$T/peer.ports"; }
for m in garbage:parse silent:timeout banner-silent:timeout banner-garbage:io truncated:io huge:io; do
	sp "hostile" "\"host\":\"127.0.0.1\",\"port\":$(peer_port "${m%%:*}"),\"operation\":\"list\",\"path\":\".\",\"timeoutMs\":300"
	run hostile
	expect_rc 1
	expect_err_json '.class' "\"${m#*:}\""
done
expect_err_has 'SSH handshake failed'
sp refused '"host":"127.0.0.1","port":1,"operation":"list","path":"."'
run refused
expect_err_json '[.code, .class]' '["SFTP_CONNECT","noconn"]'
# The execution's deadline bounds the step whatever its own timeout says.
pipeline deadline "{\"name\":\"d\",\"version\":\"1\",\"settings\":{\"timeoutMs\":400},\"steps\":[{\"type\":\"sftp\",\"config\":{\"host\":\"127.0.0.1\",\"port\":$(peer_port silent),\"account\":\"key\",\"hostKey\":\"$sshd_fingerprint\",\"operation\":\"list\",\"path\":\".\",\"timeoutMs\":600000}}]}"
run deadline
expect_err_json '.class' '"timeout"'

what="hostile SFTP servers behind a real sshd: hang, garbage, huge, truncated, endless"
P=$T/peer
mkdir -p "$P"
chmod 711 "$P"
ssh-keygen -q -N '' -t ed25519 -f "$P/host" </dev/null
cp "$TOP/tests/peers/sftp_peer.py" "$sshd_user_key.pub" "$P/"
echo hang >"$P/mode"
chmod 644 "$P/sftp_peer.py" "$P/mode" "$P/$(basename "$sshd_user_key.pub")"
pport=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$P/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $pport
HostKey $P/host
PidFile $P/sshd.pid
AuthorizedKeysFile $P/$(basename "$sshd_user_key.pub")
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
StrictModes no
Subsystem sftp /usr/bin/python3 $P/sftp_peer.py $P/mode
LogLevel VERBOSE
UseDNS no
CONF
set -- "$SSHD_BIN" -D -e -f "$P/sshd_config"
command -v setpriv >/dev/null 2>&1 && set -- setpriv --pdeathsig KILL "$@"
"$@" </dev/null >"$P/sshd.log" 2>&1 &
psshd=$!
# stop_psshd: the peer's sshd and what it forked (by pid, children first).
stop_psshd() {
	_kids=$(pgrep -P "$psshd" 2>/dev/null)
	for _k in $_kids; do pgrep -P "$_k" 2>/dev/null | xargs -r kill 2>/dev/null; done
	# shellcheck disable=SC2086 # a list of pids
	kill $_kids "$psshd" 2>/dev/null
	wait "$psshd" 2>/dev/null
}
at_exit stop_psshd
pfp=$(ssh-keygen -lf "$P/host.pub" | cut -d' ' -f2)
if wait_until 15 grep -q "Server listening on 127.0.0.1 port $pport" "$P/sshd.log"; then
	for m in hang-init:SFTP_TIMEOUT:timeout garbage-init:SFTP_CONNECT:parse \
		huge-init:SFTP_CONNECT:parse hang:SFTP_TIMEOUT:timeout truncated:SFTP_ERROR:io \
		endless-list:SFTP_TOO_MANY:limit; do
		echo "${m%%:*}" >"$P/mode"
		sp hostile "\"host\":\"127.0.0.1\",\"port\":$pport,\"hostKey\":\"$pfp\",\"operation\":\"list\",\"path\":\".\",\"timeoutMs\":500,\"maxEntries\":120"
		run hostile
		expect_rc 1
		m=${m#*:}
		expect_err_json '[.code, .class]' "[\"${m%%:*}\",\"${m#*:}\"]"
	done
	echo endless-file >"$P/mode"
	sp hostile "\"host\":\"127.0.0.1\",\"port\":$pport,\"hostKey\":\"$pfp\",\"operation\":\"get\",\"path\":\"f\",\"maxBytes\":100000"
	run hostile
	expect_err_json '[.code, .class]' '["SFTP_TOO_LARGE","limit"]'
	sp hostile "\"host\":\"127.0.0.1\",\"port\":$pport,\"hostKey\":\"$pfp\",\"operation\":\"get\",\"path\":\"f\",\"localDir\":\"$T/local\",\"localPath\":\"endless\",\"timeoutMs\":500"
	# To a file there is no size cap: the execution's deadline ends it.
	sed -i 's/"version":"1",/"version":"1","settings":{"timeoutMs":1000},/' "$T/hostile.json"
	run hostile
	expect_err_json '.class' '"timeout"'
	check "a partial download is left" test ! -e "$T/local/endless"
	# A file that ends before the size it had when the get began.
	echo short-file >"$P/mode"
	sp hostile "\"host\":\"127.0.0.1\",\"port\":$pport,\"hostKey\":\"$pfp\",\"operation\":\"get\",\"path\":\"f\",\"localDir\":\"$T/local\",\"localPath\":\"short\""
	run hostile
	expect_err_json '[.code, .class]' '["SFTP_CHANGED","rejected"]'
	expect_err_has 'it changed during the get'
	check "a partial download is left" test ! -e "$T/local/short"
else
	fail "$what: the peer's sshd did not start: $(cat "$P/sshd.log")"
fi

what="outpostd: an sftp step over HTTP, through a server restart, and a shutdown mid-wait"
mkdir -p "$T/pipelines"
cat >"$T/pipelines/files.json" <<JSON
{"name":"files","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/files","mode":"sync"}},
 "steps":[{"type":"sftp","config":{"host":"$sshd_host","port":$sshd_port,"account":"key","knownHosts":"$sshd_known_hosts","operation":"list","path":"in","pattern":"*.csv"}}]}
JSON
cat >"$T/pipelines/stuck.json" <<JSON
{"name":"stuck","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/stuck","mode":"async"}},
 "steps":[{"type":"sftp","config":{"host":"127.0.0.1","port":$(peer_port silent),"account":"key","hostKey":"$sshd_fingerprint","operation":"list","path":".","timeoutMs":600000}}]}
JSON
cat >"$T/daemon.conf" <<CONF
[agent]
data_dir = $T/ddata
pipelines_dir = $T/pipelines
shutdown_timeout = 500ms
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
[accounts]
key_file = $T/daemon.key
CONF
jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key" '{type:"key",username:$u,privateKey:$k}' |
	"$OUTPOSTCTL" account set key --config "$T/daemon.conf" >/dev/null || fail "$what: account set"
if start_daemon "$T/daemon.conf" "$T/daemon.log"; then
	out=$(curl -s -XPOST -d '{}' -H 'content-type: application/json' "http://127.0.0.1:$port/files")
	expect_json '[.[].name]' '["a.csv","b.csv","link.csv"]'
	# The pooled session dies with the server; the next call connects again.
	sshd_restart || fail "$what: sshd did not restart"
	out=$(curl -s -XPOST -d '{}' -H 'content-type: application/json' "http://127.0.0.1:$port/files")
	expect_json '[.[].name]' '["a.csv","b.csv","link.csv"]'
	out=$(curl -s -XPOST -d '{}' -H 'content-type: application/json' "http://127.0.0.1:$port/stuck")
	expect_json '.eventId | length' '36'
	# The step waits on the silent peer: its connection is up.
	stuck() { ss -tnH state established "( dport = :$(peer_port silent) )" | grep -q .; }
	if command -v ss >/dev/null 2>&1; then
		check "the step never reached the peer" wait_until 20 stuck
	fi
	kill -TERM "$pid"
	wait_until 30 sh -c "! kill -0 $pid 2>/dev/null" || fail "$what: outpostd still runs"
	wait "$pid"
	checks=$((checks + 1))
	grep -q 'executions still running after 500 ms: stopping them' "$T/daemon.log" ||
		fail "$what: the log lacks the stop: $(cat "$T/daemon.log")"
else
	fail "$what: the daemon did not start: $(cat "$T/daemon.log")"
fi

what="no secret in any error or log line"
checks=$((checks + 1))
cat "$T/errors" "$T"/daemon*.log >"$T/all-output"
grep -q -e 'wrong-pass-9f3' -e 'static-token-sftp' -e 'not-the-passphrase' -e 'PRIVATE KEY' \
	-e "$sshd_key_passphrase" ${sshd_password:+-e "$sshd_password"} "$T/all-output" &&
	fail "$what: a secret was printed"
for k in "$sshd_user_key" "$sshd_user_key_enc" "$sshd_user_key_pem"; do
	checks=$((checks + 1))
	# The base64 lines of the private keys.
	sed -n '2,3p' "$k" | grep -q -F -f - "$T/all-output" && fail "$what: key text of $k was printed"
done

finish
