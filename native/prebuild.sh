#!/usr/bin/env bash
# Builds the addon into prebuilds/<platform>-<arch>/ with prebuildify, for
# `npm pack` (prepack). The addon uses Node-API only, so one binary per
# platform serves every Node version, and node-gyp-build loads it without a
# compiler. linux-arm64 is cross-built when Debian's g++-aarch64-linux-gnu and
# libcrypt-dev:arm64 are installed; otherwise it is skipped with the reason.
# x64 is built last: prebuildify builds in build/, and build/Release must stay
# this machine's binary (node-gyp-build prefers it).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf prebuilds
prebuildify=(npx --no-install prebuildify --napi --strip --quiet)

if [ "$(uname -m)" = x86_64 ]; then
  if ! command -v aarch64-linux-gnu-g++ >/dev/null 2>&1; then
    echo "prebuild linux-arm64 skipped: aarch64-linux-gnu-g++ is not installed (apt-get install g++-aarch64-linux-gnu)"
  elif ! aarch64-linux-gnu-g++ -print-file-name=libcrypt.so | grep -q /; then
    echo "prebuild linux-arm64 skipped: no arm64 libcrypt (dpkg --add-architecture arm64; apt-get install libcrypt-dev:arm64)"
  else
    CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
      "${prebuildify[@]}" --arch arm64 --strip-bin aarch64-linux-gnu-strip
    echo "prebuild linux-arm64: $(file -b prebuilds/linux-arm64/*.node | cut -d, -f1-2)"
  fi
fi
"${prebuildify[@]}"
echo "prebuild $(node -p 'process.platform + "-" + process.arch'): $(ls prebuilds/*-"$(node -p process.arch)"/)"
