// The platform-free core: plain Java 17, no Android dependency, so it is also tested on any JVM
// (run-tests.sh does that with javac alone). Its value classes are Java records, hence Java 17 here;
// the app's D8 desugars them for its minSdk.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

dependencies {
    api("com.google.code.gson:gson:2.11.0")
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    // Same switch as run-tests.sh: LAZYDIT_BUNDLE=DIR replays an exported bundle's golden vectors.
    System.getenv("LAZYDIT_BUNDLE")?.let { systemProperty("lazydit.bundle", it) }
}
