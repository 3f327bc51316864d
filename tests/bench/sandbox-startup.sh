#!/bin/bash
# sandbox-startup.sh: what one sandbox costs. Times creating a sandbox, running `true` in it
# and tearing it down (`rbuild run ... -- true`, layers already unpacked), beside the floor
# for a bare user+mount+PID namespace (`unshare -Urmpf --mount-proc true`) and a plain
# fork+exec of `true`, all as the same unprivileged user.
#
#   tests/bench/sandbox-startup.sh            RUNS=50 REPS=5; builds rbuild (release)
#   RBUILD=path/to/rbuild RUNS=100 tests/bench/sandbox-startup.sh
#   CACHE_DIR=/dev/shm/rbuild-bench tests/bench/sandbox-startup.sh   cache (and the overlay's
#       upper/work directories) on another file system, e.g. to see what the disk costs
#
# As root, it runs everything as the end-to-end test user (`rbuild-test`, or
# $RBUILD_E2E_USER, created by `rbuild-testenv check`); as a normal user, as yourself.
# Prints a markdown table (median of REPS batches of RUNS runs, per-run milliseconds) and
# the ratio of rbuild to the unshare floor (target: within 2x). Never asserts anything.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-50}
REPS=${REPS:-5}

say() { printf '==> %s\n' "$*" >&2; }

if [ -z "${RBUILD:-}" ]; then
  say "building rbuild (release) and the test fixtures"
  (cd "$ROOT" && cargo build -q --release -p rbuild && cargo build -q -p rbuild-e2e --bin rbuild-testenv)
  RBUILD=$ROOT/target/release/rbuild
fi
TESTENV=${TESTENV:-$ROOT/target/debug/rbuild-testenv}
LAYOUT_SRC=$("$TESTENV" base)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench-XXXXXX")
chmod 755 "$WORK"
if [ "$(id -u)" = 0 ]; then
  BUSER=${RBUILD_E2E_USER:-rbuild-test}
  id "$BUSER" >/dev/null 2>&1 || "$TESTENV" check >/dev/null 2>&1 || true
  as_user() { setpriv --reuid="$BUSER" --regid="$BUSER" --clear-groups --reset-env bash -c "$1"; }
else
  BUSER=$(id -un)
  as_user() { bash -c "$1"; }
fi
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  # Snapshots belong to subordinate ids: remove them from inside a user namespace.
  as_user "unshare --user --map-auto --map-root-user rm -rf '${CACHE:-$WORK/cache}'" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cp -r "$LAYOUT_SRC" "$WORK/busybox"
cp "$RBUILD" "$WORK/rbuild"
[ "$(id -u)" = 0 ] && chown -R "$BUSER:" "$WORK"
IMAGE="oci-layout://$WORK/busybox:amd64"
CACHE=${CACHE_DIR:-$WORK/cache}
RUN="'$WORK/rbuild' run --cache-dir '$CACHE' '$IMAGE' -- true"

say "warming the snapshot cache (first run unpacks the layer)"
as_user "cd '$WORK' && $RUN"

# loop CMD: seconds for RUNS runs of CMD, as the user.
loop() {
  as_user "cd '$WORK'; t0=\$(date +%s.%N); for i in \$(seq 1 $RUNS); do $1 >/dev/null; done; t1=\$(date +%s.%N); echo \"\$t1 - \$t0\" | bc"
}
median() { sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }

declare -A results
for name in plain unshare mapped rbuild; do
  case $name in
    plain) cmd="/bin/true" ;;
    unshare) cmd="unshare -Urmpf --mount-proc true" ;;
    # The same with the 65536-id mapping rbuild makes (newuidmap + newgidmap).
    mapped) cmd="unshare --user --map-auto --map-root-user -mpf --mount-proc true" ;;
    rbuild) cmd="$RUN" ;;
  esac
  say "timing $name ($REPS x $RUNS runs)"
  samples=""
  for _ in $(seq 1 "$REPS"); do
    samples+="$(loop "$cmd")"$'\n'
  done
  results[$name]=$(printf '%s' "$samples" | median)
done


ms() { echo "scale=2; $1 * 1000 / $RUNS" | bc; }
echo
echo "| what (as \`$BUSER\`, $RUNS runs, median of $REPS) | ms per run |"
echo "|---|---:|"
echo "| fork+exec \`true\` | $(ms "${results[plain]}") |"
echo "| \`unshare -Urmpf --mount-proc true\` (floor) | $(ms "${results[unshare]}") |"
echo "| \`unshare --map-auto --map-root-user -mpf --mount-proc true\` (floor with 65536 ids) | $(ms "${results[mapped]}") |"
echo "| \`rbuild run IMAGE -- true\` (create, run, tear down) | $(ms "${results[rbuild]}") |"
echo
echo "rbuild / unshare floor: $(echo "scale=2; ${results[rbuild]} / ${results[unshare]}" | bc)x (target: within 2x)"
echo "rbuild / floor with the same id mapping: $(echo "scale=2; ${results[rbuild]} / ${results[mapped]}" | bc)x"
echo "cache on: $(df --output=fstype "$(dirname "$CACHE")" | tail -1) ($(dirname "$CACHE")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(phase timings of one run: \`RBUILD_LOG=rbuild::sandbox=debug rbuild run ...\`)"
exit 0
