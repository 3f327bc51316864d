#!/bin/bash
# registry.sh: pull and push throughput of a 200 MiB layer against a loopback registry,
# and export of the same image to an OCI archive, rbuild beside `skopeo copy` of the same
# image, with each tool's peak RSS.
#
#   tests/bench/registry.sh                 # RUNS=3, SIZE_MIB=200
#   RUNS=1 SIZE_MIB=1024 tests/bench/registry.sh
#   RBUILD=target/release/rbuild tests/bench/registry.sh
#
# The layer is incompressible (urandom in a tar), stored uncompressed, so the figures are
# transfer + hashing + disk, not compression. Every measured push goes to a fresh registry
# (no cross-repository mounts, no "blob exists" shortcuts); every pull goes into an empty
# cache (rbuild) or an empty layout (skopeo). Wall time and peak RSS come from
# /usr/bin/time (%e, %M). Prints a table; never asserts.
#
# Needs: docker-registry, skopeo, jq, GNU time, and the built binaries
# (`cargo build --workspace --bins`, or `--release` for release figures).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-200}
if [ -z "${RBUILD:-}" ]; then
  if [ -x "$ROOT/target/release/rbuild" ]; then RBUILD=$ROOT/target/release/rbuild; else RBUILD=$ROOT/target/debug/rbuild; fi
fi
TESTENV=${TESTENV:-$(dirname "$RBUILD")/rbuild-testenv}
[ -x "$TESTENV" ] || TESTENV=$ROOT/target/debug/rbuild-testenv
for t in "$RBUILD" "$TESTENV" /usr/bin/skopeo /usr/bin/jq /usr/bin/time /usr/bin/docker-registry; do
  [ -x "$t" ] || { echo "error: \`$t\` is missing (build with \`cargo build --workspace --bins\`; apt-get install skopeo jq time docker-registry)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench-registry.XXXXXX")
REGS=()
cleanup() {
  for r in "${REGS[@]}"; do "$TESTENV" registry stop --dir "$r" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }

# --- the image: one uncompressed layer of SIZE_MIB incompressible bytes ---------------
say "making a ${SIZE_MIB} MiB layer image in $WORK/layout"
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256" "$WORK/root"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/root/blob.bin"
tar -C "$WORK/root" --owner=0 --group=0 --mtime=@0 -cf "$WORK/layer.tar" blob.bin
rm -f "$WORK/root/blob.bin"
put() { # file media-type -> descriptor json
  local d s
  d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
  mv "$1" "$LAYOUT/blobs/sha256/$d"
  jq -cn --arg m "$2" --arg d "sha256:$d" --argjson s "$s" '{mediaType:$m,digest:$d,size:$s}'
}
LAYER_SIZE=$(stat -c %s "$WORK/layer.tar")
LAYER_DIGEST=sha256:$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
LAYER=$(put "$WORK/layer.tar" application/vnd.oci.image.layer.v1.tar)
jq -cn --arg d "$LAYER_DIGEST" '{architecture:"amd64",os:"linux",config:{},rootfs:{type:"layers",diff_ids:[$d]}}' > "$WORK/config.json"
CONFIG=$(put "$WORK/config.json" application/vnd.oci.image.config.v1+json)
jq -cn --argjson c "$CONFIG" --argjson l "$LAYER" \
  '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",config:$c,layers:[$l]}' > "$WORK/manifest.json"
MANIFEST=$(put "$WORK/manifest.json" application/vnd.oci.image.manifest.v1+json)
echo '{"imageLayoutVersion":"1.0.0"}' > "$LAYOUT/oci-layout"
jq -cn --argjson m "$MANIFEST" '{schemaVersion:2,manifests:[$m + {annotations:{"org.opencontainers.image.ref.name":"bench"}}]}' > "$LAYOUT/index.json"

fresh_registry() { # -> host:port
  local dir=$WORK/reg-$RANDOM$RANDOM
  REGS+=("$dir")
  "$TESTENV" registry start --dir "$dir"
}

# measure NAME CMD... : appends "name seconds rss_kib" to results
RESULTS=$WORK/results.txt
measure() {
  local name=$1; shift
  if ! /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err"; then
    echo "error: $name failed:" >&2; cat "$WORK/err" >&2; exit 1
  fi
  echo "$name $(cat "$WORK/time")" >> "$RESULTS"
}

say "rbuild: $RBUILD ($("$RBUILD" --version)); skopeo: $(skopeo --version); $RUNS runs"
for run in $(seq "$RUNS"); do
  say "run $run/$RUNS"
  # push: layout -> fresh registry
  R=$(fresh_registry)
  measure "push rbuild" "$RBUILD" push --cache-dir "$WORK/cache-push" "oci-layout://$LAYOUT:bench" "$R/bench:r"
  R2=$(fresh_registry)
  measure "push skopeo" skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:bench" "docker://$R2/bench:s"
  # pull: registry -> empty cache / empty layout
  rm -rf "$WORK/cache-pull" "$WORK/skopeo-pull"
  measure "pull rbuild" "$RBUILD" pull --cache-dir "$WORK/cache-pull" "$R/bench:r"
  measure "pull skopeo" skopeo copy --quiet --src-tls-verify=false "docker://$R/bench:r" "oci:$WORK/skopeo-pull:bench"
  # export: layout -> OCI layout tar
  rm -f "$WORK/rbuild.tar" "$WORK/skopeo.tar"
  measure "export rbuild" "$RBUILD" push --cache-dir "$WORK/cache-push" "oci-layout://$LAYOUT:bench" "oci-archive:$WORK/rbuild.tar"
  measure "export skopeo" skopeo copy --quiet "oci:$LAYOUT:bench" "oci-archive:$WORK/skopeo.tar"
  # rbuild stored exactly the layer it was sent
  [ -f "$WORK/cache-pull/blobs/sha256/${LAYER_DIGEST#sha256:}" ] || { echo "error: rbuild did not store the layer" >&2; exit 1; }
  for r in "${REGS[@]}"; do "$TESTENV" registry stop --dir "$r" >/dev/null 2>&1 || true; rm -rf "$r"; done
  REGS=()
done

MIB=$(awk -v s="$LAYER_SIZE" 'BEGIN { printf "%.1f", s / 1048576 }')
echo
echo "Registry transfer of one ${MIB} MiB uncompressed layer, loopback registry, medians of $RUNS runs"
echo
printf '| %-13s | %8s | %8s | %13s |\n' operation seconds 'MiB/s' 'peak RSS MiB'
printf '|%s|%s|%s|%s|\n' --------------- ---------- ---------- ---------------
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for op in "push rbuild" "push skopeo" "pull rbuild" "pull skopeo" "export rbuild" "export skopeo"; do
  t=$(grep "^$op " "$RESULTS" | awk '{ print $3 }' | median)
  r=$(grep "^$op " "$RESULTS" | awk '{ print $4 }' | median)
  awk -v op="$op" -v t="$t" -v r="$r" -v size="$LAYER_SIZE" 'BEGIN {
    printf "| %-13s | %8.2f | %8.1f | %13.1f |\n", op, t, (t > 0 ? size / 1048576 / t : 0), r / 1024 }'
done
echo
echo "peak RSS is the largest process (/usr/bin/time %M); rbuild target: under 64 MiB whatever the layer size"
