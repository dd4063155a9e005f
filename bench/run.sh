#!/usr/bin/env bash
# ImpaleMail benchmark: Postfix with no milter vs a no-op libmilter filter vs
# impalemail-milter, interleaved; see docs/benchmarks.md.
#   bench/run.sh            full run (6-12 min): the table in docs/benchmarks.md
#   bench/run.sh --quick    shorter runs, 2 rounds (~3 min)
#   bench/run.sh --smoke    tiny counts (< 1 min); non-zero exit only if the machinery breaks
#   bench/run.sh --profile  callgrind, strace -c and perf of the filters
# Options: --keep (keep the work directory), --json FILE, --rounds N, --seconds S,
# --idle N (sessions for the memory figure), --milter BINARY.
# Root only; works in a fresh /tmp/impalemail-bench-* directory, removed at
# the end (kept on failure or with --keep); nothing outside it changes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/milter/impalemail-milter ] && [ -z "${IMPALEMAIL_MILTER:-}" ]; then
    scripts/build.sh
fi
exec /usr/bin/python3 bench/bench.py "$@"
