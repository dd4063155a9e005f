#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine, as root:
#   installs dependencies, builds (plain and ASan/UBSan), runs the unit tests
#   under the sanitizers, then the end-to-end tests through a real Redis and
#   private Postfix instances on 127.0.0.1 (nothing in /etc is changed).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
scripts/build.sh --sanitize

echo "== unit tests (ASan + UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure)

echo "== end-to-end tests (Redis, impalemail-milter, Postfix)"
export IMPALEMAIL_MILTER="$PWD/build/milter/impalemail-milter"
export IMPALEMAIL_MILTER_ASAN="$PWD/build-asan/milter/impalemail-milter"
/usr/bin/python3 -m pytest -p no:cacheprovider tests/e2e "$@"
