// swift-tools-version:6.0
import PackageDescription

// The phone runtime for lazydit bundles (docs/bundle.md): the manifest-driven loop, golden checks
// and benchmarks, with Core ML and ExecuTorch backends. Mirrors mobile/android/core.
//
// On Linux (where the package is built and tested without Xcode) there is no ExecuTorch framework
// and no Core ML: the package is the platform-free core, and both backends compile out.
#if os(Linux)
let dependencies: [Package.Dependency] = []
let runtimeProducts: [Target.Dependency] = []
let linkerSettings: [LinkerSetting] = []
#else
let dependencies: [Package.Dependency] = [
    // Prebuilt ExecuTorch frameworks; the branch matches the Python executorch that exports bundles.
    .package(url: "https://github.com/pytorch/executorch.git", branch: "swiftpm-1.5.1"),
]
let runtimeProducts: [Target.Dependency] = [
    .product(name: "executorch", package: "executorch"),
    .product(name: "backend_xnnpack", package: "executorch"),
    .product(name: "backend_coreml", package: "executorch"),
    .product(name: "kernels_optimized", package: "executorch"),
]
let linkerSettings: [LinkerSetting] = [
    // ExecuTorch backends and kernels register themselves from static initialisers.
    .unsafeFlags(["-Wl,-all_load"]),
]
#endif

let package = Package(
    name: "LazyDiTKit",
    platforms: [
        .iOS(.v18),
        .macOS(.v15),
    ],
    products: [
        .library(name: "LazyDiTKit", targets: ["LazyDiTKit"]),
    ],
    dependencies: dependencies,
    targets: [
        .target(
            name: "LazyDiTKit",
            dependencies: runtimeProducts,
            linkerSettings: linkerSettings
        ),
        .testTarget(
            name: "LazyDiTKitTests",
            dependencies: ["LazyDiTKit"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
