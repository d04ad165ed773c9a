import Foundation

/// Latencies of the timed runs of a `Bench`: per image, and mean per step.
public struct BenchResult {
    /// End-to-end latency of each timed image (all steps + decode), in run order.
    public let imageMillis: [Double]
    public let stepMeanMillis: [Double]
    public let decodeMeanMillis: Double
    public let warmup: Int

    public var runs: Int { imageMillis.count }

    public func meanMillis() throws -> Double { try LatencyStats.mean(imageMillis) }

    public func trimmedMeanMillis() throws -> Double { try LatencyStats.trimmedMean(imageMillis) }

    public func medianMillis() throws -> Double { try LatencyStats.median(imageMillis) }

    public func p90Millis() throws -> Double { try LatencyStats.p90(imageMillis) }
}

/// minibench's protocol: W untimed warm-up images, then N timed ones, each from the same start.
public enum Bench {
    public static func run(_ runner: BundleRunner, initial: State, warmup: Int, runs: Int) throws -> BenchResult {
        guard warmup >= 0, runs >= 1 else {
            throw BackendError("need warmup >= 0 and runs >= 1, got \(warmup) and \(runs)")
        }
        for _ in 0..<warmup {
            _ = try runner.run(initial.copy())
        }
        var stepSum = [Double](repeating: 0, count: runner.manifest.steps.count)
        var decodeSum = 0.0
        var images: [Double] = []
        for _ in 0..<runs {
            let r = try runner.run(initial.copy())
            images.append(r.totalMillis)
            for (s, ms) in r.stepMillis.enumerated() {
                stepSum[s] += ms
            }
            decodeSum += r.decodeMillis
        }
        return BenchResult(imageMillis: images, stepMeanMillis: stepSum.map { $0 / Double(runs) },
                           decodeMeanMillis: decodeSum / Double(runs), warmup: warmup)
    }
}
