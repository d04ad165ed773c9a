#if canImport(CoreML)
import CoreML
import CryptoKit
import Foundation

/// Runs a bundle's multifunction Core ML package: one `MLModel` per manifest method, each opened on
/// its function with `MLModelConfiguration.functionName` (iOS 18). The functions share one set of
/// weights on disk. Inputs and outputs are matched by the names the manifest gives them.
public final class CoreMLBackend: Backend {
    public static let format = "coreml"

    public var name: String { CoreMLBackend.format }

    private let computeUnits: MLComputeUnits
    private var models: [String: MLModel] = [:]
    private var manifest: Manifest?

    public init(computeUnits: MLComputeUnits = .all) {
        self.computeUnits = computeUnits
    }

    /// Compiles the bundle's `.mlpackage` for this device once and caches the `.mlmodelc`, so that
    /// `load` (the timed part) only opens it. Bundles that ship a compiled `.mlmodelc` need no
    /// compilation. Call this off the main thread before `load`.
    @discardableResult
    public static func prepare(bundleDir: URL, manifest: Manifest) async throws -> URL {
        let location = try ModelLocation(bundleDir: bundleDir, artifacts: manifest.artifacts(format: format))
        if let ready = location.compiledIfPresent() {
            return ready
        }
        let compiled = try await MLModel.compileModel(at: location.package)
        let fm = FileManager.default
        try fm.createDirectory(at: location.cached.deletingLastPathComponent(), withIntermediateDirectories: true)
        if fm.fileExists(atPath: location.cached.path) {
            try fm.removeItem(at: location.cached)
        }
        try fm.moveItem(at: compiled, to: location.cached)
        return location.cached
    }

    public func load(bundleDir: URL, manifest: Manifest) throws {
        let artifacts = try manifest.artifacts(format: CoreMLBackend.format)
        guard let compiled = try ModelLocation(bundleDir: bundleDir, artifacts: artifacts).compiledIfPresent() else {
            throw BackendError("the Core ML package of \(bundleDir.lastPathComponent) is not compiled yet; "
                + "call CoreMLBackend.prepare(bundleDir:manifest:) before load")
        }
        var loaded: [String: MLModel] = [:]
        for method in manifest.usedMethods {
            let config = MLModelConfiguration()
            config.computeUnits = computeUnits
            config.functionName = artifacts.locate(method)
            do {
                loaded[method] = try MLModel(contentsOf: compiled, configuration: config)
            } catch {
                throw BackendError("Core ML could not open function '\(artifacts.locate(method))' of "
                    + "\(compiled.lastPathComponent): \(error.localizedDescription)")
            }
        }
        models = loaded
        self.manifest = manifest
    }

    public func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
        guard let manifest, let model = models[method] else {
            throw BackendError("Core ML backend has no loaded function for method '\(method)'; call load first")
        }
        let spec = try manifest.method(method)
        var features: [String: MLFeatureValue] = [:]
        for (input, tensor) in zip(spec.inputs, inputs) {
            let description = model.modelDescription.inputDescriptionsByName[input.name]
            guard let constraint = description?.multiArrayConstraint else {
                throw BackendError("Core ML function for '\(method)' has no multi-array input named '\(input.name)'")
            }
            features[input.name] = MLFeatureValue(multiArray: try MultiArrays.make(tensor, as: constraint.dataType))
        }
        let prediction: MLFeatureProvider
        do {
            prediction = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: features))
        } catch {
            throw BackendError("Core ML failed to run method '\(method)': \(error.localizedDescription)")
        }
        return try spec.outputs.map { (output: MethodSpec.Output) throws -> Tensor in
            guard let array = prediction.featureValue(for: output.name)?.multiArrayValue else {
                throw BackendError("Core ML function for '\(method)' returned no multi-array '\(output.name)'")
            }
            return try MultiArrays.tensor(array, as: manifest.slot(output.target))
        }
    }

    public func close() {
        models = [:]
        manifest = nil
    }
}

/// Where a bundle's Core ML model is, and where its compiled form is kept.
struct ModelLocation {
    /// The `.mlpackage` (or `.mlmodelc`) folder inside the bundle.
    let package: URL
    /// The per-device compiled model in Caches, keyed by the package's recorded digests.
    let cached: URL

    init(bundleDir: URL, artifacts: ArtifactSet) throws {
        let found = [".mlmodelc", ".mlpackage"].first { m in artifacts.files.contains { $0.path.contains(m) } }
        guard let marker = found, let file = artifacts.firstFile(containing: marker),
              let end = file.path.range(of: marker)?.upperBound else {
            throw BackendError("the bundle's coreml artifacts list no .mlpackage or .mlmodelc; re-export the bundle")
        }
        package = bundleDir.appendingPathComponent(String(file.path[..<end]))
        let digests = artifacts.files.map { $0.sha256 ?? $0.path }.joined(separator: ",")
        let key = SHA256.hash(data: Data((bundleDir.lastPathComponent + digests).utf8))
            .prefix(8).map { String(format: "%02x", $0) }.joined()
        let caches = FileManager.default.urls(for: .cachesDirectory, in: .userDomainMask)[0]
        cached = caches.appendingPathComponent("LazyDiT", isDirectory: true).appendingPathComponent("\(key).mlmodelc")
    }

    func compiledIfPresent() -> URL? {
        if package.pathExtension == "mlmodelc" {
            return package
        }
        return FileManager.default.fileExists(atPath: cached.path) ? cached : nil
    }
}

/// Conversions between core tensors and Core ML multi-arrays. Core ML has no int64 or uint8
/// arrays, so labels travel as int32 and images come back as whatever the model emits, then are
/// converted to the dtype of the manifest slot they land in.
enum MultiArrays {
    static func make(_ tensor: Tensor, as dataType: MLMultiArrayDataType) throws -> MLMultiArray {
        let array = try MLMultiArray(shape: tensor.shape.map { NSNumber(value: $0) }, dataType: dataType)
        let shape = tensor.shape
        try array.withUnsafeMutableBytes { raw, strides in
            for i in 0..<tensor.count {
                let at = offset(of: i, shape: shape, strides: strides)
                let v = tensor.double(at: i)
                switch dataType {
                case .float32: raw.storeBytes(of: Float(v), toByteOffset: at * 4, as: Float.self)
                case .double: raw.storeBytes(of: v, toByteOffset: at * 8, as: Double.self)
                case .int32: raw.storeBytes(of: Int32(v), toByteOffset: at * 4, as: Int32.self)
                default:
                    throw BackendError("Core ML input of type \(dataType.rawValue) is not supported; "
                        + "export with float32 or int32 inputs")
                }
            }
        }
        return array
    }

    static func tensor(_ array: MLMultiArray, as slot: SlotSpec) throws -> Tensor {
        let shape = array.shape.map(\.intValue)
        let strides = array.strides.map(\.intValue)
        let count = shape.reduce(1, *)
        let expected = try Tensor.elementCount(slot.shape)
        guard count == expected else {
            throw BackendError("Core ML returned \(shape) for slot '\(slot.name)', which is \(slot.description)")
        }
        var values = [Double](repeating: 0, count: count)
        switch array.dataType {
        case .float32, .double, .int32:
            let dataType = array.dataType
            array.withUnsafeBytes { raw in
                for i in 0..<count {
                    let at = offset(of: i, shape: shape, strides: strides)
                    switch dataType {
                    case .float32: values[i] = Double(raw.load(fromByteOffset: at * 4, as: Float.self))
                    case .double: values[i] = raw.load(fromByteOffset: at * 8, as: Double.self)
                    default: values[i] = Double(raw.load(fromByteOffset: at * 4, as: Int32.self))
                    }
                }
            }
        default:
            for i in 0..<count {
                values[i] = array[index(of: i, shape: shape).map { NSNumber(value: $0) }].doubleValue
            }
        }
        return try convert(values, to: slot)
    }

    private static func convert(_ values: [Double], to slot: SlotSpec) throws -> Tensor {
        switch slot.dtype {
        case .float32: return try Tensor(floats: values.map { Float($0) }, shape: slot.shape)
        case .int64: return try Tensor(int64s: values.map { Int64($0.rounded()) }, shape: slot.shape)
        case .int32: return try Tensor(int32s: values.map { Int32($0.rounded()) }, shape: slot.shape)
        case .uint8: return try Tensor(uint8s: values.map { UInt8(clamping: Int($0.rounded())) }, shape: slot.shape)
        }
    }

    private static func index(of linear: Int, shape: [Int]) -> [Int] {
        var rest = linear
        var index = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            index[d] = rest % shape[d]
            rest /= shape[d]
        }
        return index
    }

    private static func offset(of linear: Int, shape: [Int], strides: [Int]) -> Int {
        zip(index(of: linear, shape: shape), strides).reduce(0) { $0 + $1.0 * $1.1 }
    }
}
#endif
