#if canImport(ExecuTorch)
import ExecuTorch
import Foundation

/// Runs a bundle's model.pte with the ExecuTorch runtime. ExecuTorch has its own `Tensor`, so the
/// core's is spelled `LazyDiTKit.Tensor` here. All methods live in one program, so the
/// weights are mapped once; each manifest method is loaded up front so that the first timed image
/// does not pay for it.
public final class ExecuTorchBackend: Backend {
    public static let format = "executorch"

    public var name: String { ExecuTorchBackend.format }

    private var module: Module?
    private var artifacts: ArtifactSet?

    public init() {}

    public func load(bundleDir: URL, manifest: Manifest) throws {
        let artifacts = try manifest.artifacts(format: ExecuTorchBackend.format)
        guard let program = artifacts.firstFile(containing: ".pte") else {
            throw BackendError("the bundle's executorch artifacts list no .pte file; re-export the bundle")
        }
        let path = bundleDir.appendingPathComponent(program.path).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw BackendError("\(path) not found; copy the whole bundle folder")
        }
        // weights past 2 GB live in a data file beside the program (ExecuTorch's program-data
        // separation); the program resolves its named weights there
        var dataPaths: [String] = []
        for data in artifacts.files where data.path.hasSuffix(".ptd") {
            let dataPath = bundleDir.appendingPathComponent(data.path).path
            guard FileManager.default.fileExists(atPath: dataPath) else {
                throw BackendError("\(data.path), the weights of \(program.path), not found; copy the whole bundle folder")
            }
            dataPaths.append(dataPath)
        }
        let module = dataPaths.isEmpty
            ? Module(filePath: path, loadMode: .mmap)
            : Module(filePath: path, dataFilePaths: dataPaths, loadMode: .mmap)
        do {
            try module.load()
            for method in manifest.usedMethods {
                try module.load(artifacts.locate(method))
            }
        } catch {
            throw BackendError("ExecuTorch could not load \(program.path): \(error.localizedDescription)")
        }
        self.module = module
        self.artifacts = artifacts
    }

    public func run(method: String, inputs: [LazyDiTKit.Tensor]) throws -> [LazyDiTKit.Tensor] {
        guard let module, let artifacts else {
            throw BackendError("ExecuTorch backend used before load()")
        }
        let values: [ValueConvertible] = inputs.map { ExecuTorchBackend.toExecuTorch($0) }
        let outputs: [Value]
        do {
            outputs = try module.execute(artifacts.locate(method), values)
        } catch {
            throw BackendError("ExecuTorch failed to run method '\(method)': \(error.localizedDescription)")
        }
        return try outputs.map { value in
            guard let tensor = value.anyTensor else {
                throw BackendError("method '\(method)' returned a value that is not a tensor")
            }
            return try ExecuTorchBackend.fromExecuTorch(tensor, method: method)
        }
    }

    public func close() {
        module = nil
        artifacts = nil
    }

    /// The runtime reads the core tensor's bytes in place (`Data` is kept alive by the tensor).
    static func toExecuTorch(_ t: LazyDiTKit.Tensor) -> AnyTensor {
        let dataType: DataType
        switch t.dtype {
        case .float32: dataType = .float
        case .int64: dataType = .long
        case .int32: dataType = .int
        case .uint8: dataType = .byte
        case .float16: dataType = .half
        }
        return AnyTensor(data: t.data, shape: t.shape, dataType: dataType)
    }

    static func fromExecuTorch(_ t: AnyTensor, method: String) throws -> LazyDiTKit.Tensor {
        let dtype: DType
        switch t.dataType {
        case .float: dtype = .float32
        case .long: dtype = .int64
        case .int: dtype = .int32
        case .byte: dtype = .uint8
        case .half: dtype = .float16
        default:
            throw BackendError("method '\(method)' returned a tensor of ExecuTorch type \(t.dataType.rawValue); "
                + "bundles use float32, float16, int64, int32 and uint8 only")
        }
        var bytes = Data()
        t.bytes { pointer, count, _ in
            bytes = Data(bytes: pointer, count: count * dtype.itemSize)
        }
        return try LazyDiTKit.Tensor(dtype: dtype, shape: t.shape, data: bytes)
    }
}
#endif
