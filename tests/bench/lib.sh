# Helpers the benchmark scripts share: CPU time read from /proc.
# shellcheck shell=bash

# cpu_ticks PID...: user and system CPU the processes used so far, in clock
# ticks (/proc/PID/stat fields 14 and 15, counted after the command name).
cpu_ticks() {
	for p in "$@"; do
		sed 's/.*) //' /proc/"$p"/stat 2>/dev/null
	done | awk '{ t += $12 + $13 } END { print t + 0 }'
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
