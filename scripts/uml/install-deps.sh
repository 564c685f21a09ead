#!/usr/bin/env bash
# Installs what the User-Mode Linux iSCSI harness (internal/uml) needs on a
# Debian 12 host, with apt-get, only when something is missing (idempotent):
#   user-mode-linux  the guest kernel (/usr/bin/linux.uml) and its modules
#   mmdebstrap       builds the guest root filesystem (build-rootfs.sh)
#   tgt              reference target for TestKernelInitiatorAgainstTgt
#   iproute2         ip netns / ip tuntap
#   util-linux       flock
# Services that packages would start (tgt listens on port 3260) are kept from
# starting with a temporary policy-rc.d when none exists.
#
# Usage: install-deps.sh [--rootfs]   (--rootfs also builds/reuses the rootfs)
set -euo pipefail

PKGS="user-mode-linux mmdebstrap tgt iproute2 util-linux"

[ "$(id -u)" = 0 ] || { echo "install-deps: must run as root" >&2; exit 1; }

missing=()
for p in $PKGS; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}" >&2
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The UML tuntap transport opens /dev/net/tun.
if [ ! -e /dev/net/tun ]; then
	modprobe tun 2>/dev/null || true
	if [ ! -e /dev/net/tun ]; then
		mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun
	fi
fi

if [ "${1:-}" = --rootfs ]; then
	"$(dirname "$0")/build-rootfs.sh" >/dev/null
fi
