import Foundation
import XCTest
@testable import LazyDiTKit

/// Runs the fixture bundle's methods with ToyModel; optionally drifts at one call.
final class ToyBackend: Backend {
    let name = "toy"
    private let driftAtCall: Int
    private(set) var calls = 0

    /// Adds 0.1 to x on the `driftAtCall`-th run call, like a backend with a numerics bug.
    init(driftAtCall: Int = -1) { self.driftAtCall = driftAtCall }

    func load(bundleDir: URL, manifest: Manifest) throws {}

    func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
        let drift = calls == driftAtCall
        calls += 1
        func f(_ i: Int) throws -> Float { try inputs[i].floats()[0] }
        func x(_ values: [Float], _ drift: Bool) throws -> Tensor {
            try Tensor(floats: drift ? values.map { $0 + 0.1 } : values, shape: FixtureBundle.xShape)
        }
        switch method {
        case "step_full":
            let out = ToyModel.full(try inputs[0].floats(), try inputs[1].int64s()[0], try f(2), try f(3), try f(4))
            return [try x(out.next, drift), try x(out.attn, false)]
        case "step_lazy":
            let next = ToyModel.lazy(try inputs[0].floats(), try f(1), try f(2), try f(3), try inputs[4].floats())
            return [try x(next, drift)]
        case "step_last":
            return [try x(ToyModel.last(try inputs[0].floats(), try f(1), try f(2)), drift)]
        case "decode":
            return [try Tensor(uint8s: ToyModel.decode(try inputs[0].floats()), shape: FixtureBundle.imageShape)]
        default:
            throw BackendError("toy backend has no method '\(method)'")
        }
    }

    func close() {}
}

/// Plays back golden.lzt: at step i it checks that every tensor it is fed equals
/// `step/<i>/in/<name>` (name, shape, dtype, values) and answers with `step/<i>/out/<name>`.
/// A loop that feeds the wrong slot, forgets a cache or skips a step fails here.
final class ReplayBackend: Backend {
    let name = "replay"
    private let golden: Golden
    private var manifest: Manifest?
    private(set) var stepsReplayed = 0
    private(set) var decoded = false
    /// Every cache slot some step was fed from.
    private(set) var cacheSlotsFed: Set<String> = []

    init(_ golden: Golden) { self.golden = golden }

    func load(bundleDir: URL, manifest: Manifest) throws {
        self.manifest = manifest
        stepsReplayed = 0
        decoded = false
    }

    func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
        guard let manifest else { throw BackendError("replay backend used before load()") }
        if stepsReplayed == manifest.steps.count {
            return try decode(manifest, method, inputs)
        }
        let step = manifest.steps[stepsReplayed]
        guard step.method == method else {
            throw BackendError("step \(step.index) should run '\(step.method)', got '\(method)'")
        }
        let spec = try manifest.method(method)
        let goldenNames = golden.stepInputNames(step.index)
        guard goldenNames == spec.inputNames else {
            throw BackendError("step \(step.index): golden inputs \(goldenNames) differ from the method's inputs "
                + "\(spec.inputNames)")
        }
        guard inputs.count == spec.inputs.count else {
            throw BackendError("step \(step.index): fed \(inputs.count) tensors, method '\(method)' takes "
                + "\(spec.inputs.count)")
        }
        for (input, fed) in zip(spec.inputs, inputs) {
            try expectSame("step \(step.index) input '\(input.name)' (from '\(input.source)')",
                           golden.get(Golden.stepInput(step.index, input.name)), fed)
            if State.isCache(input.source) {
                cacheSlotsFed.insert(input.source)
            }
        }
        stepsReplayed += 1
        return try spec.outputs.map { try golden.get(Golden.stepOutput(step.index, $0.name)) }
    }

    private func decode(_ manifest: Manifest, _ method: String, _ inputs: [Tensor]) throws -> [Tensor] {
        guard method == manifest.decode, !decoded else {
            throw BackendError("after the last step only one '\(manifest.decode)' may run, got '\(method)'")
        }
        let last = manifest.steps[manifest.steps.count - 1]
        guard let xOut = try manifest.method(last.method).output(for: State.x) else {
            throw BackendError("the last step writes no x")
        }
        try expectSame("decode input", golden.get(Golden.stepOutput(last.index, xOut.name)), inputs[0])
        decoded = true
        return try manifest.method(method).outputs.map { try golden.get(Golden.decodeOutput($0.name)) }
    }

    private func expectSame(_ what: String, _ expected: Tensor, _ actual: Tensor) throws {
        guard actual.sameAs(expected) else {
            let detail = actual.hasSpec(dtype: expected.dtype, shape: expected.shape) ? " in its values" : ""
            throw BackendError("\(what): fed \(actual) that differs from golden \(expected)\(detail)")
        }
    }

    func close() {}
}
