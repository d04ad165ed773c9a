#!/usr/bin/env bash
# Builds the native runner (lazydit-native) against the ExecuTorch runtime shipped in the
# executorch wheel: its libexecutorch.so (Module API), the XNNPACK backend and the kernels.
#   build.sh x86_64 OUT        against the executorch package of the Python that runs this
#                              (PYTHON, default python3), natively
#   build.sh aarch64 OUT       against the aarch64 wheel of the same executorch version, fetched
#                              with pip into the toolchain cache, with g++-aarch64-linux-gnu
# OUT gets lazydit-native and a lib/ folder with the shared libraries it loads (rpath $ORIGIN/lib),
# so the folder can be pushed to a device as it is. Needs: mobile/toolchains.sh native.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
arch=${1:?usage: build.sh x86_64|aarch64 OUT}
out=${2:?usage: build.sh x86_64|aarch64 OUT}
python=${PYTHON:-python3}
cache="${LAZYDIT_MOBILE_CACHE:-$HOME/.cache/lazydit-mobile}"
"$here/../../mobile/toolchains.sh" native

package="$("$python" -c 'import importlib.util as u; print(u.find_spec("executorch").submodule_search_locations[0])')"
version="$("$python" -c 'from importlib.metadata import version; print(version("executorch"))')"
case $arch in
    x86_64) cxx=g++ ;;
    aarch64)
        cxx=aarch64-linux-gnu-g++
        wheels="$cache/executorch-aarch64-$version"
        if [[ ! -d $wheels/executorch ]]; then
            tmp="$(mktemp -d "$cache/.executorch-aarch64.XXXXXX")"
            "$python" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
                --python-version 3.11 --dest "$tmp" "executorch==$version"
            (cd "$tmp" && "$python" -m zipfile -e executorch-*.whl unpacked && mv unpacked/executorch executorch && rm -rf unpacked ./*.whl)
            mv "$tmp" "$wheels"
        fi
        package="$wheels/executorch"
        ;;
    *) echo "build.sh: unknown architecture '$arch' (x86_64, aarch64)" >&2; exit 2 ;;
esac

include="$package/include"
libs=(libexecutorch.so libexecutorch_backend_xnnpack.so libexecutorch_kernels_optimized.so
      libexecutorch_kernels_quantized.so libexecutorch_threadpool.so)
tmp_out="$(mktemp -d "${out%/}.partial.XXXXXX")"
trap 'rm -rf "$tmp_out"' EXIT
mkdir -p "$tmp_out/lib"
for lib in "${libs[@]}"; do cp "$package/lib/$lib" "$tmp_out/lib/"; done
# The backend and the kernels register themselves from static initialisers: link them even though
# no symbol of theirs is referenced.
"$cxx" -std=c++17 -O2 -Wall -Wextra -Werror -DC10_USING_CUSTOM_GENERATED_MACROS -DET_USE_THREADPOOL \
    -isystem "$include" -isystem "$include/executorch/runtime/core/portable_type/c10" \
    "$here/lazydit_native.cpp" -o "$tmp_out/lazydit-native" \
    -L"$tmp_out/lib" -Wl,--no-as-needed $(printf -- "-l:%s " "${libs[@]}") -Wl,--as-needed -Wl,-rpath,'$ORIGIN/lib' -lpthread
rm -rf "$out"
mv "$tmp_out" "$out"
trap - EXIT
echo "build.sh: $out/lazydit-native ($arch, executorch $version)"
