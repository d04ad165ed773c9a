import Foundation

/// The arithmetic behind the hand-made fixture bundle, identical to the Java core's ToyModel.
enum ToyModel {
    /// step_full: the updated sample and the fresh attention output (kept as the cache).
    static func full(_ x: [Float], _ y: Int64, _ cfg: Float, _ t: Float, _ alpha: Float)
        -> (next: [Float], attn: [Float]) {
        let attn = x.map { 0.5 * $0 + 0.01 * Float(y) }
        let next = zip(x, attn).map { alpha * $0 + (1 - alpha) * $1 * cfg + t * 1e-4 }
        return (next, attn)
    }

    /// step_lazy: the attention output is the cache instead of a fresh one.
    static func lazy(_ x: [Float], _ cfg: Float, _ t: Float, _ alpha: Float, _ cached: [Float]) -> [Float] {
        zip(x, cached).map { alpha * $0 + (1 - alpha) * $1 * cfg + t * 1e-4 }
    }

    /// step_last: no attention at all.
    static func last(_ x: [Float], _ t: Float, _ alpha: Float) -> [Float] {
        x.map { alpha * $0 + t * 1e-4 }
    }

    static func decode(_ x: [Float]) -> [UInt8] {
        x.map { UInt8(clamping: Int((Double($0 + 1) * 127.5).rounded())) }
    }
}
