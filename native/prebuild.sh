#!/usr/bin/env bash
# The prebuilt addon the package ships: prebuilds/<platform>/token-shadow.node for every platform
# the README promises (linux-x64, linux-arm64; Node-API, so one binary serves every Node version
# and node-gyp-build loads it without a compiler), each next to native-sources.sha256, the digest
# of the native sources it was built from. The binaries are committed.
#
#   bash native/prebuild.sh [PLATFORM...]   build (default: all), replace only what was built
#   bash native/prebuild.sh --check         what `npm pack` runs (prepack): fails unless every
#                                           promised platform has a binary of the right machine
#                                           built from the current sources
#
# Building never deletes anything first: each platform is built in a temporary directory and
# moved into place once it exists, so a platform that cannot be built here (linux-arm64 needs
# Debian's g++-aarch64-linux-gnu and libcrypt-dev:arm64) keeps its committed binary, and the
# script fails naming what is missing. --check builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=(linux-x64 linux-arm64)

sources_digest() {
  LC_ALL=C sha256sum binding.gyp native/*.cc native/*.h | sha256sum | cut -d' ' -f1
}

# ELF e_machine of each platform's binary: 62 is x86-64, 183 is AArch64.
elf_machine() {
  case "$1" in
    linux-x64) echo 62 ;;
    linux-arm64) echo 183 ;;
    *) echo "unknown platform $1" >&2; return 1 ;;
  esac
}

check() {
  local digest failed=0 platform binary machine
  digest="$(sources_digest)"
  for platform in "${PLATFORMS[@]}"; do
    binary="prebuilds/$platform/token-shadow.node"
    if [ ! -f "$binary" ]; then
      echo "prebuild $platform: missing ($binary)" >&2
      failed=1
      continue
    fi
    machine="$(od -An -tu2 -j18 -N2 "$binary" | tr -d ' ')"
    if [ "$(head -c4 "$binary" | od -An -c | tr -d ' ')" != '177ELF' ] ||
      [ "$machine" != "$(elf_machine "$platform")" ]; then
      echo "prebuild $platform: $binary is not a $platform ELF binary" >&2
      failed=1
    elif [ "$(cat "prebuilds/$platform/native-sources.sha256" 2>/dev/null)" != "$digest" ]; then
      echo "prebuild $platform: built from other sources than native/ and binding.gyp now hold" >&2
      failed=1
    else
      echo "prebuild $platform: ok"
    fi
  done
  if [ "$failed" = 1 ]; then
    echo "The package promises a prebuilt addon for ${PLATFORMS[*]}: rebuild with" \
      "'npm run build:prebuilds' (linux-arm64 needs g++-aarch64-linux-gnu and" \
      "libcrypt-dev:arm64), and commit prebuilds/." >&2
    return 1
  fi
}

# Why a platform cannot be built on this machine; nothing when it can.
cannot_build() {
  case "$1" in
    linux-x64)
      [ "$(uname -m)" = x86_64 ] || echo "this machine is not x86_64 (no cross build to x64 here)"
      ;;
    linux-arm64)
      if [ "$(uname -m)" = aarch64 ]; then return 0; fi
      if ! command -v aarch64-linux-gnu-g++ >/dev/null 2>&1; then
        echo "aarch64-linux-gnu-g++ is not installed (apt-get install g++-aarch64-linux-gnu)"
      elif ! aarch64-linux-gnu-g++ -print-file-name=libcrypt.so | grep -q /; then
        echo "no arm64 libcrypt (dpkg --add-architecture arm64; apt-get install libcrypt-dev:arm64)"
      fi
      ;;
    *) echo "unknown platform (known: ${PLATFORMS[*]})" ;;
  esac
}

build() {
  local platform reason out digest failed=0
  digest="$(sources_digest)"
  out="$(mktemp -d "${TMPDIR:-/tmp}/token-shadow-prebuild.XXXXXX")"
  trap 'rm -rf "$out"' RETURN
  local prebuildify=(npx --no-install prebuildify --napi --strip --quiet --out "$out")
  # The native build last: prebuildify builds in build/, and build/Release must stay this
  # machine's binary (node-gyp-build prefers it).
  local native="linux-$(node -p process.arch)"
  for platform in "$@"; do
    reason="$(cannot_build "$platform")"
    if [ -n "$reason" ]; then
      echo "prebuild $platform: cannot build here: $reason" >&2
      failed=1
    elif [ "$platform" != "$native" ]; then
      CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
        "${prebuildify[@]}" --arch arm64 --strip-bin aarch64-linux-gnu-strip
    fi
  done
  for platform in "$@"; do
    if [ "$platform" = "$native" ] && [ -z "$(cannot_build "$platform")" ]; then "${prebuildify[@]}"; fi
  done
  for platform in "$@"; do
    [ -f "$out/prebuilds/$platform/token-shadow.node" ] || continue
    mkdir -p "prebuilds/$platform"
    mv -f "$out/prebuilds/$platform/token-shadow.node" "prebuilds/$platform/token-shadow.node"
    echo "$digest" >"prebuilds/$platform/native-sources.sha256"
    echo "prebuild $platform: built"
  done
  return "$failed"
}

if [ "${1:-}" = --check ]; then
  check
elif [ "$#" -gt 0 ]; then
  build "$@"
else
  build "${PLATFORMS[@]}"
fi
