#!/usr/bin/env bash
# Builds the seed-matrix JavaScript policy into a WebAssembly component.
#
#   ./build.sh [OUTPUT]    (default: <repo>/target/policies/seed-matrix-js.wasm)
#
# A relative OUTPUT is taken from the current directory. Uses componentize-js's
# own CLI from node_modules (installed with `npm ci` when missing or older than
# package-lock.json). Of the WASI features StarlingMonkey offers only `stdio`
# is kept, so that console output reaches the host; `random`, `clocks`, `http`
# and `fetch-event` are dropped (the policy reads no clock and no randomness).
#
# POINTSMAN_JS_AOT=1 compiles the JavaScript ahead of time (componentize-js
# `--aot`, which partially evaluates SpiderMonkey's interpreter with weval).
# The weval binary comes from POINTSMAN_WEVAL (a path; `cargo install weval
# --version 0.5.0 --locked` builds one) or, without it, componentize-js
# downloads a release from GitHub. Off by default: it needs that binary, the
# component grows from 12 to 15 MiB (compiled: 37 to 44 MiB), and a route
# decision gains only about 13% (see BENCHMARKS.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${1:-$repo/target/policies/seed-matrix-js.wasm}"
# Make the output absolute before changing directory.
case "$out" in
    /*) ;;
    *) out="$PWD/$out" ;;
esac

cd "$here"
# node_modules/.package-lock.json is what `npm ci` last installed.
if [ ! -x node_modules/.bin/componentize-js ] ||
    [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
aot=()
if [ "${POINTSMAN_JS_AOT:-}" = 1 ]; then
    aot=(--aot)
    if [ -n "${POINTSMAN_WEVAL:-}" ]; then
        aot+=(--weval-bin "$POINTSMAN_WEVAL")
    fi
fi
mkdir -p "$(dirname "$out")"
node_modules/.bin/componentize-js seed-matrix.js \
    --wit ../../../wit/0.2.0 \
    --world-name router \
    --disable random clocks http fetch-event \
    ${aot[@]+"${aot[@]}"} \
    --out "$out"
