#!/bin/sh
# make deb: builds the Debian package from this tree into build/pkg/deb/
# and checks it with lintian (any error or warning fails).
#
# The package is built from a copy of the tree (build/, node_modules, a
# --dev store and what .gitignore names left out) with packaging/debian as
# its debian/ and the unit, sysusers and tmpfiles files of packaging/systemd
# beside it. For upgrade tests: OUTPOST_PKG_VERSION (say 0.1.1) builds that
# version instead of debian/changelog's (a changelog entry is added to the
# copy), and OUTPOST_PKG_CONF_LINE is a line appended to the packaged
# default config, as a new version that changed it would.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build/pkg/deb
version=${OUTPOST_PKG_VERSION:-$(dpkg-parsechangelog -l "$top/packaging/debian/changelog" -S Version)}
src=$out/outpost-$version

rm -rf "$src"
mkdir -p "$src"
(cd "$top" && tar --exclude=./build --exclude=./.git --exclude=node_modules \
	--exclude=./.outpost-data --exclude=./var --exclude-vcs-ignores -cf - .) |
	(cd "$src" && tar -xf -)
rm -rf "$src/debian"
cp -r "$top/packaging/debian" "$src/debian"
cp "$top/packaging/systemd/outpost.service" "$src/debian/outpost.service"
cp "$top/packaging/systemd/outpost.sysusers" "$src/debian/outpost.sysusers"
cp "$top/packaging/systemd/outpost.tmpfiles" "$src/debian/outpost.tmpfiles"
if [ -n "${OUTPOST_PKG_CONF_LINE:-}" ]; then
	printf '%s\n' "$OUTPOST_PKG_CONF_LINE" >>"$src/packaging/outpost.conf"
fi
if [ -n "${OUTPOST_PKG_VERSION:-}" ]; then
	# The entry's date must come after the previous entry's.
	last=$(dpkg-parsechangelog -l "$top/packaging/debian/changelog" -S Timestamp)
	when=$(date +%s)
	[ "$when" -gt "$last" ] || when=$((last + 60))
	{
		printf 'outpost (%s) unstable; urgency=medium\n\n' "$version"
		printf '  * Rebuilt as version %s.\n\n' "$version"
		printf ' -- Outpost Packaging <packaging@outpost.example.com>  %s\n\n' "$(date -R -d "@$when")"
		cat "$top/packaging/debian/changelog"
	} >"$src/debian/changelog"
fi

(cd "$src" && dpkg-buildpackage -us -uc -b)
changes=$out/outpost_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
lintian --fail-on error,warning "$changes"
echo "deb: $(ls "$out"/outpost_"$version"_*.deb)"
