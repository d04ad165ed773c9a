import Foundation

/// A tensor whose bytes, shape or dtype do not fit together.
public struct TensorError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// A `.lzt` file that cannot be read: wrong magic, truncated, unknown dtype.
public struct TensorFileError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// manifest.json is unreadable or breaks the bundle contract (docs/bundle.md).
public struct ManifestError: Error, CustomStringConvertible, LocalizedError {
    public let problems: [String]

    public init(_ problems: [String]) { self.problems = problems }
    public init(_ problem: String) { self.problems = [problem] }

    public var description: String {
        let noun = problems.count == 1 ? "problem" : "problems"
        let list = problems.map { "\n  - " + $0 }.joined()
        return "manifest.json breaks the bundle contract (\(problems.count) \(noun)):\(list)"
            + "\nRe-export the bundle with `lazydit export`; runtimes never patch a manifest."
    }

    public var errorDescription: String? { description }
}

/// A backend failed to load or run a method; the message names the method and what went wrong.
public struct BackendError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// A bundle folder that is incomplete or corrupt, or lacks what was asked of it.
public struct BundleError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}
