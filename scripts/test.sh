#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine, as root:
#   installs dependencies, builds (plain and ASan/UBSan), runs the unit tests
#   under the sanitizers, fuzzes the parsers (clang/libFuzzer, 4 x 60 s), then
#   the end-to-end tests through a real Redis and private Postfix and Sendmail
#   instances on 127.0.0.1, a benchmark and a sizing smoke run, and the soak test.
#   The MTAs run from private directories (the Sendmail packages are
#   downloaded into build/sendmail-debs and unpacked there, never installed);
#   the only system change is tests/e2e/test_package.py installing the
#   impalemail .deb it tests (files under /usr and /etc/impalemail, user impalemail).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
scripts/build.sh --sanitize
scripts/build.sh --deb      # installed and run by tests/e2e/test_package.py

echo "== unit tests (ASan + UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure)

echo "== fuzzing (libFuzzer, 60 s per harness)"
scripts/fuzz.sh 60

echo "== end-to-end tests (Redis, impalemail-milter, Postfix, Sendmail)"
export IMPALEMAIL_MILTER="$PWD/build/milter/impalemail-milter"
export IMPALEMAIL_MILTER_ASAN="$PWD/build-asan/milter/impalemail-milter"
export IMPALECTL="$PWD/build-asan/ctl/impalectl"   # the admin CLI runs under ASan + UBSan
/usr/bin/python3 -m pytest -p no:cacheprovider tests/e2e "$@"

echo "== bad input through Postfix, with the milter built with ASan + UBSan"
IMPALEMAIL_MILTER="$IMPALEMAIL_MILTER_ASAN" /usr/bin/python3 -m pytest -p no:cacheprovider \
    tests/e2e/test_bad_input.py tests/e2e/test_postfix.py "$@"

echo "== sizing smoke run (bench/sizing.py --smoke, 10,000 aliases: fails if the measurement breaks; full figures in docs/deployment.md)"
/usr/bin/python3 bench/sizing.py --smoke

echo "== benchmark smoke run (bench/run.sh --smoke: fails if the benchmark machinery breaks, not on missed targets)"
bench/run.sh --smoke

echo "== soak test with faults (Redis restarts, milter kills, revocations, expiries; figures printed)"
/usr/bin/python3 -m pytest -p no:cacheprovider tests/soak -v
