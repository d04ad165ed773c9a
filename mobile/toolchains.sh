#!/usr/bin/env bash
# Installs the toolchains that compile and test the phone code on a Debian machine, from Debian's
# packages and the npm registry only, into one cache folder kept between runs:
#   LAZYDIT_MOBILE_CACHE (default ~/.cache/lazydit-mobile)
#     kotlin/         JetBrains' Kotlin compiler distribution (npm package kotlin-compiler)
#     executorch-java/classes.jar   ExecuTorch's Android Java API (org.pytorch.executorch)
#     android/android-api.jar       the android.* classes of Debian's libandroid-23-java
#     trixie/         a Debian trixie root holding swiftlang (Swift 6 needs a newer glibc)
#     debs/, apt/     downloaded packages and the private apt state that fetched them
# Usage: toolchains.sh [java|kotlin|swift|native|all]... ; prints nothing but errors when the cache
# is warm. Every step writes its folder under a temporary name and renames it when complete, so an
# interrupted run leaves nothing half-made that a later run would trust.
set -euo pipefail

CACHE="${LAZYDIT_MOBILE_CACHE:-$HOME/.cache/lazydit-mobile}"
KOTLIN_VERSION=2.1.21
EXECUTORCH_JAVA_VERSION=0.9.3   # react-native-executorch: 0.10+ download their jars at install time
DEBIAN_MIRROR="${LAZYDIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_PACKAGES_JAVA=(openjdk-17-jdk-headless junit4 libhamcrest-java libgoogle-gson-java aapt android-framework-res)
HOST_PACKAGES_SWIFT=(debootstrap)
HOST_PACKAGES_NATIVE=(g++ g++-aarch64-linux-gnu qemu-user nlohmann-json3-dev)
SWIFT_PACKAGES=(swiftlang libc6-dev libstdc++-14-dev)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$CACHE"
log() { echo "toolchains.sh: $*" >&2; }
die() { log "$*"; exit 2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; return; fi
    command -v sudo >/dev/null || die "need root or sudo to run: $*"
    sudo "$@"
}

host_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    (( ${#missing[@]} == 0 )) && return
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# npm_unpack PACKAGE@VERSION DEST: the package's tarball unpacked into DEST (its package/ folder).
npm_unpack() {
    local spec=$1 dest=$2 tmp
    [[ -d $dest ]] && return
    log "npm pack $spec"
    tmp="$(mktemp -d "$CACHE/.npm.XXXXXX")"
    (cd "$tmp" && npm pack --silent --cache "$CACHE/npm-cache" "$spec" >/dev/null && tar -xzf ./*.tgz && rm ./*.tgz)
    mv "$tmp" "$dest"
}

kotlin() {
    npm_unpack "kotlin-compiler@$KOTLIN_VERSION" "$CACHE/kotlin-$KOTLIN_VERSION"
    ln -sfn "kotlin-$KOTLIN_VERSION" "$CACHE/kotlin"
    chmod +x "$CACHE/kotlin/package/bin/"*
}

executorch_java() {
    local dir="$CACHE/executorch-java-$EXECUTORCH_JAVA_VERSION"
    npm_unpack "react-native-executorch@$EXECUTORCH_JAVA_VERSION" "$dir"
    [[ -f $dir/package/android/libs/classes.jar ]] \
        || die "react-native-executorch@$EXECUTORCH_JAVA_VERSION has no android/libs/classes.jar"
    ln -sfn "executorch-java-$EXECUTORCH_JAVA_VERSION/package/android/libs" "$CACHE/executorch-java"
}

# Debian's only android.jar (API 23) lives in bullseye and sid, not in this machine's suite: fetch
# it with a private apt configuration, unpack it without installing, keep only android.* (its own
# java.* copies would shadow the JDK's).
android_api() {
    local out="$CACHE/android/android-api.jar"
    [[ -f $out ]] && return
    log "fetching libandroid-23-java from bullseye"
    local apt="$CACHE/apt-bullseye" tmp
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$CACHE/debs"
    echo "deb $DEBIAN_MIRROR bullseye main" > "$apt/sources.list"
    local opts=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq
    tmp="$(mktemp -d "$CACHE/.android.XXXXXX")"
    (cd "$CACHE/debs" && apt-get "${opts[@]}" download -qq libandroid-23-java)
    dpkg -x "$CACHE"/debs/libandroid-23-java_*.deb "$tmp/root"
    mkdir -p "$tmp/classes"
    (cd "$tmp/classes" && jar xf "$tmp/root/usr/share/java/com.android.android-23.jar" android)
    # API 26 (the app's minSdk) made findViewById generic; the erasure is the same as API 23's.
    (cd "$tmp/classes" && command java -cp "$CACHE/kotlin/package/lib/kotlin-compiler.jar" \
        "$HERE/android/tools/GenericFindViewById.java" \
        android/app/Activity.class android/app/Dialog.class android/view/View.class android/view/Window.class)
    jar cf "$tmp/android-api.jar" -C "$tmp/classes" .
    mkdir -p "$CACHE/android"
    mv "$tmp/android-api.jar" "$out"
    rm -rf "$tmp"
}

# Swift 6 (Debian trixie's swiftlang) needs glibc >= 2.38: it runs in a trixie root.
swift_root() {
    local root="$CACHE/trixie"
    # (usr/bin/swift is an absolute link, which only resolves inside the root)
    [[ -x $root/usr/libexec/swift/bin/swift ]] && return
    host_packages "${HOST_PACKAGES_SWIFT[@]}"
    local tmp="$CACHE/.trixie.partial"
    as_root rm -rf "$tmp"
    log "debootstrap trixie (about a minute), then apt-get install ${SWIFT_PACKAGES[*]} (about 530 MB)"
    as_root debootstrap --variant=minbase trixie "$tmp" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $CACHE/debootstrap.log"
    as_root cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    as_root chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root chroot "$tmp" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${SWIFT_PACKAGES[@]}" >"$CACHE/swiftlang.log" 2>&1 \
        || die "installing swiftlang in the trixie root failed, see $CACHE/swiftlang.log"
    as_root chroot "$tmp" apt-get clean
    as_root rm -rf "$root"
    as_root mv "$tmp" "$root"
}

java_tools() {
    host_packages "${HOST_PACKAGES_JAVA[@]}"
    command -v npm >/dev/null || host_packages npm
}

(( $# > 0 )) || set -- all
for what in "$@"; do
    case $what in
        java) java_tools ;;
        kotlin) java_tools; kotlin; executorch_java; android_api ;;
        swift) swift_root ;;
        native) host_packages "${HOST_PACKAGES_NATIVE[@]}" ;;
        all) java_tools; kotlin; executorch_java; android_api; swift_root; host_packages "${HOST_PACKAGES_NATIVE[@]}" ;;
        *) die "unknown toolchain '$what' (java, kotlin, swift, native, all)" ;;
    esac
done
