#!/bin/bash
# build.sh: rbuild beside Buildah on the shared benchmark workloads, in one run, on ext4
# and on tmpfs, as the same unprivileged user against the same registry; prints a table
# of medians and rbuild/Buildah ratios (with the issue's targets), peak RSS, and a
# file-system comparison of the images both built. Never asserts.
#
#   sudo tests/bench/build.sh                         # everything (~1 h: W2/W5b download)
#   sudo RUNS=1 W3_RUNS=5 WORKLOADS="W1-tiny W3-manyfiles" tests/bench/build.sh
#   sudo FS=tmpfs SKIP_BUILDAH=1 tests/bench/build.sh  # rbuild only
#
# Prerequisites (../shared/bench/README.md, "Set-up"): buildah, the registry on
# 127.0.0.1:5000 with the bases from make-bases.sh, the user $BENCH_USER (rbench).
# Run as root: every measured command runs as $BENCH_USER (su / setpriv), exactly as
# run-buildah.sh runs Buildah.
#
# Phases per workload and run (fresh cache/storage for each run):
#   cold    build with an empty cache (the base is pulled from the registry)
#   warm    the same build again, nothing changed
#   change  one line appended to the workload's probe file (a COPY'd file), build again
#   push    the built image pushed to a new repository of the registry
# W5a/W5b are W1/W2 with --platform linux/arm64 (qemu through a private binfmt_misc).
#
# Env: RUNS (3) W3_RUNS (5) WORKLOADS FS ("ext4 tmpfs") REG (127.0.0.1:5000)
#      BENCH_USER (rbench) RBUILD (binary; default: cargo build --release)
#      OUT (result dir) SKIP_BUILDAH=1 BUILDAH_CSV=<earlier results.csv to reuse>
#      SKIP_RBUILD=1 (with an earlier OUT: add Buildah's figures to it)
#      COMPARE=0 (skip the file-system comparison) STARTUP=0 (skip the per-step figure)
set -euo pipefail
ROOT=${RBUILD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -d "$SHARED" ] || SHARED=/work/shared/bench
RUNS=${RUNS:-3}
W3_RUNS=${W3_RUNS:-5}
REG=${REG:-127.0.0.1:5000}
BUSER=${BENCH_USER:-rbench}
FS=${FS:-"ext4 tmpfs"}
WORKLOADS=${WORKLOADS:-"W1-tiny W2-apt W3-manyfiles W4-multistage W5a-arm64-tiny W5b-arm64-apt"}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-/var/tmp/bench-results/rbuild-$STAMP}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the measured commands run as \$BENCH_USER, like run-buildah.sh)"
id "$BUSER" >/dev/null 2>&1 || die "no user $BUSER; see $SHARED/README.md (useradd -m $BUSER)"
for t in /usr/bin/time /usr/bin/skopeo /usr/bin/umoci python3; do
  command -v "$t" >/dev/null || die "\`$t\` is missing (apt-get install time skopeo umoci python3)"
done
curl -fsS "http://$REG/v2/" >/dev/null || die "no registry on $REG; start it as $SHARED/README.md says"
for b in busybox:latest debian:bookworm; do
  skopeo inspect --raw --tls-verify=false "docker://$REG/$b" >/dev/null 2>&1 \
    || die "$REG has no $b; run $SHARED/make-bases.sh first"
done
mkdir -p "$OUT"
CSV=$OUT/results.csv
# SKIP_RBUILD=1 with the OUT of an earlier run adds Buildah's figures to its results.
if [ "${SKIP_RBUILD:-0}" != 1 ] || [ ! -s "$CSV" ]; then
  echo "engine,workload,run,phase,seconds,maxrss_kb,bytes,note" > "$CSV"
fi

if [ -z "${RBUILD:-}" ]; then
  say "building rbuild (release)"
  (cd "$ROOT" && cargo build -q --release -p rbuild)
  RBUILD=$ROOT/target/release/rbuild
fi
BIN=/var/tmp/rbuild-bench-bin
mkdir -p "$BIN"; cp "$RBUILD" "$BIN/rbuild"; chmod 755 "$BIN" "$BIN/rbuild"

BHOME=$(getent passwd "$BUSER" | cut -d: -f6)
AS_USER=(setpriv "--reuid=$BUSER" "--regid=$BUSER" --clear-groups --reset-env
  env "HOME=$BHOME" PATH=/usr/local/bin:/usr/bin:/bin)
as_user() { "${AS_USER[@]}" "$@"; }
rm_as_user() { as_user unshare --user --map-auto --map-root-user rm -rf "$@" 2>/dev/null || rm -rf "$@"; }

wl_ctx()      { case $1 in W5a-arm64-tiny) echo W1-tiny;; W5b-arm64-apt) echo W2-apt;; *) echo "$1";; esac; }
wl_platform() { case $1 in W5*) echo linux/arm64;; *) echo linux/amd64;; esac; }
wl_probe()    { case $(wl_ctx "$1") in
                  W1-tiny) echo hello.txt;; W2-apt) echo app/README.txt;;
                  W3-manyfiles) echo gen.sh;; W4-multistage) echo app.conf;; esac; }
fs_dir()      { case $1 in tmpfs) echo /dev/shm/rbuild-bench;; *) echo /var/tmp/rbuild-bench;; esac; }
# Where the cache goes. On ext4 it is in the user's home, as Buildah's storage is
# (~/.local/share/containers): ext4 without a journal skips inodes deleted in the last
# minutes when it allocates new ones, so a directory in a block group full of recently
# deleted files (/var/tmp after a few runs) creates files many times slower.
cache_dir()   { case $1 in tmpfs) echo "$2/cache";; *) echo "$BHOME/.cache/rbuild-bench/$3";; esac; }

# measure ENGINE WORKLOAD RUN PHASE LOG CMD...: one CSV row (wall seconds, max RSS)
measure() {
  local engine=$1 wl=$2 run=$3 phase=$4 log=$5; shift 5
  local tf; tf=$(mktemp); local rc=0
  /usr/bin/time -f '%e %M' -o "$tf" "$@" > "$log" 2>&1 || rc=$?
  local secs rss; read -r secs rss < <(tail -1 "$tf"); rm -f "$tf"
  local note=""; [ $rc = 0 ] || note="FAILED rc=$rc"
  echo "$engine,$wl,$run,$phase,$secs,$rss,,$note" >> "$CSV"
  local own=""
  if [[ $engine == rbuild-* ]]; then
    own=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -ao 'peak_rss_kb=[0-9]*' | cut -d= -f2 | sort -n | tail -1 || true)
    [ -n "$own" ] && echo "$engine,$wl,$run,own_rss_$phase,,$own,," >> "$CSV"
  fi
  printf '%s %-16s run %s %-7s %6ss  %6s KB (tree) %s KB (rbuild) %s\n' "$engine" "$wl" "$run" "$phase" "$secs" "$rss" "${own:-?}" "$note" >&2
  return $rc
}

# --- rbuild ---------------------------------------------------------------------------
[ "${SKIP_RBUILD:-0}" = 1 ] && FS_RBUILD="" || FS_RBUILD=$FS
for fs in $FS_RBUILD; do
  base=$(fs_dir "$fs")
  engine=rbuild-$fs
  for wl in $WORKLOADS; do
    ctxname=$(wl_ctx "$wl"); plat=$(wl_platform "$wl"); probe=$(wl_probe "$wl")
    runs=$RUNS; [ "$ctxname" = W3-manyfiles ] && runs=$W3_RUNS
    tag=$REG/bench/rbuild-$(echo "$wl" | tr '[:upper:]' '[:lower:]'):latest
    for run in $(seq 1 "$runs"); do
      w=$base/$wl-$run
      cache=$(cache_dir "$fs" "$w" "$wl-$run")
      # Like run-buildah.sh's reset: the previous state removed, then `sync`.
      rm_as_user "$w" "$cache"; sync
      mkdir -p "$w"; as_user mkdir -p "$(dirname "$cache")"; cp -a "$SHARED/workloads/$ctxname" "$w/ctx"
      chmod -R u+w "$w/ctx"; chown -R "$BUSER:" "$w"; chmod 755 "$base" "$w"
      # The debug lines carry the peak RSS of rbuild and of each sandbox helper (what
      # /usr/bin/time reports is the largest process of the tree: apt, dpkg, ...).
      build=(env "RBUILD_LOG=rbuild::cmd::build=debug,rbuild::sandbox::helper=debug"
             "$BIN/rbuild" build --progress plain --cache-dir "$cache" --platform "$plat"
             --build-arg "REGISTRY=$REG" -t "$tag" "$w/ctx")
      L=$OUT/$engine-$wl-r$run
      measure "$engine" "$wl" "$run" cold "$L-cold.log" "${AS_USER[@]}" "${build[@]}" || continue
      measure "$engine" "$wl" "$run" warm "$L-warm.log" "${AS_USER[@]}" "${build[@]}" || true
      echo "# bench change $run $(date +%s%N)" >> "$w/ctx/$probe"
      measure "$engine" "$wl" "$run" change "$L-change.log" "${AS_USER[@]}" "${build[@]}" || true
      repo=$REG/bench/$engine-$(echo "$wl" | tr '[:upper:]' '[:lower:]')-r$run-$STAMP:latest
      measure "$engine" "$wl" "$run" push "$L-push.log" \
        "${AS_USER[@]}" "$BIN/rbuild" push --cache-dir "$cache" "$tag" "$repo" || true
      psize=$(skopeo inspect --raw --tls-verify=false --override-arch="${plat#linux/}" "docker://$repo" 2>/dev/null \
        | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m.get("layers",[])))' 2>/dev/null || echo)
      echo "$engine,$wl,$run,size_pushed,,,$psize," >> "$CSV"
      [ "$run" = 1 ] && echo "$repo" > "$OUT/$engine-$wl.ref"
      rm_as_user "$w" "$cache"
    done
  done
done

# --- Buildah (the shared script), on ext4 and on tmpfs ---------------------------------
if [ -n "${BUILDAH_CSV:-}" ]; then
  say "reusing Buildah figures from $BUILDAH_CSV"
  tail -n +2 "$BUILDAH_CSV" | grep -v '^rbuild' >> "$CSV" || true
elif [ "${SKIP_BUILDAH:-0}" != 1 ]; then
  # run-buildah.sh copies its workloads with `cp -a`; the shared ones are read-only, so
  # its one-file change could not write the probe file. It runs from a writable copy.
  BH=/var/tmp/rbuild-bench-shared
  rm -rf "$BH"; cp -r "$SHARED" "$BH"; chmod -R u+w,a+rX "$BH"
  for fs in $FS; do
    say "Buildah on $fs ($SHARED/run-buildah.sh)"
    envs=(REG="$REG" BENCH_USER="$BUSER")
    if [ "$fs" = tmpfs ]; then
      conf=/var/tmp/rbuild-bench-storage.conf
      printf '[storage]\ndriver = "overlay"\ngraphroot = "/dev/shm/buildah-bench-%s/storage"\nrunroot = "/dev/shm/buildah-bench-%s/run"\n' "$BUSER" "$BUSER" > "$conf"
      chmod 644 "$conf"
      envs+=(CONTAINERS_STORAGE_CONF="$conf")
    fi
    install -d -o "$BUSER" "$OUT/buildah-$fs" "$OUT/buildah-$fs-w3"
    # Contexts left by an earlier run (read-only copies) would stop it: remove them as root.
    rm -rf "/var/tmp/bench-ctx-$BUSER"
    rest=$(echo " $WORKLOADS " | sed 's/ W3-manyfiles / /g' | xargs || true)
    if [ -n "$rest" ]; then
      env "${envs[@]}" RUNS="$RUNS" WORKLOADS="$rest" OUT="$OUT/buildah-$fs" "$BH/run-buildah.sh" >&2 || true
    fi
    if [[ " $WORKLOADS " == *" W3-manyfiles "* ]]; then
      rm -rf "/var/tmp/bench-ctx-$BUSER"
      env "${envs[@]}" RUNS="$W3_RUNS" WORKLOADS=W3-manyfiles OUT="$OUT/buildah-$fs-w3" "$BH/run-buildah.sh" >&2 || true
    fi
    for f in "$OUT/buildah-$fs/results.csv" "$OUT/buildah-$fs-w3/results.csv"; do
      [ -s "$f" ] && tail -n +2 "$f" | sed "s/^buildah,/buildah-$fs,/" >> "$CSV"
    done
    # The images Buildah pushed in its first runs, for the file-system comparison.
    catalog=$(curl -fsS "http://$REG/v2/_catalog?n=1000")
    for wl in $WORKLOADS; do
      repo=$(printf '%s' "$catalog" | python3 -c "import json,sys; r=sorted(x for x in json.load(sys.stdin)['repositories'] if x.startswith('bench/buildah-$(echo "$wl" | tr '[:upper:]' '[:lower:]')-r1-')); print(r[-1] if r else '')")
      [ -n "$repo" ] && echo "$REG/$repo:latest" > "$OUT/buildah-$fs-$wl.ref"
    done
  done
fi

# --- per-step sandbox overhead ----------------------------------------------------------
if [ "${STARTUP:-1}" != 0 ]; then
  say "sandbox overhead per RUN step: 21 x RUN true minus 1 x RUN true, beside unshare -Urmpf"
  w=/var/tmp/rbuild-bench/startup; rm_as_user "$w"; mkdir -p "$w/one" "$w/many"
  printf 'FROM %s/busybox:latest\nRUN true\n' "$REG" > "$w/one/Dockerfile"
  { printf 'FROM %s/busybox:latest\n' "$REG"; for i in $(seq 1 21); do printf 'RUN true %s\n' "$i"; done; } > "$w/many/Dockerfile"
  chown -R "$BUSER:" "$w"; chmod 755 /var/tmp/rbuild-bench "$w"
  # loop CMD N: microseconds per run of CMD, N runs in one shell as the user.
  loop() {
    as_user bash -c "s=\$(date +%s%N); for i in \$(seq 1 $2); do $1 >/dev/null 2>&1; done; e=\$(date +%s%N); echo \$(( (e - s) / $2 / 1000 ))"
  }
  : > "$OUT/startup.csv"
  for fs in $FS; do
    sc=$(cache_dir "$fs" "$(fs_dir "$fs")/startup" startup)
    rm_as_user "$sc"
    [ "$fs" = tmpfs ] && { mkdir -p "$(dirname "$sc")"; chown "$BUSER:" "$(dirname "$sc")"; }
    as_user mkdir -p "$sc"; sync
    as_user "$BIN/rbuild" build --progress plain --cache-dir "$sc" --no-cache "$w/one" >/dev/null 2>&1 || true
    floor=$(loop "unshare -Urmpf --mount-proc true" 50)
    mapped=$(loop "unshare --map-auto --map-root-user -mpf --mount-proc true" 50)
    one=$(loop "$BIN/rbuild build --progress plain --cache-dir $sc --no-cache $w/one" 10)
    many=$(loop "$BIN/rbuild build --progress plain --cache-dir $sc --no-cache $w/many" 10)
    per=$(( (many - one) / 20 ))
    echo "startup,$fs,$per,$floor,$mapped" >> "$OUT/startup.csv"
    rm_as_user "$sc"
  done
  rm_as_user "$w"
fi

# --- file-system comparison -------------------------------------------------------------
if [ "${COMPARE:-1}" != 0 ]; then
  say "comparing the images' file systems (umoci unpack both, as root to keep owners)"
  cmpdir=/var/tmp/rbuild-bench-compare; rm -rf "$cmpdir"; mkdir -p "$cmpdir"
  fs1=${FS%% *}
  for wl in $WORKLOADS; do
    if [ ! -s "$OUT/rbuild-$fs1-$wl.ref" ] || [ ! -s "$OUT/buildah-$fs1-$wl.ref" ]; then continue; fi
    arch=$(wl_platform "$wl"); arch=${arch#linux/}
    for e in rbuild buildah; do
      ref=$(cat "$OUT/$e-$fs1-$wl.ref")
      skopeo copy -q --src-tls-verify=false --override-arch="$arch" "docker://$ref" "oci:$cmpdir/$e-$wl:x" >/dev/null
      umoci unpack --image "$cmpdir/$e-$wl:x" "$cmpdir/$e-$wl-bundle" >/dev/null
    done
    python3 "$ROOT/tests/bench/fs_compare.py" "$wl" "$cmpdir/rbuild-$wl-bundle/rootfs" "$cmpdir/buildah-$wl-bundle/rootfs" >> "$OUT/compare.md" || true
  done
  rm -rf "$cmpdir"
fi

python3 "$ROOT/tests/bench/build_summary.py" "$CSV" "$OUT/startup.csv"
[ -s "$OUT/compare.md" ] && cat "$OUT/compare.md"
chmod -R a+rX "$OUT"
echo "results: $OUT" >&2
