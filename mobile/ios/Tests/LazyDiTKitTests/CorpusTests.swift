import XCTest
@testable import LazyDiTKit

/// The bad-bundle corpus (tests/bad_bundles.py; LAZYDIT_CORPUS=DIR) through the package the way
/// the app opens a bundle: manifest, artifact digests, golden vectors, then the loop over a backend
/// that answers every method with tensors of its slots' specs. Every entry must be refused with a
/// thrown error (a program with a valid digest but a broken head included: `ProgramHeader`); prints
/// one line per entry for the results table.
final class CorpusTests: XCTestCase {
    private final class SlotShaped: Backend {
        var name: String { "slot-shaped" }
        private var manifest: Manifest?

        func load(bundleDir: URL, manifest: Manifest) throws { self.manifest = manifest }

        func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
            let m = manifest!
            return try m.method(method).outputs.map { out in
                let slot = try m.slot(out.target)
                return try Tensor.zeros(slot.dtype, shape: slot.shape)
            }
        }

        func close() {}
    }

    private func open(_ dir: URL) throws {
        let folder = try BundleFolder.open(dir)
        try folder.verifyArtifacts(format: "executorch")
        let golden = try folder.readGolden()
        let backend = SlotShaped()
        try backend.load(bundleDir: dir, manifest: folder.manifest)
        _ = try BundleRunner(manifest: folder.manifest, backend: backend).run(golden.initialState())
    }

    func testEveryBadBundleIsRefusedWithAMessage() throws {
        guard let path = ProcessInfo.processInfo.environment["LAZYDIT_CORPUS"], !path.isEmpty else {
            throw XCTSkip("no corpus given (set LAZYDIT_CORPUS=DIR)")
        }
        let root = URL(fileURLWithPath: path, isDirectory: true)
        let list = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("corpus.json")))
        let entries = list as? [[String: Any]] ?? []
        XCTAssertFalse(entries.isEmpty, "corpus.json lists no entries")
        var refused = 0
        for entry in entries {
            let name = entry["name"] as? String ?? "?"
            do {
                try open(root.appendingPathComponent(name, isDirectory: true))
                print("corpus \(name): accepted")
                XCTFail("\(name): accepted")
            } catch {
                refused += 1
                print("corpus \(name): refused: \("\(error)".replacingOccurrences(of: "\n", with: " "))")
            }
        }
        print("corpus: swift refused \(refused) of \(entries.count)")
    }
}
