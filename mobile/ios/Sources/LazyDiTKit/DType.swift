import Foundation

/// Element types a bundle can hold; the codes are the ones stored in `.lzt` files.
public enum DType: String, Codable, CaseIterable, Sendable {
    case float32
    case int64
    case uint8
    case int32
    /// IEEE half precision: an fp16 bundle's cache slots, passed between methods as they are.
    case float16

    public var code: UInt8 {
        switch self {
        case .float32: return 0
        case .int64: return 1
        case .uint8: return 2
        case .int32: return 3
        case .float16: return 4
        }
    }

    public var itemSize: Int {
        switch self {
        case .float16: return 2
        case .float32, .int32: return 4
        case .int64: return 8
        case .uint8: return 1
        }
    }

    /// The name used in manifest.json and in error messages (numpy spelling).
    public var label: String { rawValue }

    public static func from(code: UInt8) throws -> DType {
        guard let dtype = allCases.first(where: { $0.code == code }) else {
            throw TensorError("unknown dtype code \(code) (known: 0 float32, 1 int64, 2 uint8, 3 int32, 4 float16)")
        }
        return dtype
    }
}
