import LazyDiTKit
import OSLog
import SwiftUI

/// A benchmark asked for on the command line, minibench style:
///
///     -benchmark_bundle digits-lazy -runs 10 -warmup 2 -backend coreml -verify NO
///
/// Launch arguments of the form `-key value` land in UserDefaults' argument domain.
struct BenchmarkRequest {
    let bundleDir: URL
    let runs: Int
    let warmup: Int
    let backend: BackendChoice
    let verify: Bool

    static func fromLaunchArguments(_ defaults: UserDefaults = .standard) -> BenchmarkRequest? {
        guard let bundle = defaults.string(forKey: "benchmark_bundle"), !bundle.isEmpty else { return nil }
        let dir = bundle.hasPrefix("/") ? URL(fileURLWithPath: bundle) : Bundles.root.appendingPathComponent(bundle)
        let runs = defaults.object(forKey: "runs") == nil ? 10 : defaults.integer(forKey: "runs")
        let warmup = defaults.object(forKey: "warmup") == nil ? 2 : defaults.integer(forKey: "warmup")
        let backend = defaults.string(forKey: "backend").flatMap(BackendChoice.init(argument:)) ?? .coreml
        let verify = defaults.object(forKey: "verify") == nil ? true : defaults.bool(forKey: "verify")
        return BenchmarkRequest(bundleDir: dir, runs: runs, warmup: warmup, backend: backend, verify: verify)
    }
}

/// Runs a `BenchmarkRequest`: golden check, W warm-up and N timed images, then writes
/// Documents/lazydit_benchmark.json and logs its path (subsystem org.lazydit.demo, category bench).
struct BenchmarkView: View {
    let request: BenchmarkRequest
    @State private var status = "Starting…"

    private static let log = Logger(subsystem: "org.lazydit.demo", category: "bench")

    var body: some View {
        VStack(alignment: .leading, spacing: 12) {
            Text("LazyDiT benchmark").font(.headline)
            Text("\(request.bundleDir.lastPathComponent) · \(request.backend.rawValue) · "
                + "\(request.warmup) warm-up + \(request.runs) runs")
            Text(status).font(.callout).textSelection(.enabled)
        }
        .padding()
        .task { await run() }
    }

    private func run() async {
        let output = Bundles.root.appendingPathComponent(BenchReport.fileName)
        try? FileManager.default.removeItem(at: output)
        status = "Running…"
        do {
            let record = try await BenchmarkView.benchmark(request)
            try BenchReport.write(output, [record])
            BenchmarkView.log.info("report written to \(output.path, privacy: .public)")
            print("LazyDiTBench: report written to \(output.path)")
            status = "Report written to \(output.path)"
        } catch {
            BenchmarkView.log.error("benchmark failed: \(error.localizedDescription, privacy: .public)")
            status = "Benchmark failed: \(error.localizedDescription)"
        }
    }

    private static func benchmark(_ request: BenchmarkRequest) async throws -> BenchRecord {
        let bundle = try await LoadedBundle.open(request.bundleDir, backend: request.backend.make())
        defer { bundle.close() }
        log.info("loaded \(bundle.folder.name, privacy: .public) in \(bundle.loadMillis) ms")
        var psnr: Double?
        if request.verify && bundle.folder.hasGolden {
            let check = try bundle.checkGolden()
            log.log(level: check.passed ? .info : .error, "\(check.summary, privacy: .public)")
            psnr = check.worstPsnrDb
        }
        let result = try Bench.run(bundle.runner, initial: bundle.benchmarkInput(), warmup: request.warmup,
                                   runs: request.runs)
        return BenchRecord(bundle: bundle.folder.name, backend: bundle.backend.name, device: Bundles.device(),
                           modelLoadMillis: bundle.loadMillis, result: result, lazySteps: bundle.manifest.lazySteps,
                           goldenPsnrDb: psnr)
    }
}
