import XCTest
@testable import LazyDiTKit

/// Records what it is fed and answers with zeros shaped like the target slots.
private class RecordingBackend: Backend {
    let name = "recording"
    let manifest: Manifest
    var methods: [String] = []
    var feeds: [[Tensor]] = []

    init(_ manifest: Manifest) { self.manifest = manifest }

    func load(bundleDir: URL, manifest: Manifest) throws {}

    func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
        methods.append(method)
        feeds.append(inputs)
        return try manifest.method(method).outputs.map { output in
            let slot = try manifest.slot(output.target)
            return try Tensor.zeros(slot.dtype, shape: slot.shape)
        }
    }

    func close() {}
}

final class BundleRunnerTests: XCTestCase {
    private func start() throws -> State {
        State.initial(noise: try FixtureBundle.initialNoise(), label: 3, cfgScale: 1.5)
    }

    func testRunsEveryStepMethodThenDecode() throws {
        let m = try FixtureBundle.manifest()
        let backend = RecordingBackend(m)
        let result = try BundleRunner(manifest: m, backend: backend).run(start())
        XCTAssertEqual(backend.methods, ["step_full", "step_lazy", "step_last", "decode"])
        XCTAssertEqual(result.stepMillis.count, 3)
        XCTAssertEqual(result.image.shape, FixtureBundle.imageShape)
    }

    func testStepScalarsAreFedAsFloat32OfShapeOne() throws {
        let m = try FixtureBundle.manifest()
        let backend = RecordingBackend(m)
        _ = try BundleRunner(manifest: m, backend: backend).run(start())
        XCTAssertEqual(backend.feeds[1][2], Tensor.scalar(500))
        XCTAssertEqual(backend.feeds[0][1], try Tensor(int64s: [3], shape: [1]))
    }

    func testSkippingStepIsFedTheCacheTheEarlierStepWrote() throws {
        final class CacheWriting: RecordingBackend {
            override func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
                let outs = try super.run(method: method, inputs: inputs)
                guard method == "step_full" else { return outs }
                return [outs[0], try Tensor(floats: [9, 8, 7, 6], shape: FixtureBundle.xShape)]
            }
        }
        let m = try FixtureBundle.manifest()
        let backend = CacheWriting(m)
        _ = try BundleRunner(manifest: m, backend: backend).run(start())
        XCTAssertEqual(try backend.feeds[1][4].floats(), [9, 8, 7, 6])
    }

    func testWrongNumberOfOutputsIsAnError() throws {
        final class Silent: RecordingBackend {
            override func run(method: String, inputs: [Tensor]) throws -> [Tensor] { [] }
        }
        let m = try FixtureBundle.manifest()
        XCTAssertThrowsError(try BundleRunner(manifest: m, backend: Silent(m)).run(start())) { error in
            XCTAssertEqual("\(error)", "method 'step_full' returned 0 tensors; the manifest lists 2 outputs")
        }
    }

    func testOutputWithAnotherDtypeThanItsSlotIsAnError() throws {
        final class Int32Image: RecordingBackend {
            override func run(method: String, inputs: [Tensor]) throws -> [Tensor] {
                let outs = try super.run(method: method, inputs: inputs)
                return method == "decode" ? [try Tensor.zeros(.int32, shape: [2, 2, 1])] : outs
            }
        }
        let m = try FixtureBundle.manifest()
        XCTAssertThrowsError(try BundleRunner(manifest: m, backend: Int32Image(m)).run(start())) { error in
            XCTAssertTrue("\(error)".contains("output 'image' is int32[2, 2, 1] but slot 'image' is uint8[2, 2, 1]"),
                          "\(error)")
        }
    }
}
