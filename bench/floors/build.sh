#!/usr/bin/env bash
# Builds the JavaScript and Python floor routers (a constant answer, no
# logic) with the seed matrices' own toolchains and options, for the floor
# rows of BENCHMARKS.md:
#
#   bench/floors/build.sh [OUTDIR]    (default: <repo>/target/floors)
#
# Writes floor-js-full.wasm, floor-js-minimal.wasm, floor-py-full.wasm and
# floor-py-minimal.wasm. The toolchains are the ones examples/policies/*/build.sh
# install (node_modules there, the repo's .venv): run those once first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/floors}"
case "$out" in
    /*) ;;
    *) out="$PWD/$out" ;;
esac
js="$repo/examples/policies/js"
venv="$repo/.venv"
if [ ! -x "$js/node_modules/.bin/componentize-js" ] || [ ! -x "$venv/bin/componentize-py" ]; then
    echo "build the seed matrices first: examples/policies/js/build.sh and examples/policies/python/build.sh" >&2
    exit 1
fi
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for answer in full minimal; do
    sed "s/FLOOR_ANSWER/$answer/" "$here/floor.js" > "$work/floor-$answer.js"
    # As examples/policies/js/build.sh builds the seed matrix.
    (cd "$js" && node_modules/.bin/componentize-js "$work/floor-$answer.js" \
        --wit ../../../wit/0.2.0 \
        --world-name router \
        --disable random clocks http fetch-event \
        --out "$out/floor-js-$answer.wasm")

    mkdir -p "$work/py-$answer"
    sed "s/FLOOR_ANSWER/$answer/" "$here/floor_app.py" > "$work/py-$answer/app.py"
    # As examples/policies/python/build.sh builds the seed matrix.
    env -u VIRTUAL_ENV "$venv/bin/componentize-py" \
        --wit-path "$repo/wit/0.2.0" \
        --world router \
        --quiet \
        componentize \
        --stub-wasi \
        --python-path "$work/py-$answer" \
        --output "$out/floor-py-$answer.wasm" \
        app
done
ls -l "$out"
