#!/bin/bash
# SFTP: put and get of a 1 GiB file through the agent against OpenSSH's own
# sftp client, in one run, against one real sshd.
#
# Starts OpenSSH's sshd with tests/e2e/sshd.sh (127.0.0.1, a free port,
# throwaway keys; internal-sftp) and moves a 1 GiB file of random bytes
# (BENCH_SFTP_MIB to change the size) each way, each side in turn, three
# times (the best time counts):
#   openssh: sftp -f (flushes the file at the server, fsync@openssh.com, as
#            the agent's put does) "put", then "get";
#   agent:   outpostctl run of a pipeline with one sftp step, put from
#            localPath, then get to localPath (key auth, host key checked).
# Every copy is compared byte for byte with the original. Prints
# "bench: NAME VALUE UNIT" lines: MB/s (10^6 bytes) of each, the agent's
# ratio to OpenSSH for each direction (target >= 0.8), and the agent's peak
# RSS over each run (VmHWM through /usr/bin/time; target < 32 MiB).
# Installs nothing: without sshd or sftp it prints a skip line and exits 0.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
OUTPOSTCTL=${OUTPOSTCTL:-$top/build/release/outpostctl}
export OUTPOSTCTL
MIB=${BENCH_SFTP_MIB:-1024}

for tool in /usr/sbin/sshd sftp ssh-keygen /usr/bin/time; do
	if [ ! -x "$tool" ] && ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench: skip bench_sftp: $tool not found (packaging/install-deps.sh bench)"
		exit 0
	fi
done
if [ ! -x "$OUTPOSTCTL" ]; then
	echo "bench_sftp: $OUTPOSTCTL not found (make VARIANT=release)" >&2
	exit 1
fi
# Files, server and all on tmpfs when it has room for four copies: the
# disk of a small VM (about 100 MB/s) would be what is measured otherwise,
# and its flushes (the agent fsyncs what it gets, OpenSSH's sftp does not).
shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
storage=disk
if [ "${shm_free:-0}" -gt $((MIB * 1024 * 5)) ]; then
	export TMPDIR=/dev/shm
	storage=tmpfs
fi
# shellcheck source=../e2e/lib.sh
. "$top/tests/e2e/lib.sh"
# shellcheck source=../e2e/sshd.sh
. "$top/tests/e2e/sshd.sh"
sshd_start >/dev/null || exit 1

bytes=$((MIB * 1048576))
mkdir -p "$T/local"
# Random bytes (nothing for a compressor to win), 64 MiB of them repeated:
# reading /dev/urandom for all of it takes longer than the transfers.
head -c $((64 * 1048576)) /dev/urandom >"$T/chunk"
for _ in $(seq 1 $(((MIB + 63) / 64))); do cat "$T/chunk"; done | head -c "$bytes" >"$T/local/big"
rm -f "$T/chunk"

cat >"$T/outpost.conf" <<CONF
[agent]
data_dir = $T/data
log_level = warn
[accounts]
key_file = $T/accounts.key
[files]
dirs = $T/local
CONF
jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key" \
	'{type:"key",username:$u,privateKey:$k}' |
	"$OUTPOSTCTL" account set bench --config "$T/outpost.conf" >/dev/null || exit 1

# now: nanoseconds; mbps NS: the file's size over NS nanoseconds, in MB/s.
now() { date +%s%N; }
mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.1f", b / (t / 1e9) / 1e6 }'; }
same() {
	cmp -s "$T/local/big" "$1" || {
		echo "bench_sftp: $2: the copy differs from the original" >&2
		exit 1
	}
}
# best VAR NS: VAR keeps the shortest time.
best() { eval "[ -z \"\${$1:-}\" ] || [ \"\$2\" -lt \"\${$1}\" ]" && eval "$1=$2"; }

# agent OP LOCAL: one sftp step through outpostctl run, its peak RSS (KiB)
# into $T/OP.rss when larger than before.
agent() {
	printf '{"name":"bench","version":"1","steps":[{"type":"sftp","config":{"host":"%s","port":%s,"account":"bench","knownHosts":"%s","operation":"%s","path":"agent.bin","localDir":"%s","localPath":"%s","timeoutMs":60000}}]}' \
		"$sshd_host" "$sshd_port" "$sshd_known_hosts" "$1" "$T/local" "$2" >"$T/$1.json"
	/usr/bin/time -f %M -o "$T/$1.rss.new" "$OUTPOSTCTL" run "$T/$1.json" --compact \
		--config "$T/outpost.conf" >"$T/$1.out" 2>&1 || {
		echo "bench_sftp: agent $1 failed: $(cat "$T/$1.out")" >&2
		exit 1
	}
	if [ ! -s "$T/$1.rss" ] || [ "$(cat "$T/$1.rss.new")" -gt "$(cat "$T/$1.rss")" ]; then
		mv "$T/$1.rss.new" "$T/$1.rss"
	fi
}

# Each way, each side in turn, three times; the best time of each counts
# (the machine is shared: the other runs are noise). Every destination is removed
# first, so each side writes a new file.
ssh_put_ns="" ssh_get_ns="" agent_put_ns="" agent_get_ns=""
for _ in 1 2 3; do
	rm -f "$sshd_home/ssh.bin"
	t0=$(now)
	printf 'put %s ssh.bin\n' "$T/local/big" | sshd_sftp -f >/dev/null || exit 1
	best ssh_put_ns $(($(now) - t0))
	rm -f "$sshd_home/agent.bin"
	t0=$(now)
	agent put big
	best agent_put_ns $(($(now) - t0))
	rm -f "$T/local/ssh.back"
	t0=$(now)
	printf 'get ssh.bin %s\n' "$T/local/ssh.back" | sshd_sftp >/dev/null || exit 1
	best ssh_get_ns $(($(now) - t0))
	rm -f "$T/local/agent.back"
	t0=$(now)
	agent get agent.back
	best agent_get_ns $(($(now) - t0))
done
same "$sshd_home/ssh.bin" "openssh put"
same "$T/local/ssh.back" "openssh get"
same "$sshd_home/agent.bin" "agent put"
same "$T/local/agent.back" "agent get"
ssh_put=$(mbps "$ssh_put_ns")
ssh_get=$(mbps "$ssh_get_ns")
agent_put=$(mbps "$agent_put_ns")
agent_get=$(mbps "$agent_get_ns")

echo "bench: sftp_openssh_put $ssh_put MB/s ($MIB MiB on $storage, sftp -f)"
echo "bench: sftp_openssh_get $ssh_get MB/s"
echo "bench: sftp_agent_put $agent_put MB/s"
echo "bench: sftp_agent_get $agent_get MB/s"
echo "bench: sftp_put_vs_openssh $(awk -v a="$agent_put" -v b="$ssh_put" 'BEGIN { printf "%.2f", a / b }') ratio"
echo "bench: sftp_get_vs_openssh $(awk -v a="$agent_get" -v b="$ssh_get" 'BEGIN { printf "%.2f", a / b }') ratio"
echo "bench: sftp_agent_put_peak_rss $(cat "$T/put.rss") KiB"
echo "bench: sftp_agent_get_peak_rss $(cat "$T/get.rss") KiB"
