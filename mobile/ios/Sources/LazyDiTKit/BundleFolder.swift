import Foundation

/// A bundle folder with its validated manifest.
public struct BundleFolder {
    public let dir: URL
    public let manifest: Manifest

    public static func open(_ dir: URL) throws -> BundleFolder {
        BundleFolder(dir: dir, manifest: try Manifest.load(bundleDir: dir))
    }

    /// The folder name, which is how people refer to a bundle in reports.
    public var name: String { dir.lastPathComponent }

    public var hasGolden: Bool { manifest.golden != nil }

    /// Reads golden.lzt after checking its digest against the manifest.
    public func readGolden() throws -> Golden {
        guard let spec = manifest.golden else {
            throw BundleError("bundle \(name) ships no golden vectors; re-export it with golden vectors to check it")
        }
        guard let digest = spec.sha256 else {
            throw BundleError("the manifest gives golden.path but no sha256: golden vectors that cannot be "
                + "checked are no reference; re-export the bundle")
        }
        try BundleIntegrity.throwIfAny(dir, BundleIntegrity.check(bundleDir: dir, path: spec.path,
                                                                  expectedSha256: digest))
        let tensors = try TensorFile.read(try BundleIntegrity.inside(dir, spec.path))
        for name in tensors.names {
            guard let t = tensors[name] else { continue }
            for i in 0..<t.count where !t.double(at: i).isFinite {
                throw BundleError("\(spec.path): tensor '\(name)' holds a NaN or infinity at \(i); re-export the bundle")
            }
        }
        return Golden(tensors)
    }

    /// Checks the digests of every file of one format before a backend loads it.
    public func verifyArtifacts(format: String) throws {
        try BundleIntegrity.verify(bundleDir: dir, artifacts: manifest.artifacts(format: format))
    }

    /// Seeded standard-normal noise shaped like slot x.
    public func noise(seed: UInt64) throws -> Tensor {
        try Noise.gaussian(shape: manifest.slot(State.x).shape, seed: seed)
    }
}
