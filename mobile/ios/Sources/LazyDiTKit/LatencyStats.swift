import Foundation

/// Summary statistics of latency samples, defined as ExecuTorch's minibench defines them.
public enum LatencyStats {
    public static func mean(_ samples: [Double]) throws -> Double {
        try requireSamples(samples)
        return samples.reduce(0, +) / Double(samples.count)
    }

    /// minibench's trimmed mean: sort, keep indexes [n/10, 9n/10), average. With the default 10 runs
    /// that drops exactly the fastest and the slowest run. Falls back to the mean when fewer than
    /// two samples would be kept.
    public static func trimmedMean(_ samples: [Double]) throws -> Double {
        try requireSamples(samples)
        let sorted = samples.sorted()
        let from = sorted.count / 10
        let to = sorted.count * 9 / 10
        guard to - from >= 2 else { return try mean(samples) }
        return sorted[from..<to].reduce(0, +) / Double(to - from)
    }

    public static func median(_ samples: [Double]) throws -> Double { try percentile(samples, 50) }

    public static func p90(_ samples: [Double]) throws -> Double { try percentile(samples, 90) }

    /// Linear interpolation between closest ranks, as numpy.percentile does by default.
    public static func percentile(_ samples: [Double], _ q: Double) throws -> Double {
        try requireSamples(samples)
        let sorted = samples.sorted()
        let rank = q / 100 * Double(sorted.count - 1)
        let lo = Int(rank.rounded(.down))
        let hi = Int(rank.rounded(.up))
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - Double(lo))
    }

    private static func requireSamples(_ samples: [Double]) throws {
        guard !samples.isEmpty else {
            throw BackendError("no latency samples; run the benchmark at least once")
        }
    }
}
