import Foundation

/// The runtime's state: slot name to tensor. This is the whole cache mechanism; a cache slot
/// (`cache:<block>.<module>`) is just a slot one step writes and a later step reads.
public final class State {
    public static let x = "x"
    public static let y = "y"
    public static let cfgScale = "cfg_scale"
    public static let image = "image"
    public static let cachePrefix = "cache:"

    private var slots: [String: Tensor] = [:]

    private init() {}

    /// {x: noise, y: int64 [1] label, cfg_scale: float32 [1]}, as docs/bundle.md prescribes.
    public static func initial(noise: Tensor, label: Int64, cfgScale: Float) -> State {
        // A one-element array always matches shape [1].
        of(x: noise, y: try! Tensor(int64s: [label], shape: [1]), cfgScale: Tensor.scalar(cfgScale))
    }

    public static func of(x: Tensor, y: Tensor, cfgScale: Tensor) -> State {
        let s = State()
        s.put(State.x, x)
        s.put(State.y, y)
        s.put(State.cfgScale, cfgScale)
        return s
    }

    public static func isCache(_ slot: String) -> Bool { slot.hasPrefix(cachePrefix) }

    public func has(_ slot: String) -> Bool { slots[slot] != nil }

    public func get(_ slot: String) throws -> Tensor {
        guard let t = slots[slot] else {
            throw BackendError("slot '\(slot)' has no value yet (holding \(slots.keys.sorted()))")
        }
        return t
    }

    public func put(_ slot: String, _ value: Tensor) { slots[slot] = value }

    public var slotNames: [String] { slots.keys.sorted() }

    /// A new state holding the same tensors; tensors are values, so sharing them is safe.
    public func copy() -> State {
        let s = State()
        s.slots = slots
        return s
    }
}
