#!/usr/bin/env bash
# The pinned install: resolve pyproject.toml (base + dev + shared extras) for Python 3.11 into
# requirements/lock.txt, against torch's pin and without torch's CUDA packages.
#   scripts/lock.sh          re-resolve against the newest releases and rewrite the lock
#   scripts/lock.sh check    re-resolve as of the lock's own date and fail if the result differs
# Both need uv (pip install uv) and the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=requirements/lock.txt
python_version=3.11

resolve() {  # $1: exclude-newer timestamp, $2: output file
  uv pip compile pyproject.toml --extra dev --extra shared --python-version "$python_version" \
    --constraints requirements/bootstrap.txt --excludes requirements/cuda-excludes.txt \
    --exclude-newer "$1" --quiet --custom-compile-command "scripts/lock.sh" -o "$2"
}

case "${1:-update}" in
  update)
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    resolve "$now" "$lock"
    # the date goes into the lock so that `check` can resolve as of the same day
    sed -i "1i # resolved-as-of: $now" "$lock"
    echo "wrote $lock ($(grep -c '==' "$lock") pins, resolved as of $now)"
    ;;
  check)
    as_of=$(sed -n 's/^# resolved-as-of: //p' "$lock")
    [[ -n "$as_of" ]] || { echo "error: $lock has no '# resolved-as-of:' line" >&2; exit 1; }
    fresh=$(mktemp)
    trap 'rm -f "$fresh"' EXIT
    resolve "$as_of" "$fresh"
    sed -i "1i # resolved-as-of: $as_of" "$fresh"
    if ! diff -u "$lock" "$fresh"; then
      echo "error: $lock is not what pyproject.toml resolves to (as of $as_of): run scripts/lock.sh" >&2
      exit 1
    fi
    echo "$lock matches pyproject.toml (resolved as of $as_of)"
    ;;
  *) echo "usage: scripts/lock.sh [update|check]" >&2; exit 2 ;;
esac
