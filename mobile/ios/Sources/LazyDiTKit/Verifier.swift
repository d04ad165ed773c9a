import Foundation

/// PSNR of every step's x and of the final image against the golden vectors.
public struct VerifyReport {
    public let stepIndexes: [Int]
    public let stepPsnrDb: [Double]
    public let imagePsnrDb: Double
    public let thresholdDb: Double

    /// The lowest PSNR over all steps and the image.
    public var worstPsnrDb: Double { stepPsnrDb.reduce(imagePsnrDb, min) }

    public var passed: Bool { worstPsnrDb >= thresholdDb }

    /// One line per check under the threshold; empty when everything passed.
    public var failures: [String] {
        var out: [String] = []
        for (index, psnr) in zip(stepIndexes, stepPsnrDb) where psnr < thresholdDb {
            out.append("step \(index): x at \(String(format: "%.1f", psnr)) dB")
        }
        if imagePsnrDb < thresholdDb {
            out.append("image at \(String(format: "%.1f", imagePsnrDb)) dB")
        }
        return out
    }

    public var summary: String {
        let head = String(format: "%@: worst %.1f dB over %ld steps + image (threshold %.1f dB)",
                          passed ? "golden check passed" : "golden check FAILED",
                          worstPsnrDb, stepPsnrDb.count, thresholdDb)
        return failures.isEmpty ? head : head + "\n  " + failures.joined(separator: "\n  ")
    }
}

/// Runs a backend from the golden starting state and compares x after every step and the final
/// image with the reference, so any runtime on any device can prove it reproduces Python.
public enum Verifier {
    /// Apple's ml-stable-diffusion gate: conversions under 35 dB are rejected.
    public static let defaultThresholdDb = 35.0

    public static func verify(_ runner: BundleRunner, _ golden: Golden,
                              thresholdDb: Double = defaultThresholdDb) throws -> VerifyReport {
        let manifest = runner.manifest
        var indexes: [Int] = []
        var psnr: [Double] = []
        let result = try runner.run(golden.initialState()) { _, step, state, _ in
            indexes.append(step.index)
            guard let xOut = try manifest.method(step.method).output(for: State.x) else {
                psnr.append(.infinity)
                return
            }
            psnr.append(try Psnr.of(state.get(State.x), golden.get(Golden.stepOutput(step.index, xOut.name))))
        }
        let imageName = try manifest.decodeMethod().outputs[0].name
        let imagePsnr = try Psnr.of(result.image, golden.get(Golden.decodeOutput(imageName)))
        return VerifyReport(stepIndexes: indexes, stepPsnrDb: psnr, imagePsnrDb: imagePsnr, thresholdDb: thresholdDb)
    }
}
