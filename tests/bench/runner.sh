#!/bin/bash
# runner.sh: rbuild-runner's job pickup latency (job queued on a fake GitLab -> the job's
# script runs) and per-job overhead, beside the same script run directly (`sh -c`) and
# directly in the job sandbox (`rbuild run busybox -- sh -c`). Jobs run in the real
# sandbox, in busybox pulled from a registry on 127.0.0.1, as the end-to-end test user.
#
#   tests/bench/runner.sh          10 jobs per scenario, debug build
#   JOBS=20 PROFILE=release tests/bench/runner.sh
#
# Run as root (it drops to the test user like the end-to-end tests). Prints a table of
# figures; never asserts anything.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JOBS=${JOBS:-10}
PROFILE=${PROFILE:-debug}
flag=()
[ "$PROFILE" = release ] && flag=(--release)
cd "$ROOT"
printf '==> building the workspace binaries (%s)\n' "$PROFILE" >&2
cargo build -q "${flag[@]}" --workspace --bins
exec "target/$PROFILE/rbuild-runner-bench" "$JOBS"
