import XCTest
@testable import LazyDiTKit

/// The loop replayed against golden vectors: on the hand-made fixture always, and on a real
/// exported bundle when the LAZYDIT_BUNDLE environment variable names one.
final class ReplayTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lazydit-\(UUID().uuidString)/toy")
        try FixtureBundle.write(dir)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir.deletingLastPathComponent())
    }

    private func replay(_ bundleDir: URL) throws {
        let folder = try BundleFolder.open(bundleDir)
        let m = folder.manifest
        let golden = try folder.readGolden()
        let backend = ReplayBackend(golden)
        try backend.load(bundleDir: bundleDir, manifest: m)
        let result = try BundleRunner(manifest: m, backend: backend).run(golden.initialState())

        XCTAssertEqual(backend.stepsReplayed, m.steps.count, "steps replayed")
        XCTAssertTrue(backend.decoded, "decode ran")
        var cacheReads: Set<String> = []
        for step in m.steps {
            for input in try m.method(step.method).inputs where State.isCache(input.source) {
                cacheReads.insert(input.source)
            }
        }
        XCTAssertEqual(backend.cacheSlotsFed, cacheReads, "cache slots routed")
        let imageName = try m.decodeMethod().outputs[0].name
        XCTAssertEqual(result.image, try golden.get(Golden.decodeOutput(imageName)), "final image equals golden")
    }

    func testFixtureBundleReplaysEveryStepRoutesTheCacheAndEndsOnTheGoldenImage() throws {
        try replay(dir)
    }

    func testComputingBackendPassesTheGoldenCheck() throws {
        let folder = try BundleFolder.open(dir)
        let runner = BundleRunner(manifest: folder.manifest, backend: ToyBackend())
        let report = try Verifier.verify(runner, folder.readGolden())
        XCTAssertTrue(report.passed, report.summary)
        XCTAssertEqual(report.stepPsnrDb.count, 3)
    }

    func testBackendThatDriftsFailsTheGoldenCheckAtThatStep() throws {
        let folder = try BundleFolder.open(dir)
        let report = try Verifier.verify(BundleRunner(manifest: folder.manifest, backend: ToyBackend(driftAtCall: 1)),
                                         folder.readGolden())
        XCTAssertFalse(report.passed)
        XCTAssertTrue(report.failures[0].hasPrefix("step 1: x at"), report.summary)
        XCTAssertGreaterThan(report.stepPsnrDb[0], 100)
    }

    func testExportedBundleReplays() throws {
        guard let path = ProcessInfo.processInfo.environment["LAZYDIT_BUNDLE"], !path.isEmpty else {
            throw XCTSkip("no exported bundle given (set LAZYDIT_BUNDLE=DIR)")
        }
        let bundleDir = URL(fileURLWithPath: path, isDirectory: true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: bundleDir.appendingPathComponent(Manifest.fileName).path),
                      "\(path) is not a bundle folder")
        // The digests Python's hashlib wrote into the manifest, recomputed here (CryptoKit on Apple
        // platforms, the package's own SHA-256 elsewhere).
        let folder = try BundleFolder.open(bundleDir)
        XCTAssertFalse(folder.manifest.artifacts.isEmpty, "the bundle lists artifacts")
        for format in folder.manifest.artifacts.keys.sorted() {
            try folder.verifyArtifacts(format: format)
        }
        try replay(bundleDir)
    }
}
