import Foundation

/// Names of the tensors in golden.lzt (docs/bundle.md) and typed access to them.
public struct Golden {
    public let tensors: NamedTensors

    public init(_ tensors: NamedTensors) { self.tensors = tensors }

    public static func stepInput(_ index: Int, _ name: String) -> String { "step/\(index)/in/\(name)" }

    public static func stepOutput(_ index: Int, _ name: String) -> String { "step/\(index)/out/\(name)" }

    public static func decodeOutput(_ name: String) -> String { "decode/out/\(name)" }

    public func get(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            throw BundleError("golden.lzt has no tensor '\(name)'; it does not match this manifest, "
                + "so re-export the bundle")
        }
        return t
    }

    /// The names under `step/<index>/in/`, in file order (which is the method's input order).
    public func stepInputNames(_ index: Int) -> [String] {
        let prefix = "step/\(index)/in/"
        return tensors.names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// The reference run's starting state: init/x, init/y, init/cfg_scale.
    public func initialState() throws -> State {
        try State.of(x: get("init/x"), y: get("init/y"), cfgScale: get("init/cfg_scale"))
    }
}
