#!/usr/bin/env bash
# Installs every Debian 12 package needed to build, run and test ImpaleMail.
set -euo pipefail

BUILD_DEPS=(cmake g++ make pkg-config libmilter-dev libhiredis-dev libyaml-cpp-dev libssl-dev libcli11-dev catch2)
RUN_DEPS=(redis-server redis-tools)
TEST_DEPS=(postfix swaks miltertest python3 python3-pytest procps)

missing=()
for p in "${BUILD_DEPS[@]}" "${RUN_DEPS[@]}" "${TEST_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix is only run as private instances; leave the system one unconfigured.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
