#!/usr/bin/env bash
# The whole check, as the README says: scripts/test.sh [pytest args...]
# Runs as root; a user with sudo rights is switched to root through sudo (scripts/root.sh).
#
# 1. scripts/setup.sh (packages, .venv, the netlab command; quick when nothing changed)
# 2. ruff check netlab tests benchmarks
# 3. pytest -q: unit and integration tests (integration tests need root: real namespaces)
#
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
# NETLAB_TEST_TIMEOUT (seconds, default 780, 0 = none) bounds the pytest run so CI stays
# under 15 minutes; on expiry pytest gets SIGINT, so fixtures still tear their labs down.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

say() { printf 'test: %s\n' "$*"; }

# shellcheck source=scripts/root.sh
source scripts/root.sh
become_root "$repo/scripts/test.sh" "$@"

scripts/setup.sh

lint_paths=()
for d in netlab tests benchmarks; do
    if [[ -d $d ]]; then lint_paths+=("$d"); fi
done
say "ruff check ${lint_paths[*]}"
.venv/bin/ruff check "${lint_paths[@]}"

pytest_args=(-q)
if [[ ${CI:-} == true ]]; then pytest_args+=(--durations=10); fi

limit=${NETLAB_TEST_TIMEOUT:-780}
runner=()
if [[ $limit != 0 ]]; then
    runner=(timeout -s INT -k 60)
    # On a terminal pytest must stay in the foreground process group (Ctrl-C, tty).
    if [[ -t 0 ]]; then runner+=(--foreground); fi
    runner+=("$limit")
fi

say "pytest ${pytest_args[*]} $*"
rc=0
"${runner[@]}" .venv/bin/python -m pytest "${pytest_args[@]}" "$@" || rc=$?

case $rc in
    0) say "OK" ;;
    5) say "FAILED: pytest collected no tests (exit 5). This suite always has tests:" \
           "check the paths, -k/-m expressions and collection errors above." >&2 ;;
    124) say "FAILED: pytest still running after ${limit}s (NETLAB_TEST_TIMEOUT); interrupted" >&2 ;;
    *) say "FAILED: pytest exit status $rc" >&2 ;;
esac
exit "$rc"
