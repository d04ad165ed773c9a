import Foundation

/// Peak signal-to-noise ratio as lazydit.metrics.psnr computes it: range 2 for float samples in
/// [-1, 1], 255 for uint8 images, MSE floored at 1e-20 so identical tensors give a finite number.
public enum Psnr {
    public static func of(_ actual: Tensor, _ expected: Tensor) throws -> Double {
        guard actual.dtype == expected.dtype, actual.shape == expected.shape else {
            throw BackendError("cannot compare \(actual) with golden \(expected)")
        }
        let range = expected.dtype == .uint8 ? 255.0 : 2.0
        let n = expected.count
        var sum = 0.0
        for i in 0..<n {
            let d = actual.double(at: i) - expected.double(at: i)
            sum += d * d
        }
        let mse = n == 0 ? 0 : sum / Double(n)
        return 10 * log10(range * range / max(mse, 1e-20))
    }
}
