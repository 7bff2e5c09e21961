#!/usr/bin/env bash
# Builds the seed-matrix Python policy into a WebAssembly component.
#
#   ./build.sh [OUTPUT]    (default: <repo>/target/policies/seed-matrix-py.wasm)
#
# A relative OUTPUT is taken from the current directory. componentize-py comes
# from the virtualenv at <repo>/.venv (created, and requirements.txt installed,
# when missing or not at the pinned version). It generates the bindings for the
# `router` world inside the build; nothing generated is written here.
# `--stub-wasi` replaces every WASI import with a trapping stub, so the
# component imports nothing but the contract's own interfaces (and `print`
# would trap: log through `host.log`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${1:-$repo/target/policies/seed-matrix-py.wasm}"
case "$out" in
    /*) ;;
    *) out="$PWD/$out" ;;
esac

venv="$repo/.venv"
pinned="$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")"
installed=""
if [ -x "$venv/bin/componentize-py" ]; then
    installed="$("$venv/bin/componentize-py" --version | awk '{print $2}')"
fi
if [ "$installed" != "$pinned" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

mkdir -p "$(dirname "$out")"
# VIRTUAL_ENV would add the venv's site-packages (componentize-py itself) to
# the app's path; the policy needs nothing from there.
env -u VIRTUAL_ENV "$venv/bin/componentize-py" \
    --wit-path "$repo/wit/0.2.0" \
    --world router \
    --quiet \
    componentize \
    --stub-wasi \
    --python-path "$here" \
    --output "$out" \
    app
