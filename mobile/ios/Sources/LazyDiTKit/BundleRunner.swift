import Foundation

/// Called after each step has written its outputs; used for progress and golden checks.
public typealias StepListener = (_ position: Int, _ step: StepSpec, _ state: State, _ nanos: UInt64) throws -> Void

/// One generated image with the time each step, the decode and the whole run took.
public struct RunResult {
    public let image: Tensor
    /// The state after decode: x, the cache slots still held, and the image.
    public let state: State
    let stepNanos: [UInt64]
    let decodeNanos: UInt64
    let totalNanos: UInt64

    public var stepMillis: [Double] { stepNanos.map { Double($0) / 1e6 } }
    public var decodeMillis: Double { Double(decodeNanos) / 1e6 }
    public var totalMillis: Double { Double(totalNanos) / 1e6 }
}

/// The whole runtime of docs/bundle.md: for each step, feed the method's inputs from the state or
/// the step's scalars, run it, write its outputs back; then decode x. No math happens here.
public final class BundleRunner {
    public let manifest: Manifest
    public let backend: Backend

    public init(manifest: Manifest, backend: Backend) {
        self.manifest = manifest
        self.backend = backend
    }

    /// Runs every step and decode on `state`, which is updated in place.
    public func run(_ state: State, listener: StepListener? = nil) throws -> RunResult {
        for slot in [State.x, State.y, State.cfgScale] {
            let spec = try manifest.slot(slot)
            let value = try state.get(slot)
            if value.dtype != spec.dtype || value.shape != spec.shape {
                throw BackendError("the starting \(slot) is \(value) but slot '\(slot)' is \(spec.dtype)\(spec.shape)")
            }
        }
        let start = now()
        var stepNanos: [UInt64] = []
        for (pos, step) in manifest.steps.enumerated() {
            let method = try manifest.method(step.method)
            let feed = try self.feed(method, step, state)
            let t0 = now()
            let outs = try backend.run(method: method.name, inputs: feed)
            stepNanos.append(now() - t0)
            try store(method, outs, state)
            try listener?(pos, step, state, stepNanos[pos])
        }
        let decode = try manifest.decodeMethod()
        let feed = try self.feed(decode, nil, state)
        let t0 = now()
        let outs = try backend.run(method: decode.name, inputs: feed)
        let decodeNanos = now() - t0
        try store(decode, outs, state)
        let image = try state.get(decode.outputs[0].target)
        return RunResult(image: image, state: state, stepNanos: stepNanos, decodeNanos: decodeNanos,
                         totalNanos: now() - start)
    }

    /// The method's inputs in order: slots from the state, anything else a float32 [1] step scalar.
    func feed(_ method: MethodSpec, _ step: StepSpec?, _ state: State) throws -> [Tensor] {
        try method.inputs.map { (input: MethodSpec.Input) throws -> Tensor in
            if manifest.isSlot(input.source) {
                return try state.get(input.source)
            }
            guard let value = step?.scalars[input.source] else {
                throw BackendError("no scalar '\(input.source)' for input '\(input.name)' of '\(method.name)'")
            }
            return Tensor.scalar(Float(value))
        }
    }

    private func store(_ method: MethodSpec, _ outs: [Tensor], _ state: State) throws {
        guard outs.count == method.outputs.count else {
            throw BackendError("method '\(method.name)' returned \(outs.count) tensors; "
                + "the manifest lists \(method.outputs.count) outputs")
        }
        for (o, value) in zip(method.outputs, outs) {
            let slot = try manifest.slot(o.target)
            guard value.hasSpec(dtype: slot.dtype, shape: slot.shape) else {
                throw BackendError("method '\(method.name)' output '\(o.name)' is \(value) but slot "
                    + "'\(slot.name)' is \(slot.description); "
                    + "the backend must convert outputs to the manifest's dtypes")
            }
            state.put(o.target, value)
        }
    }

    private func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
