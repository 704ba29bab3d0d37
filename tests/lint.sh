#!/bin/sh
# make lint: banned functions, cppcheck and clang-tidy over the C sources.
# Exits non-zero on any finding.
set -u
cd "$(dirname "$0")/.."
status=0
src=$(git ls-files '*.c' '*.h' 2>/dev/null || find agent connectors control-sync tests -name '*.[ch]')
csrc=$(echo "$src" | grep '\.c$')

echo "lint: banned functions"
banned='\b(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|atoi|atol|sscanf|gets|system|popen|strerror|localtime|gmtime|ctime|asctime|rand|sleep)[[:space:]]*\('
if grep -nE "$banned" $src | grep -vE '^\s*(//|\*)' | grep -v 'lint: allow'; then
	echo "lint: banned functions used (see STYLE.md)"
	status=1
fi

cflags="-std=c11 -D_GNU_SOURCE -I. $(pkg-config --cflags libcjson wolfssl libpcre2-8 check libpq libssh2 odbc)"

echo "lint: cppcheck"
# shellcheck disable=SC2086
if ! cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
	--inline-suppr --suppress=missingIncludeSystem -I. -D_GNU_SOURCE $csrc; then
	status=1
fi

echo "lint: clang-tidy"
# shellcheck disable=SC2086
if ! clang-tidy --quiet --warnings-as-errors='*' $csrc -- $cflags 2>/dev/null; then
	status=1
fi

# The registry as outpostd builds it: the plugin loader.
# shellcheck disable=SC2086
if ! clang-tidy --quiet --warnings-as-errors='*' connectors/registry.c -- $cflags -DOP_PLUGINS \
	2>/dev/null; then
	status=1
fi

[ "$status" -eq 0 ] && echo "lint: clean"
exit "$status"
