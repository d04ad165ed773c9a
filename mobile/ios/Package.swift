// swift-tools-version:6.0
import PackageDescription

// The phone runtime for lazydit bundles (docs/bundle.md): the manifest-driven loop, golden checks
// and benchmarks, with Core ML and ExecuTorch backends. Mirrors mobile/android/core.
let package = Package(
    name: "LazyDiTKit",
    platforms: [
        .iOS(.v18),
        .macOS(.v15),
    ],
    products: [
        .library(name: "LazyDiTKit", targets: ["LazyDiTKit"]),
    ],
    dependencies: [
        // Prebuilt ExecuTorch frameworks; the branch matches the Python executorch that exports bundles.
        .package(url: "https://github.com/pytorch/executorch.git", branch: "swiftpm-1.5.1"),
    ],
    targets: [
        .target(
            name: "LazyDiTKit",
            dependencies: [
                .product(name: "executorch", package: "executorch"),
                .product(name: "backend_xnnpack", package: "executorch"),
                .product(name: "backend_coreml", package: "executorch"),
                .product(name: "kernels_optimized", package: "executorch"),
            ],
            linkerSettings: [
                // ExecuTorch backends and kernels register themselves from static initialisers.
                .unsafeFlags(["-Wl,-all_load"]),
            ]
        ),
        .testTarget(
            name: "LazyDiTKitTests",
            dependencies: ["LazyDiTKit"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
