#!/usr/bin/env bash
# Compiles the Android app here, without Gradle or the Android SDK: the core with javac, the app's
# resources into R with aapt2 (against Debian's framework-res), and every .kt file of the app with
# kotlinc -Werror against the Android API, R, the core and ExecuTorch's Android Java API
# (org.pytorch.executorch from the npm package react-native-executorch). Then runs the app's JUnit
# tests (app/src/test) on the desktop JVM with the real ExecuTorch Tensor/EValue classes.
# What this cannot do: dex, package or sign an APK (that needs the Android SDK and Gradle).
#
# Usage: build-here.sh [--app-dir DIR] [--compile-only]   (DIR: a copy of app/, for checks that
# break a source on purpose). Needs mobile/toolchains.sh kotlin (run here when missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
app="$here/app"
run_tests=1
while (( $# > 0 )); do
    case $1 in
        --app-dir) app="$(cd "$2" && pwd)"; shift 2 ;;
        --compile-only) run_tests=0; shift ;;
        *) echo "build-here.sh: unknown argument '$1' (--app-dir DIR, --compile-only)" >&2; exit 2 ;;
    esac
done

"$here/../toolchains.sh" kotlin
cache="${LAZYDIT_MOBILE_CACHE:-$HOME/.cache/lazydit-mobile}"
kotlinc="$cache/kotlin/package/bin/kotlinc"
android_jar="$cache/android/android-api.jar"
executorch_jar="$cache/executorch-java/classes.jar"
framework_res=/usr/share/android-framework-res/framework-res.apk
jars=/usr/share/java
hamcrest="$jars/hamcrest-core.jar"
[[ -f $hamcrest ]] || hamcrest="$jars/hamcrest.jar"

build="$(mktemp -d "${TMPDIR:-/tmp}/lazydit-app.XXXXXX")"
trap 'rm -rf "$build"' EXIT
jvm_light=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ActiveProcessorCount=1)

step() { echo "build-here.sh: $*"; }

step "javac core"
find "$here/core/src/main/java" -name '*.java' > "$build/core-sources.txt"
javac "${jvm_light[@]/#/-J}" --release 17 -encoding UTF-8 -Xlint:all -Werror \
    -d "$build/core" -cp "$jars/gson.jar" @"$build/core-sources.txt"

step "aapt2 compile + link (R.java)"
# Gradle's namespace becomes the manifest's package attribute for aapt2.
sed 's|<manifest |<manifest package="org.lazydit.demo" |' "$app/src/main/AndroidManifest.xml" > "$build/AndroidManifest.xml"
aapt2 compile --dir "$app/src/main/res" -o "$build/res.zip"
mkdir -p "$build/gen"
aapt2 link -I "$framework_res" --manifest "$build/AndroidManifest.xml" --java "$build/gen" \
    --min-sdk-version 26 --target-sdk-version 35 -o "$build/resources.apk" "$build/res.zip"
find "$build/gen" -name '*.java' > "$build/r-sources.txt"
javac "${jvm_light[@]/#/-J}" --release 17 -d "$build/r" @"$build/r-sources.txt"

mapfile -t kotlin_sources < <(find "$app/src/main/java" -name '*.kt' | sort)
step "kotlinc -Werror: ${#kotlin_sources[@]} files"
classpath="$android_jar:$build/core:$build/r:$executorch_jar:$jars/gson.jar"
export JAVA_OPTS="${jvm_light[*]} -Xmx1g"
"$kotlinc" -Werror -jvm-target 17 -cp "$classpath" -d "$build/app" "${kotlin_sources[@]}"
step "compiled ${#kotlin_sources[@]} Kotlin files"
(( run_tests )) || exit 0

# The app's platform-free code on the desktop JVM: ExecuTorch's Tensor and EValue are plain Java.
mapfile -t test_sources < <(find "$app/src/test/java" -name '*.kt' | sort)
(( ${#test_sources[@]} > 0 )) || { echo "build-here.sh: no Kotlin tests under $app/src/test/java" >&2; exit 1; }
stdlib="$cache/kotlin/package/lib/kotlin-stdlib.jar"
test_classpath="$build/app:$build/core:$executorch_jar:$jars/gson.jar:$jars/junit4.jar:$hamcrest:$stdlib"
step "kotlinc -Werror: ${#test_sources[@]} test files"
"$kotlinc" -Werror -jvm-target 17 -cp "$test_classpath" -d "$build/test" "${test_sources[@]}"
mapfile -t tests < <(cd "$build/test" && find . -name '*Test.class' | sed -e 's|^\./||' -e 's|\.class$||' -e 's|/|.|g' | sort)
props=()
[[ -n "${LAZYDIT_BUNDLE:-}" ]] && props=("-Dlazydit.bundle=$LAZYDIT_BUNDLE")
set +e
java "${jvm_light[@]}" "${props[@]}" -cp "$build/test:$test_classpath" org.junit.runner.JUnitCore "${tests[@]}" \
    | tee "$build/junit.txt"
status=${PIPESTATUS[0]}
set -e
(( status == 0 )) || exit "$status"
grep -Eq '^OK \([1-9][0-9]* tests?\)' "$build/junit.txt" || { echo "build-here.sh: JUnit ran zero tests" >&2; exit 1; }
