#!/usr/bin/env bash
# Setup step of the rbuild action: locates rbuild and rbuild-runner on PATH, or downloads
# the release named by the `version` input and verifies it against the checksum pinned in
# checksums.txt beside this script (a release without a pinned checksum is refused).
# Writes `bin-dir` to $GITHUB_OUTPUT. Reads its input from INPUT_VERSION only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=${INPUT_VERSION:-}
version=${version#v}

fail() { printf '::error title=rbuild::%s\n' "$1"; exit 1; }

if [ -z "$version" ]; then
  rbuild=$(command -v rbuild || true)
  [ -n "$rbuild" ] || fail "rbuild is not on PATH: install it on the runner, or set the action's \`version\` input to download a release"
  dir=$(dirname "$(readlink -f "$rbuild")")
  [ -x "$dir/rbuild-runner" ] || fail "rbuild-runner is not next to $rbuild: install both binaries of the release together"
else
  case "$version" in
    *[!0-9A-Za-z.+-]*) fail "the \`version\` input is not a release version" ;;
  esac
  case "$(uname -m)" in
    x86_64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) fail "no rbuild release for $(uname -m)" ;;
  esac
  asset="rbuild-$version-$arch-linux.tar.gz"
  expected=$(awk -v a="$asset" '$2 == a { print $1 }' "$here/checksums.txt")
  [ -n "$expected" ] || fail "no checksum for $asset is pinned in this version of the action: use an action release that lists it, or leave \`version\` empty and install rbuild yourself"
  base=${RBUILD_DOWNLOAD_URL:-https://github.com/rbuild-dev/rbuild/releases/download}
  dir="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/rbuild/$version/$arch"
  if [ ! -x "$dir/rbuild" ] || [ ! -x "$dir/rbuild-runner" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    curl -fsSL --retry 3 -o "$tmp/$asset" "$base/v$version/$asset" || fail "cannot download $base/v$version/$asset"
    actual=$(sha256sum "$tmp/$asset" | cut -d' ' -f1)
    [ "$actual" = "$expected" ] || fail "$asset has sha256 $actual, not the pinned $expected: refusing to run it"
    mkdir -p "$dir"
    tar -xzf "$tmp/$asset" -C "$dir" rbuild rbuild-runner
  fi
  echo "$dir" >> "${GITHUB_PATH:-/dev/null}"
fi
"$dir/rbuild" --version
echo "bin-dir=$dir" >> "$GITHUB_OUTPUT"
