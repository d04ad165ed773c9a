import Foundation

/// Standard-normal noise from SplitMix64 and Box-Muller, written exactly as the Java core writes
/// it, so a seed gives the same starting noise on iOS and Android.
public struct Noise {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public static func gaussian(shape: [Int], seed: UInt64) throws -> Tensor {
        let n = try Tensor.elementCount(shape)
        var rng = Noise(seed: seed)
        var values = [Float](repeating: 0, count: n)
        var i = 0
        while i < n {
            let u1 = rng.nextUnit()
            let u2 = rng.nextUnit()
            let r = (-2.0 * log(u1)).squareRoot()
            values[i] = Float(r * cos(2.0 * Double.pi * u2))
            if i + 1 < n {
                values[i + 1] = Float(r * sin(2.0 * Double.pi * u2))
            }
            i += 2
        }
        return try Tensor(floats: values, shape: shape)
    }

    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so log() stays finite.
    public mutating func nextUnit() -> Double {
        Double((next() >> 11) + 1) / 9_007_199_254_740_992.0
    }
}
