import Foundation

/// The decoded image's size, from `model.image`.
public struct ImageSpec: Codable, Sendable {
    public let height: Int
    public let width: Int
    public let channels: Int
}

/// `model`: what the bundle was made from; the runtime uses the image size and class count.
public struct ModelInfo: Codable, Sendable {
    public let name: String
    public let image: ImageSpec
    public let numClasses: Int
    public let nullClass: Int
    /// Random-weight bundles made for latency only: their images are noise by design.
    public let timingOnly: Bool

    enum CodingKeys: String, CodingKey {
        case name, image
        case numClasses = "num_classes"
        case nullClass = "null_class"
        case timingOnly = "timing_only"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
        image = try c.decode(ImageSpec.self, forKey: .image)
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? 0
        nullClass = try c.decodeIfPresent(Int.self, forKey: .nullClass) ?? -1
        timingOnly = try c.decodeIfPresent(Bool.self, forKey: .timingOnly) ?? false
    }
}

/// One state slot: its shape and dtype.
public struct SlotSpec: Codable, Sendable {
    public internal(set) var name = ""
    public let shape: [Int]
    public let dtype: DType

    enum CodingKeys: String, CodingKey { case shape, dtype }

    public var description: String { Tensor.describe(dtype, shape) }
}

/// A graph in the bundle: its inputs (each fed from a source) and outputs (each written to a slot).
public struct MethodSpec: Codable, Sendable {
    /// An input named as in the graph, fed from a slot or a per-step scalar.
    public struct Input: Codable, Sendable {
        public let name: String
        public let source: String
    }

    /// An output named as in the graph, written to a slot.
    public struct Output: Codable, Sendable {
        public let name: String
        public let target: String
    }

    public internal(set) var name = ""
    public let inputs: [Input]
    public let outputs: [Output]

    enum CodingKeys: String, CodingKey { case inputs, outputs }

    /// The output written to `slot`, or nil if this method does not write it.
    public func output(for slot: String) -> Output? {
        outputs.first { $0.target == slot }
    }

    public var inputNames: [String] { inputs.map(\.name) }
}

/// `computed` / `skipped` of a step: a list of module cells or their count.
struct ModuleCount: Codable, Sendable {
    let value: Int

    init(from decoder: Decoder) throws {
        if let list = try? decoder.unkeyedContainer() {
            value = list.count ?? 0
        } else {
            value = try decoder.singleValueContainer().decode(Int.self)
        }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

/// One denoising step: which method runs, with which per-step scalars, and how lazy it is.
public struct StepSpec: Codable, Sendable {
    /// The step number used in golden tensor names (`step/<index>/...`).
    public let index: Int
    public let method: String
    public let scalars: [String: Double]
    let computed: ModuleCount?
    let skipped: ModuleCount?

    enum CodingKeys: String, CodingKey { case index, method, scalars, computed, skipped }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        method = try c.decode(String.self, forKey: .method)
        scalars = try c.decodeIfPresent([String: Double].self, forKey: .scalars) ?? [:]
        computed = try c.decodeIfPresent(ModuleCount.self, forKey: .computed)
        skipped = try c.decodeIfPresent(ModuleCount.self, forKey: .skipped)
    }

    public var computedModules: Int { computed?.value ?? 0 }

    public var skippedModules: Int { skipped?.value ?? 0 }

    /// True when the plan reuses or forecasts at least one module at this step.
    public var isLazy: Bool { skippedModules > 0 }
}

/// The files of one format (executorch, coreml, onnx) and where each manifest method lives in them.
public struct ArtifactSet: Codable, Sendable {
    /// One file with the digest the exporter recorded.
    public struct ArtifactFile: Codable, Sendable {
        /// Relative to the bundle folder.
        public let path: String
        public let sha256: String?
        public let bytes: Int64?
    }

    public internal(set) var format = ""
    public let files: [ArtifactFile]
    /// Manifest method name to the format's own name for it (a file path or a function name).
    public let methods: [String: String]

    enum CodingKeys: String, CodingKey { case files, methods }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        files = try c.decode([ArtifactFile].self, forKey: .files)
        methods = try c.decodeIfPresent([String: String].self, forKey: .methods) ?? [:]
    }

    /// The format's name for `method`; the method's own name when the manifest maps none.
    public func locate(_ method: String) -> String { methods[method] ?? method }

    /// The first file whose path contains `marker` (".pte", ".mlpackage/", ".mlmodelc/"), or nil.
    public func firstFile(containing marker: String) -> ArtifactFile? {
        files.first { $0.path.contains(marker) }
    }
}

/// Where the golden vectors live and how they were made.
public struct GoldenSpec: Codable, Sendable {
    public let path: String
    public let sha256: String?
    public let label: Int64
    public let cfgScale: Double
    public let seed: Int64?

    enum CodingKeys: String, CodingKey {
        case path, sha256, label, seed
        case cfgScale = "cfg_scale"
    }
}

/// A bundle's manifest.json (version 1, docs/bundle.md). Obtained only through `parse` or `load`,
/// both of which validate it, so a Manifest in hand is one the loop can run.
public struct Manifest: Codable, Sendable {
    public static let format = "lazydit-bundle"
    public static let version = 1
    public static let fileName = "manifest.json"

    public let format: String
    public let version: Int
    public let model: ModelInfo
    public let slots: [String: SlotSpec]
    public let methods: [String: MethodSpec]
    public let steps: [StepSpec]
    public let decode: String
    public let artifacts: [String: ArtifactSet]
    /// The golden vectors' description, or nil when the bundle ships none.
    public let golden: GoldenSpec?

    /// The sampler's record; only its step count is read (checked against `steps`).
    public let sampler: SamplerInfo?

    public struct SamplerInfo: Codable, Sendable { public let steps: Int? }

    enum CodingKeys: String, CodingKey {
        case format, version, model, slots, methods, steps, decode, artifacts, golden, sampler
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(String.self, forKey: .format)
        version = try c.decode(Int.self, forKey: .version)
        guard format == Manifest.format, version == Manifest.version else {
            throw ManifestError("format '\(format)' version \(version) is not \(Manifest.format) version "
                + "\(Manifest.version); this runtime reads version 1 only")
        }
        model = try c.decode(ModelInfo.self, forKey: .model)
        slots = try c.decode([String: SlotSpec].self, forKey: .slots).named { spec, name in spec.name = name }
        methods = try c.decode([String: MethodSpec].self, forKey: .methods).named { spec, name in spec.name = name }
        steps = try c.decode([StepSpec].self, forKey: .steps)
        decode = try c.decode(String.self, forKey: .decode)
        artifacts = try (c.decodeIfPresent([String: ArtifactSet].self, forKey: .artifacts) ?? [:])
            .named { set, name in set.format = name }
        golden = try c.decodeIfPresent(GoldenSpec.self, forKey: .golden)
        sampler = try c.decodeIfPresent(SamplerInfo.self, forKey: .sampler)
    }

    /// Parses and validates; every contract violation is listed in one error.
    public static func parse(_ json: Data) throws -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: json)
        } catch let error as DecodingError {
            throw ManifestError(describe(error))
        }
        let problems = ManifestValidator.problems(manifest)
        guard problems.isEmpty else { throw ManifestError(problems) }
        return manifest
    }

    public static func load(bundleDir: URL) throws -> Manifest {
        let file = bundleDir.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw BundleError("\(file.path) not found: a bundle folder holds manifest.json next to its artifacts")
        }
        return try parse(Data(contentsOf: file))
    }

    public func isSlot(_ name: String) -> Bool { slots[name] != nil }

    public func slot(_ name: String) throws -> SlotSpec {
        guard let spec = slots[name] else { throw ManifestError("no slot '\(name)' in the manifest") }
        return spec
    }

    public func method(_ name: String) throws -> MethodSpec {
        guard let spec = methods[name] else { throw ManifestError("no method '\(name)' in the manifest") }
        return spec
    }

    public func decodeMethod() throws -> MethodSpec { try method(decode) }

    /// Indexes of the steps that skip at least one module.
    public var lazySteps: [Int] { steps.filter(\.isLazy).map(\.index) }

    public func artifacts(format: String) throws -> ArtifactSet {
        guard let set = artifacts[format] else {
            throw ManifestError("this bundle has no '\(format)' artifacts (it has \(artifacts.keys.sorted())); "
                + "export it with that format enabled")
        }
        return set
    }

    /// "manifest.steps[0].method: missing", from Foundation's decoding error.
    static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .keyNotFound(key, context):
            return path(context.codingPath + [key]) + ": missing"
        case let .typeMismatch(_, context), let .valueNotFound(_, context), let .dataCorrupted(context):
            return path(context.codingPath) + ": " + context.debugDescription
        @unknown default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.reduce("manifest") { path, key in
            if let i = key.intValue, key.stringValue.hasPrefix("Index") {
                return "\(path)[\(i)]"
            }
            return "\(path).\(key.stringValue)"
        }
    }
}

extension Dictionary where Key == String {
    /// Gives each value its own key, for specs whose name is their key in the JSON.
    func named(_ setName: (inout Value, String) -> Void) -> [String: Value] {
        var out: [String: Value] = [:]
        for (key, value) in self {
            var named = value
            setName(&named, key)
            out[key] = named
        }
        return out
    }
}
