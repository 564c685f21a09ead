#!/bin/sh
# build-fio.sh rebuilds Debian's fio with its libiscsi engine for the
# benchmark harness (go run ./bench) and prints the path of the binary.
#
# Debian's fio package is built without --enable-libiscsi. This script takes
# fio's Debian source package (apt-get source fio, with Debian's patches
# applied), configures it with --enable-libiscsi and builds it into
#   ${HASTOR_CACHE:-$HOME/.cache/hastor}/fio-libiscsi/bin/fio
# A second run finds the cached binary and only prints its path.
#
# One local change: upstream's libiscsi engine declares FIO_SYNCIO although it
# queues commands asynchronously (iscsi_scsi_command_async, completions reaped
# in getevents). With that flag fio prints "queue depth will be capped at 1"
# and never keeps more than one command in flight, so iodepth=32 would measure
# the same as iodepth=1. The flag is removed here so iodepth means what it says.
#
# Needs the packages of bench/install-deps.sh (run first if missing; root).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${HASTOR_CACHE:-$HOME/.cache/hastor}/fio-libiscsi
bin=$cache/bin/fio
# Bump when the build recipe changes so that caches are rebuilt.
recipe=2

if [ -x "$bin" ] && [ "$(cat "$cache/recipe" 2>/dev/null)" = "$recipe" ]; then
	echo "$bin"
	exit 0
fi

"$here/install-deps.sh" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/hastor-fio-build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

(
	cd "$work"
	# The _apt sandbox user cannot write to a root-owned mktemp dir; the
	# download still works (as root) and apt says so, which is harmless.
	apt-get source -q fio >"$work/source.log" 2>&1 || {
		cat "$work/source.log" >&2
		exit 1
	}
)
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'fio-*' | head -n 1)
if [ -z "$src" ]; then
	echo "build-fio.sh: apt-get source fio produced no source tree" >&2
	exit 1
fi

eng=$src/engines/libiscsi.c
if ! grep -q 'FIO_SYNCIO | FIO_DISKLESSIO' "$eng"; then
	echo "build-fio.sh: $eng does not look as expected (FIO_SYNCIO flag line missing); refusing to guess" >&2
	exit 1
fi
sed -i 's/FIO_SYNCIO | FIO_DISKLESSIO/FIO_DISKLESSIO/' "$eng"
if grep -q 'FIO_SYNCIO' "$eng"; then
	echo "build-fio.sh: failed to remove FIO_SYNCIO from $eng" >&2
	exit 1
fi

(
	cd "$src"
	./configure --disable-native --enable-libiscsi --prefix="$cache" >"$work/configure.log" 2>&1 || {
		cat "$work/configure.log" >&2
		exit 1
	}
	if ! grep -Eq '^iscsi engine +yes' "$work/configure.log"; then
		cat "$work/configure.log" >&2
		echo "build-fio.sh: configure did not enable the iscsi engine (libiscsi-dev missing?)" >&2
		exit 1
	fi
	make -j"$(nproc)" fio >"$work/make.log" 2>&1 || {
		tail -n 50 "$work/make.log" >&2
		exit 1
	}
	mkdir -p "$cache/bin"
	install -m 0755 fio "$bin.tmp"
	mv "$bin.tmp" "$bin"
)

if ! "$bin" --enghelp=libiscsi >/dev/null 2>&1; then
	echo "build-fio.sh: built fio has no libiscsi engine" >&2
	exit 1
fi
echo "$recipe" >"$cache/recipe"
echo "$bin"
