# Helpers the benchmark scripts share: CPU time read from /proc, metrics.
# shellcheck shell=bash

# cpu_ticks PID...: user and system CPU the processes used so far, in clock
# ticks (/proc/PID/stat fields 14 and 15, counted after the command name).
cpu_ticks() {
	for p in "$@"; do
		sed 's/.*) //' /proc/"$p"/stat 2>/dev/null
	done | awk '{ t += $12 + $13 } END { print t + 0 }'
}

# disk_written PATH: bytes written so far to the block device that holds
# PATH (field 7 of /sys/dev/block/MAJOR:MINOR/stat, in 512-byte sectors); 0
# when PATH is on no block device. It counts what reached the device: the
# store's pages and the filesystem's journal, and whatever else writes to
# that device meanwhile. Not /proc/PID/io: its write_bytes charges a whole
# large folio for each 4 KiB page LMDB dirties (ext4 on recent kernels), four
# to eight times what the device is sent.
disk_written() {
	_dev=$(stat -c '%Hd:%Ld' "$1" 2>/dev/null) &&
		awk '{ printf "%.0f\n", $7 * 512 }' "/sys/dev/block/$_dev/stat" 2>/dev/null || echo 0
}

# children PID: the PIDs whose parent is PID.
children() {
	cat /proc/[0-9]*/stat 2>/dev/null | sed -n 's/^\([0-9]*\) .*) . \([0-9]*\) .*/\1 \2/p' |
		awk -v p="$1" '$2 == p { print $1 }'
}

# cpu_us T0 T1 N: microseconds of CPU one of N requests or messages took
# between two cpu_ticks.
cpu_us() {
	awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" \
		'BEGIN { printf "%.1f", (n > 0) ? (b - a) * 1e6 / hz / n : 0 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

# metric NAME: the value of one series on the admin endpoint at port $admin,
# as an integer; nothing when the endpoint does not answer.
# shellcheck disable=SC2154 # $admin is set by the script that sources this
metric() {
	curl -s -m 2 "http://127.0.0.1:$admin/metrics" | awk -v s="$1" '$1 == s { printf "%d\n", $2 }'
}
