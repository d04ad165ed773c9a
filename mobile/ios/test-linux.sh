#!/usr/bin/env bash
# Builds LazyDiTKit and runs its XCTest suite on Linux, in the Debian trixie root that
# mobile/toolchains.sh makes (Swift 6 needs a newer C library than Debian 12's). The package folder
# and the bundle are bind-mounted into a private mount namespace, so nothing stays mounted after the
# run; build products are cached under the toolchain cache for warm rebuilds.
# On Linux the Core ML and ExecuTorch backends compile out (no such frameworks); everything else,
# the loop, manifest validation, .lzt files, digests, golden checks and benchmarks, is built and run.
#
# Usage: test-linux.sh [--package-dir DIR] [--scratch NAME] [--build-only]
#   LAZYDIT_BUNDLE=DIR also replays a bundle, LAZYDIT_CORPUS=DIR runs the bad-bundle corpus;
#   --scratch names the build cache (default: one per package folder), so checks that build
#   changed copies of the package rebuild incrementally.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
package="$here"
action=test
scratch_name=
while (( $# > 0 )); do
    case $1 in
        --package-dir) package="$(cd "$2" && pwd)"; shift 2 ;;
        --scratch) scratch_name=$2; shift 2 ;;
        --build-only) action=build; shift ;;
        *) echo "test-linux.sh: unknown argument '$1' (--package-dir DIR, --scratch NAME, --build-only)" >&2; exit 2 ;;
    esac
done

"$here/../toolchains.sh" swift
cache="${LAZYDIT_MOBILE_CACHE:-$HOME/.cache/lazydit-mobile}"
root="$cache/trixie"
# One scratch folder per package folder, so a deliberately broken copy never dirties the real build.
scratch="$cache/swift-build/${scratch_name:-$(printf '%s' "$package" | sha256sum | cut -c1-16)}"
mkdir -p "$scratch"
bundle="${LAZYDIT_BUNDLE:-}"
[[ -z $bundle || -f $bundle/manifest.json ]] || { echo "test-linux.sh: $bundle holds no manifest.json" >&2; exit 2; }
corpus="${LAZYDIT_CORPUS:-}"
[[ -z $corpus || -f $corpus/corpus.json ]] || { echo "test-linux.sh: $corpus holds no corpus.json" >&2; exit 2; }

as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
inner='mount -t proc proc "$ROOT/proc"
mkdir -p "$ROOT/package" "$ROOT/scratch" "$ROOT/bundle" "$ROOT/corpus"
mount --bind "$PACKAGE" "$ROOT/package"
mount --bind "$SCRATCH" "$ROOT/scratch"
[[ -z $BUNDLE ]] || mount --bind -o ro "$BUNDLE" "$ROOT/bundle"
[[ -z $CORPUS ]] || mount --bind -o ro "$CORPUS" "$ROOT/corpus"
exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    ${BUNDLE:+LAZYDIT_BUNDLE=/bundle} ${CORPUS:+LAZYDIT_CORPUS=/corpus} /bin/bash -c "cd /package && $COMMAND"'
flags="--scratch-path /scratch -j 1"
if [[ $action == build ]]; then
    command="swift build $flags --build-tests"
else
    command="swift build $flags --build-tests && swift test $flags --skip-build"
fi
"${as_root[@]}" env ROOT="$root" PACKAGE="$package" SCRATCH="$scratch" BUNDLE="$bundle" CORPUS="$corpus" COMMAND="$command" \
    unshare --mount --propagation private /bin/bash -c "$inner"
