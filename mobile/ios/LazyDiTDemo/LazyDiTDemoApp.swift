import SwiftUI

/// The demo app: the interactive screen, or a headless benchmark when launched with
/// `-benchmark_bundle NAME` (see BenchmarkRequest).
@main
struct LazyDiTDemoApp: App {
    private let benchmark = BenchmarkRequest.fromLaunchArguments()

    var body: some Scene {
        WindowGroup {
            if let benchmark {
                BenchmarkView(request: benchmark)
            } else {
                ContentView()
            }
        }
    }
}
