#!/usr/bin/env bash
# Builds into build/ (what gets installed), with --sanitize into build-asan/
# (AddressSanitizer + UndefinedBehaviorSanitizer), or with --deb the Debian
# package into build-deb/ (prefix /usr, Release).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
flags=(-DIMPALEMAIL_WERROR=ON)
case "${1:-}" in
--sanitize)
    dir=build-asan
    flags+=(-DIMPALEMAIL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
    ;;
--deb)
    dir=build-deb
    flags+=(-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release -DIMPALEMAIL_TESTS=OFF)
    ;;
esac
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
if [ "$dir" = build-deb ]; then
    (cd build-deb && cpack -G DEB >/dev/null && ls -1 "$PWD"/impalemail_*.deb)
fi
