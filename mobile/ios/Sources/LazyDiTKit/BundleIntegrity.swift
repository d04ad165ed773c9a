#if canImport(CryptoKit)
import CryptoKit
#endif
import Foundation

/// SHA-256 checks of bundle files against the manifest, to catch half-copied bundles.
public enum BundleIntegrity {
    public static func sha256(_ file: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        #if canImport(CryptoKit)
        var hasher = SHA256()
        #else
        var hasher = Sha256()
        #endif
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        #if canImport(CryptoKit)
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
        #else
        return hasher.hexDigest()
        #endif
    }

    /// Problems with one file: missing, a digest other than `expectedSha256`, or (a program) a head that
    /// does not fit the file. Empty when fine.
    public static func check(bundleDir: URL, path: String, expectedSha256: String?) throws -> [String] {
        let file = try inside(bundleDir, path)
        guard FileManager.default.fileExists(atPath: file.path) else { return ["\(path): missing"] }
        if let expected = expectedSha256 {
            let actual = try sha256(file)
            if actual.lowercased() != expected.lowercased() {
                return ["\(path): sha256 \(actual) but the manifest says \(expected)"]
            }
        }
        if path.hasSuffix(".pte"), let bad = try ProgramHeader.problem(file, path: path) {
            return [bad]
        }
        return []
    }

    /// A file the manifest names, refused unless it lies inside the bundle folder (no absolute path,
    /// no '..', no link leading out): a bundle must never make the app read elsewhere.
    public static func inside(_ bundleDir: URL, _ path: String) throws -> URL {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if path.isEmpty || path.hasPrefix("/") || path.contains("\\") || parts.contains("..") {
            throw ManifestError("the manifest names '\(path)', which is not a file name inside the bundle folder")
        }
        let file = bundleDir.appendingPathComponent(path)
        let base = bundleDir.resolvingSymlinksInPath().standardizedFileURL.path + "/"
        if !file.resolvingSymlinksInPath().standardizedFileURL.path.hasPrefix(base) {
            throw ManifestError("the manifest names '\(path)', which leads outside the bundle folder")
        }
        return file
    }

    /// Throws when any file of `artifacts` is missing or differs from its recorded digest.
    public static func verify(bundleDir: URL, artifacts: ArtifactSet) throws {
        var problems: [String] = []
        for file in artifacts.files {
            problems += try check(bundleDir: bundleDir, path: file.path, expectedSha256: file.sha256)
        }
        try throwIfAny(bundleDir, problems)
    }

    static func throwIfAny(_ bundleDir: URL, _ problems: [String]) throws {
        guard problems.isEmpty else {
            throw BundleError("bundle \(bundleDir.path) is incomplete or corrupt:\n  - "
                + problems.joined(separator: "\n  - ") + "\nCopy the whole bundle folder again.")
        }
    }
}
