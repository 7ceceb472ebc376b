#!/usr/bin/env bash
# Builds the addon with a sanitizer through cmake-js (CMakeLists.txt) into
# build-<kind>/ and prints the path of the .node file on stdout (build output
# goes to stderr, so `addon=$(bash native/build-sanitizer.sh address)` works).
#
#   bash native/build-sanitizer.sh <kind> [--test [dist/test/x.test.js ...]]
#
#   kind: address | thread | undefined | address,undefined
#
# With --test it then compiles the TypeScript (npm run build:ts) and runs the
# given compiled tests (default: dist/test/generations.test.js, the
# multi-process page tests) with the sanitizer build loaded.
#
# Running tests by hand: src/native.ts loads the addon named by
# TOKEN_SHADOW_ADDON. The node binary is not instrumented, so the sanitizer
# runtime must be preloaded into it (gcc's, since g++ compiled the addon), and
# LeakSanitizer must be off because Node itself does not free everything at exit.
# Children inherit the environment, so every spawned node is covered too:
#
#   addon=$(bash native/build-sanitizer.sh address)
#   npm run build:ts
#   TOKEN_SHADOW_ADDON=$addon \
#   LD_PRELOAD=$(readlink -f "$(gcc -print-file-name=libasan.so)") \
#   ASAN_OPTIONS=detect_leaks=0 \
#     node --test dist/test/generations.test.js
#
# thread: the same with libtsan.so and TSAN_OPTIONS; --test writes a
# suppression file for a false race inside node's own V8 platform code (see
# below). TSan only sees threads of one process: the cross-process atomics of
# the page are outside what it can check.
# undefined: libubsan is a dependency of the addon and needs no preload; set
# UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 so a report fails the test.
set -euo pipefail

usage() {
  echo "usage: $0 <address|thread|undefined|address,undefined> [--test [test.js ...]]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
kind=$1
shift
case $kind in
  address | thread | undefined) ;;
  address,undefined | 'address;undefined' | undefined,address) kind=address,undefined ;;
  *) usage ;;
esac

run_tests=false
tests=()
if [[ $# -gt 0 ]]; then
  [[ $1 == --test ]] || usage
  run_tests=true
  shift
  tests=("$@")
fi
[[ ${#tests[@]} -gt 0 ]] || tests=(dist/test/generations.test.js)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out="$root/build-${kind//,/-}"
cxx=${SANITIZER_CXX:-g++} # the preloaded runtimes below are gcc's

# configure + build rather than compile: compile configures only when the
# build dir has no CMakeCache.txt yet, while configure always applies -D.
{
  npx --no-install cmake-js configure --out "$out" --cxx "$cxx" \
    --CDSANITIZE="${kind//,/;}" --log-level warn
  npx --no-install cmake-js build --out "$out" --parallel "$(nproc)" --log-level warn
} >&2

addon="$out/Release/token_shadow.node"
[[ -f $addon ]] || {
  echo "build finished but $addon is missing" >&2
  exit 1
}
echo "$addon"

$run_tests || exit 0

runtime() { readlink -f "$("$cxx" -print-file-name="$1")"; }
# The sanitizers intercept crypt_r, and resolve the real one when they start: a
# libcrypt that only arrives later with the addon leaves the interceptor calling
# NULL (SIGSEGV in __interceptor_crypt_r). Preload it right after the runtime.
libcrypt=$(ldconfig -p | awk '/libcrypt\.so\.1 .*x86-64|libcrypt\.so\.1 \(libc6,x86-64/ {print $NF; exit}')
# Permission tests run children as nobody, who cannot read a clone in a 0700
# directory: they load a copy of the instrumented addon from a directory every
# user can read.
readable=$(mktemp -d "${TMPDIR:-/tmp}/token-shadow-sanitizer.XXXXXX")
trap 'rm -rf "$readable"' EXIT
chmod 0755 "$readable"
install -m 0644 "$addon" "$readable/token_shadow.node"
export TOKEN_SHADOW_ADDON="$readable/token_shadow.node"
case $kind in
  address | address,undefined)
    export LD_PRELOAD
    LD_PRELOAD="$(runtime libasan.so) $libcrypt"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
    ;;
  thread)
    export LD_PRELOAD
    LD_PRELOAD="$(runtime libtsan.so) $libcrypt"
    # node is not instrumented, so TSan misreads V8's worker-pool teardown
    # (mutex destroyed, then the job freed on a worker thread) as a race in
    # every run. Suppress only that; races in the addon still halt the run.
    printf '%s\n' '# V8 platform job teardown inside the uninstrumented node binary' \
      'race:v8::platform::' >"$out/tsan.supp"
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$out/tsan.supp}
    ;;
esac
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# npm and tsc run before the preload is exported to them (LD_PRELOAD is only
# passed to node --test below); tsc still emits when it reports type errors
# in files being edited elsewhere, so that is a warning here.
env -u LD_PRELOAD npm run --silent build:ts >&2 ||
  echo "warning: tsc reported errors; running the emitted JavaScript anyway" >&2

echo "running ${tests[*]} with $kind sanitizer (LD_PRELOAD=${LD_PRELOAD:-none})" >&2
node --test --test-concurrency=1 "${tests[@]}"
