import Foundation

/// A dense row-major tensor held as little-endian bytes (every Apple CPU is little-endian).
/// Tensors carry no name: the manifest names the slot they live in. They are values.
public struct Tensor: Equatable, CustomStringConvertible, Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let data: Data

    /// Wraps `data` (little-endian, row-major) after checking its size against the shape.
    public init(dtype: DType, shape: [Int], data: Data) throws {
        let count = try Tensor.elementCount(shape)
        guard data.count == count * dtype.itemSize else {
            let needed = count * dtype.itemSize
            throw TensorError("\(Tensor.describe(dtype, shape)) needs \(needed) bytes, got \(data.count)")
        }
        self.dtype = dtype
        self.shape = shape
        self.data = Data(data)
    }

    /// A zero-filled tensor.
    public static func zeros(_ dtype: DType, shape: [Int]) throws -> Tensor {
        try Tensor(dtype: dtype, shape: shape, data: Data(count: Tensor.elementCount(shape) * dtype.itemSize))
    }

    public init(floats: [Float], shape: [Int]) throws {
        try self.init(dtype: .float32, shape: shape, data: floats.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    public init(int64s: [Int64], shape: [Int]) throws {
        try self.init(dtype: .int64, shape: shape, data: int64s.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    public init(int32s: [Int32], shape: [Int]) throws {
        try self.init(dtype: .int32, shape: shape, data: int32s.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    public init(uint8s: [UInt8], shape: [Int]) throws {
        try self.init(dtype: .uint8, shape: shape, data: Data(uint8s))
    }

    /// A float32 tensor of shape [1]: how the manifest's per-step scalars and cfg_scale are fed.
    public static func scalar(_ value: Float) -> Tensor {
        // A one-element float array always matches shape [1].
        try! Tensor(floats: [value], shape: [1])
    }

    public var count: Int { data.count / dtype.itemSize }

    public var nbytes: Int { data.count }

    public func floats() throws -> [Float] { try values(.float32) }

    public func int64s() throws -> [Int64] { try values(.int64) }

    public func int32s() throws -> [Int32] { try values(.int32) }

    /// The raw bytes (for uint8, the pixel values).
    public func bytes() -> [UInt8] { [UInt8](data) }

    /// Element `i` widened to Double, whatever the dtype.
    public func double(at i: Int) -> Double {
        data.withUnsafeBytes { raw -> Double in
            let at = i * dtype.itemSize
            switch dtype {
            case .float32: return Double(raw.loadUnaligned(fromByteOffset: at, as: Float.self))
            case .int64: return Double(raw.loadUnaligned(fromByteOffset: at, as: Int64.self))
            case .int32: return Double(raw.loadUnaligned(fromByteOffset: at, as: Int32.self))
            case .uint8: return Double(raw[at])
            case .float16: return Tensor.halfToDouble(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self))
            }
        }
    }

    /// IEEE 754 binary16 bits widened (Float16 itself is missing on x86-64 macOS).
    static func halfToDouble(_ bits: UInt16) -> Double {
        let sign: Double = bits & 0x8000 != 0 ? -1 : 1
        let exponent = Int((bits >> 10) & 0x1f)
        let mantissa = Double(bits & 0x3ff)
        if exponent == 0x1f { return mantissa == 0 ? sign * .infinity : .nan }
        if exponent == 0 { return sign * mantissa * 0x1p-24 }
        return sign * (1 + mantissa / 1024) * Double(sign: .plus, exponent: exponent - 15, significand: 1)
    }

    /// Same dtype, same shape, same bytes.
    public func sameAs(_ other: Tensor) -> Bool { self == other }

    public func hasSpec(dtype: DType, shape: [Int]) -> Bool { self.dtype == dtype && self.shape == shape }

    /// "float32[1, 4, 8, 8]".
    public var description: String { Tensor.describe(dtype, shape) }

    static func describe(_ dtype: DType, _ shape: [Int]) -> String {
        "\(dtype.label)[\(shape.map(String.init).joined(separator: ", "))]"
    }

    static func elementCount(_ shape: [Int]) throws -> Int {
        var count = 1
        for d in shape {
            guard d >= 0 else { throw TensorError("negative dimension in shape \(shape)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw TensorError("shape \(shape) is too large") }
            count = product
        }
        return count
    }

    private func values<T: BitwiseCopyable>(_ wanted: DType) throws -> [T] {
        guard dtype == wanted else { throw TensorError("tensor is \(description), not \(wanted.label)") }
        return data.withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * dtype.itemSize, as: T.self) }
        }
    }
}
