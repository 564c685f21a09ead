#!/usr/bin/env bash
# Installs what `make test` needs on a Debian 12 machine, only when missing:
# libiscsi's initiator tools and conformance suite, gcc and libiscsi-dev
# (for the small libiscsi initiator the tests build), iproute2 (network
# namespaces), util-linux (losetup), cryptsetup-bin and python3-cryptography
# (LUKS2 and AES-XTS interop tests), plus the user-mode-linux harness's own
# dependencies (scripts/uml/install-deps.sh). Idempotent; needs root for
# apt-get when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libiscsi-bin libiscsi-dev gcc iproute2 util-linux e2fsprogs cryptsetup-bin python3-cryptography; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	echo "install-test-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [[ -x scripts/uml/install-deps.sh ]]; then
	scripts/uml/install-deps.sh
fi
