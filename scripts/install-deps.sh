#!/usr/bin/env bash
# Installs every Debian 12 package needed to build, run and test ImpaleMail.
set -euo pipefail

BUILD_DEPS=(cmake g++ make pkg-config libmilter-dev libhiredis-dev libyaml-cpp-dev libssl-dev libcli11-dev nlohmann-json3-dev prometheus-cpp-dev catch2)
RUN_DEPS=(redis-server redis-tools)
TEST_DEPS=(postfix swaks miltertest python3 python3-pytest procps man-db)
# scripts/fuzz.sh: clang, the libFuzzer/sanitizer runtimes (not pulled in by
# clang itself), llvm-symbolizer (llvm-14) for readable stack traces.
FUZZ_DEPS=(clang libclang-rt-14-dev llvm-14)
# Sendmail e2e tests: the sendmail packages themselves are only downloaded and
# unpacked by tests/e2e/sendmail_lab.py (sendmail-bin conflicts with postfix);
# these are m4 for building the .cf, the libraries the unpacked binaries link
# against, and unshare/mount for its private namespaces.
SENDMAIL_TEST_DEPS=(m4 libwrap0 libdb5.3 libnsl2 libldap-2.5-0 libsasl2-2 libssl3 util-linux mount)
# bench/run.sh: smtp-source comes with postfix, the no-op filter needs gcc and
# libmilter-dev (above); --profile needs valgrind (callgrind) and strace.
BENCH_DEPS=(gcc valgrind strace)

missing=()
for p in "${BUILD_DEPS[@]}" "${RUN_DEPS[@]}" "${TEST_DEPS[@]}" "${SENDMAIL_TEST_DEPS[@]}" "${FUZZ_DEPS[@]}" "${BENCH_DEPS[@]}"; do
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
