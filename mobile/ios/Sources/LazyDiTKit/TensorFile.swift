import Foundation

/// Tensors by name, in file order (the order golden.lzt lists a method's inputs in).
public struct NamedTensors: Sendable {
    public private(set) var names: [String] = []
    private var byName: [String: Tensor] = [:]

    public init() {}

    public subscript(name: String) -> Tensor? { byName[name] }

    /// Adds `tensor`, or replaces the tensor of that name in place.
    public mutating func set(_ name: String, _ tensor: Tensor) {
        if byName.updateValue(tensor, forKey: name) == nil {
            names.append(name)
        }
    }
}

/// Reader and writer of the bundle's tensor file (`.lzt`), byte for byte the layout of
/// `lazydit/runtime/tensorfile.py`:
///
///     magic "LZT1", count u32, then per tensor:
///       name_len u32, name UTF-8, dtype u8, ndim u32, dims u64 x ndim, nbytes u64, data
///
/// All little-endian. Tensors keep file order.
public enum TensorFile {
    static let magic = Data("LZT1".utf8)

    public static func read(_ url: URL) throws -> NamedTensors {
        try read(Data(contentsOf: url), source: url.lastPathComponent)
    }

    /// Parses a whole file held in `data`; `source` names it in error messages.
    public static func read(_ data: Data, source: String) throws -> NamedTensors {
        var reader = ByteReader(data: data)
        guard data.count >= magic.count, Data(data.prefix(magic.count)) == magic else {
            throw TensorFileError("\(source): not a lazydit tensor file (bad magic)")
        }
        reader.offset = magic.count
        var out = NamedTensors()
        var current = "<header>"
        do {
            let count = try reader.u32()
            for k in 0..<Int(count) {
                current = "#\(k)"
                let nameLength = Int(try reader.u32())
                let nameBytes = try reader.bytes(nameLength)
                guard let name = String(data: nameBytes, encoding: .utf8) else {
                    throw TensorFileError("\(source): tensor \(current) has a name that is not UTF-8")
                }
                current = name
                let code = try reader.u8()
                let ndim = Int(try reader.u32())
                guard ndim <= reader.remaining / 8 else { throw ByteReader.Truncated() }
                var shape: [Int] = []
                for _ in 0..<ndim {
                    shape.append(Int(try reader.u64()))
                }
                let nbytes = try reader.u64()
                let dtype: DType
                do {
                    dtype = try DType.from(code: code)
                } catch let error as TensorError {
                    throw TensorFileError("\(source): tensor '\(name)' has \(error.description)")
                }
                guard nbytes <= UInt64(reader.remaining) else { throw ByteReader.Truncated() }
                let bytes = try reader.bytes(Int(nbytes))
                do {
                    out.set(name, try Tensor(dtype: dtype, shape: shape, data: bytes))
                } catch let error as TensorError {
                    throw TensorFileError("\(source): tensor '\(name)' is inconsistent: \(error.description)")
                }
            }
        } catch is ByteReader.Truncated {
            throw TensorFileError("\(source): truncated inside tensor '\(current)'")
        }
        return out
    }

    public static func write(_ url: URL, _ tensors: NamedTensors) throws {
        var out = magic
        out.appendLE(UInt32(tensors.names.count))
        for name in tensors.names {
            guard let t = tensors[name] else { continue }
            let raw = Data(name.utf8)
            out.appendLE(UInt32(raw.count))
            out.append(raw)
            out.append(t.dtype.code)
            out.appendLE(UInt32(t.shape.count))
            for d in t.shape {
                out.appendLE(UInt64(d))
            }
            out.appendLE(UInt64(t.nbytes))
            out.append(t.data)
        }
        try out.write(to: url, options: .atomic)
    }
}

/// Little-endian cursor over a byte buffer.
struct ByteReader {
    struct Truncated: Error {}

    let data: Data
    var offset = 0

    var remaining: Int { data.count - offset }

    mutating func bytes(_ n: Int) throws -> Data {
        guard n >= 0, n <= remaining else { throw Truncated() }
        let start = data.startIndex + offset
        offset += n
        return data.subdata(in: start..<(start + n))
    }

    mutating func u8() throws -> UInt8 { try bytes(1)[0] }

    mutating func u32() throws -> UInt32 { try integer(UInt32.self) }

    mutating func u64() throws -> UInt64 { try integer(UInt64.self) }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let raw = try bytes(MemoryLayout<T>.size)
        return raw.reduce(into: (value: T.zero, shift: 0)) { acc, byte in
            acc.value |= T(byte) << acc.shift
            acc.shift += 8
        }.value
    }
}

extension Data {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
