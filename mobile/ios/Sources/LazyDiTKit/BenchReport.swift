import Foundation

/// One benchmark of one bundle on one backend and device, with minibench's metric names first so
/// numbers line up with what phone people already read, then ours.
public struct BenchRecord {
    public let bundle: String
    public let backend: String
    public let device: String
    public let modelLoadMillis: Double
    public let result: BenchResult
    public let lazySteps: [Int]
    /// The worst PSNR of a golden check run before timing, or nil if none ran.
    public let goldenPsnrDb: Double?

    public init(bundle: String, backend: String, device: String, modelLoadMillis: Double, result: BenchResult,
                lazySteps: [Int], goldenPsnrDb: Double?) {
        self.bundle = bundle
        self.backend = backend
        self.device = device
        self.modelLoadMillis = modelLoadMillis
        self.result = result
        self.lazySteps = lazySteps
        self.goldenPsnrDb = goldenPsnrDb
    }

    public func toJSON() throws -> [String: Any] {
        let mean = try result.meanMillis()
        let trimmed = try result.trimmedMeanMillis()
        let median = try result.medianMillis()
        let p90 = try result.p90Millis()
        var o: [String: Any] = [
            "avg_inference_latency(ms)": mean,
            "trimmean_inference_latency(ms)": trimmed,
            "model_load_time(ms)": modelLoadMillis,
            "median_latency(ms)": median,
            "p90_latency(ms)": p90,
            "per_step_latency(ms)": result.stepMeanMillis,
            "decode_latency(ms)": result.decodeMeanMillis,
            "inference_latencies(ms)": result.imageMillis,
            "lazy_steps": lazySteps,
            "warmup": result.warmup,
            "runs": result.runs,
            "backend": backend,
            "bundle": bundle,
            "device": device,
        ]
        if let psnr = goldenPsnrDb {
            o["golden_psnr(dB)"] = psnr
        }
        return o
    }
}

/// The benchmark report file: a JSON list of records, like minibench's benchmark_results.json.
public enum BenchReport {
    public static let fileName = "lazydit_benchmark.json"

    public static func toJSON(_ records: [BenchRecord]) throws -> Data {
        let list = try records.map { try $0.toJSON() }
        return try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted, .sortedKeys])
    }

    public static func write(_ url: URL, _ records: [BenchRecord]) throws {
        try toJSON(records).write(to: url, options: .atomic)
    }
}
