#!/bin/bash
# sandbox-startup.sh: what one sandbox costs. Times creating a sandbox, running `true` in it
# and tearing it down, beside the floor for a bare user+mount+PID namespace
# (`unshare -Urmpf --mount-proc true`) and a plain fork+exec of `true`, all as the same
# unprivileged user, in two settings:
#   - a build step: (41 x `RUN true` - 1 x `RUN true`) / 40 with `--no-cache`. Each step's
#     sandbox has its own user (mapped), mount, PID, IPC and UTS namespaces, an overlay root
#     with the standard mounts, runs `true` and is torn down (its run directory recycled);
#   - `rbuild run IMAGE -- true`: the whole command, rbuild's own start, reading the image
#     and the 65536-id mapping through the setuid `newuidmap`/`newgidmap` included (the
#     second floor does that mapping too).
# Layers are unpacked once beforehand.
#
#   tests/bench/sandbox-startup.sh            RUNS=50 REPS=7 BUILDS=5; builds rbuild (release)
#   RBUILD=path/to/rbuild RUNS=100 tests/bench/sandbox-startup.sh
#   CACHE_DIR=/dev/shm/rbuild-bench tests/bench/sandbox-startup.sh   cache (and the overlay's
#       upper/work directories) on another file system, e.g. to see what the disk costs
#
# As root, it runs everything as the end-to-end test user (`rbuild-test`, or
# $RBUILD_E2E_USER, created by `rbuild-testenv check`); as a normal user, as yourself.
# Prints a markdown table (median of REPS rounds: RUNS runs, or BUILDS builds of each
# Dockerfile; milliseconds per sandbox) and the median of the per-round ratios to the
# floors (target: within 2x of `unshare -Urmpf`). Never asserts anything.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-50}
REPS=${REPS:-7}
BUILDS=${BUILDS:-5}
STEPS=41

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
mkdir -p "$WORK/one" "$WORK/many"
printf 'FROM base\nRUN true\n' > "$WORK/one/Dockerfile"
{ echo 'FROM base'; for i in $(seq 1 $STEPS); do echo "RUN true $i"; done; } > "$WORK/many/Dockerfile"
[ "$(id -u)" = 0 ] && chown -R "$BUSER:" "$WORK/one" "$WORK/many"
BUILD="'$WORK/rbuild' build --progress plain --no-cache --cache-dir '$CACHE' --build-context base='$IMAGE'"

say "warming the snapshot cache (first run unpacks the layer)"
as_user "cd '$WORK' && $RUN && $BUILD '$WORK/one' >/dev/null 2>&1"

# loop CMD [N]: seconds for N (default RUNS) runs of CMD, as the user.
loop() {
  as_user "cd '$WORK'; t0=\$(date +%s.%N); for i in \$(seq 1 ${2:-$RUNS}); do $1 >/dev/null 2>&1; done; t1=\$(date +%s.%N); echo \"\$t1 - \$t0\" | bc"
}
median() { sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }

# Rounds: each times every setting once, one after the other, so the floors and rbuild
# see the same machine (its speed drifts by 10-20% over minutes); the ratios are taken
# per round, then the median over the rounds.
declare -A samples t
say "timing $REPS rounds: $RUNS runs of each command, $BUILDS builds of 1 and of $STEPS RUN steps"
for _ in $(seq 1 "$REPS"); do
  t[plain]=$(loop "/bin/true")
  t[unshare]=$(loop "unshare -Urmpf --mount-proc true")
  # The same with the 65536-id mapping rbuild makes (newuidmap + newgidmap).
  t[mapped]=$(loop "unshare --user --map-auto --map-root-user -mpf --mount-proc true")
  t[rbuild]=$(loop "$RUN")
  one=$(loop "$BUILD '$WORK/one'" "$BUILDS")
  many=$(loop "$BUILD '$WORK/many'" "$BUILDS")
  # Scaled to RUNS sandboxes, like the other figures.
  t[step]=$(echo "scale=9; ($many - $one) * $RUNS / $BUILDS / ($STEPS - 1)" | bc)
  t[r_step]=$(echo "scale=6; ${t[step]} / ${t[unshare]}" | bc)
  t[r_run]=$(echo "scale=6; ${t[rbuild]} / ${t[unshare]}" | bc)
  t[r_run_mapped]=$(echo "scale=6; ${t[rbuild]} / ${t[mapped]}" | bc)
  for k in "${!t[@]}"; do samples[$k]+="${t[$k]}"$'\n'; done
  say "round: build step $(printf '%.2f' "${t[r_step]}")x the floor; rbuild run $(printf '%.2f' "${t[r_run_mapped]}")x the same-mapping floor"
done
declare -A results
for k in "${!samples[@]}"; do
  results[$k]=$(printf '%s' "${samples[$k]}" | median)
done

ms() { printf '%.2f' "$(echo "scale=4; $1 * 1000 / $RUNS" | bc)"; }
echo
echo "| what (as \`$BUSER\`; median of $REPS rounds of $RUNS runs or $BUILDS builds) | ms per sandbox |"
echo "|---|---:|"
echo "| fork+exec \`true\` | $(ms "${results[plain]}") |"
echo "| \`unshare -Urmpf --mount-proc true\` (floor) | $(ms "${results[unshare]}") |"
echo "| \`unshare --map-auto --map-root-user -mpf --mount-proc true\` (floor with 65536 ids) | $(ms "${results[mapped]}") |"
echo "| a build step's sandbox (own user, mount, PID, IPC, UTS namespaces; run \`true\`; torn down) | $(ms "${results[step]}") |"
echo "| \`rbuild run IMAGE -- true\` (the whole command) | $(ms "${results[rbuild]}") |"
echo
r() { printf '%.2f' "$1"; }
echo "median of the per-round ratios:"
echo "build step sandbox / unshare floor: $(r "${results[r_step]}")x (target: within 2x)"
echo "rbuild run / unshare floor: $(r "${results[r_run]}")x; / floor with the same id mapping: $(r "${results[r_run_mapped]}")x"
echo "cache on: $(df --output=fstype "$(dirname "$CACHE")" | tail -1) ($(dirname "$CACHE")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(phase timings of one run: \`RBUILD_LOG=rbuild::sandbox=debug rbuild run ...\`)"
exit 0
