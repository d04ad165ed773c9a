#!/usr/bin/env bash
# Compiles the platform-free core and its JUnit 4 tests with plain javac against Debian's jars and
# runs them: no Gradle, no network beyond apt. Set LAZYDIT_BUNDLE=DIR to also replay an exported
# bundle's golden vectors; LAZYDIT_CORPUS=DIR runs the bad-bundle corpus (tests/bad_bundles.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jars=/usr/share/java
packages=(openjdk-17-jdk-headless junit4 libhamcrest-java libgoogle-gson-java)

hamcrest_jar() {
    for name in hamcrest-core.jar hamcrest.jar; do
        if [[ -f "$jars/$name" ]]; then
            echo "$jars/$name"
            return
        fi
    done
}

have_everything() {
    command -v javac >/dev/null && command -v java >/dev/null \
        && [[ -f $jars/junit4.jar && -f $jars/gson.jar && -n "$(hamcrest_jar)" ]]
}

if ! have_everything; then
    echo "run-tests.sh: installing ${packages[*]} with apt-get" >&2
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "run-tests.sh: need root or sudo to install ${packages[*]}" >&2; exit 2; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    have_everything || { echo "run-tests.sh: java, junit4, hamcrest or gson still missing after apt-get" >&2; exit 2; }
fi

java_major="$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')"
if (( java_major < 17 )); then
    echo "run-tests.sh: javac $java_major found; the core needs Java 17 (apt-get install openjdk-17-jdk-headless)" >&2
    exit 2
fi

build="$(mktemp -d "${TMPDIR:-/tmp}/lazydit-core.XXXXXX")"
trap 'rm -rf "$build"' EXIT
classpath="$jars/gson.jar:$jars/junit4.jar:$(hamcrest_jar)"
# One compiler thread and C1 only: the tests are small and the machine may be busy training.
jvm_light=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ActiveProcessorCount=1)

find "$here/src/main/java" "$here/src/test/java" -name '*.java' > "$build/sources.txt"
javac "${jvm_light[@]/#/-J}" --release 17 -encoding UTF-8 -Xlint:all \
    -d "$build/classes" -cp "$classpath" @"$build/sources.txt"

mapfile -t tests < <(cd "$here/src/test/java" && find . -name '*Test.java' \
    | sed -e 's|^\./||' -e 's|\.java$||' -e 's|/|.|g' | sort)
if (( ${#tests[@]} == 0 )); then
    echo "run-tests.sh: no *Test.java classes under src/test/java" >&2
    exit 1
fi

props=()
if [[ -n "${LAZYDIT_BUNDLE:-}" ]]; then
    props+=("-Dlazydit.bundle=$LAZYDIT_BUNDLE")
    echo "run-tests.sh: replaying bundle $LAZYDIT_BUNDLE"
fi
if [[ -n "${LAZYDIT_CORPUS:-}" ]]; then
    props+=("-Dlazydit.corpus=$LAZYDIT_CORPUS")
    echo "run-tests.sh: bad-bundle corpus $LAZYDIT_CORPUS"
fi

set +e
java "${jvm_light[@]}" "${props[@]}" -cp "$build/classes:$classpath" org.junit.runner.JUnitCore "${tests[@]}" \
    | tee "$build/junit.txt"
status=${PIPESTATUS[0]}
set -e

if (( status != 0 )); then
    exit "$status"
fi
if ! grep -Eq '^OK \([1-9][0-9]* tests?\)' "$build/junit.txt"; then
    echo "run-tests.sh: JUnit ran zero tests" >&2
    exit 1
fi
