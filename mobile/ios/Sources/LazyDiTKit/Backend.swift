import Foundation

/// Something that can run a bundle's methods: Core ML, ExecuTorch, or a test double. It receives
/// tensors in the method's input order and returns them in its output order, converted back to the
/// dtypes the manifest declares for the target slots.
public protocol Backend: AnyObject {
    /// Short name used in reports ("coreml", "executorch").
    var name: String { get }

    /// Loads every method the manifest uses; timed as the model load time.
    func load(bundleDir: URL, manifest: Manifest) throws

    func run(method: String, inputs: [Tensor]) throws -> [Tensor]

    func close()
}

extension Manifest {
    /// Every method a run needs: the steps' and decode, each once.
    public var usedMethods: [String] {
        Array(Set(steps.map(\.method) + [decode])).sorted()
    }
}
