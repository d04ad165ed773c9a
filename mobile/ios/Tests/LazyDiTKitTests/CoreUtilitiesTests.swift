import XCTest
@testable import LazyDiTKit

final class CoreUtilitiesTests: XCTestCase {
    func testSha256MatchesAKnownDigest() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: url) }
        try Data("abc".utf8).write(to: url)
        XCTAssertEqual(try BundleIntegrity.sha256(url),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testGoldenWithAnotherDigestThanTheManifestIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lazydit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FixtureBundle.write(dir)
        let golden = try FileHandle(forWritingTo: dir.appendingPathComponent("golden.lzt"))
        try golden.seekToEnd()
        try golden.write(contentsOf: Data([1, 2, 3]))
        try golden.close()
        XCTAssertThrowsError(try BundleFolder.open(dir).readGolden()) { error in
            XCTAssertTrue("\(error)".contains("golden.lzt: sha256"), "\(error)")
            XCTAssertTrue("\(error)".contains("Copy the whole bundle folder again."), "\(error)")
        }
    }

    func testMissingArtifactFormatSaysHowToGetIt() throws {
        XCTAssertThrowsError(try FixtureBundle.manifest().artifacts(format: "coreml")) { error in
            XCTAssertTrue("\(error)".contains("no 'coreml' artifacts"), "\(error)")
        }
    }

    func testNoiseIsSeededAndStandardNormal() throws {
        let shape = [1, 4, 50, 50]
        let a = try Noise.gaussian(shape: shape, seed: 42)
        XCTAssertEqual(a, try Noise.gaussian(shape: shape, seed: 42))
        let v = try a.floats().map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let variance = v.map { $0 * $0 }.reduce(0, +) / Double(v.count) - mean * mean
        XCTAssertEqual(mean, 0, accuracy: 0.05)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }

    func testNoiseMatchesThePinnedJavaSequence() throws {
        // The Java core pins the same numbers (CoreUtilitiesTest), so a seed means the same noise on both phones.
        let v = try Noise.gaussian(shape: [3], seed: 2024).floats()
        for (got, want) in zip(v, [Float(0.79718673), 0.5582685, 1.1585873]) {
            XCTAssertEqual(got, want, accuracy: 1e-6)
        }
    }

    func testChannelsFirstAndChannelsLastImagesGiveTheSamePixels() throws {
        let rgb = ImageSpec(height: 1, width: 2, channels: 3)
        let chw = try Tensor(uint8s: [10, 11, 20, 21, 30, 31], shape: [1, 3, 1, 2])
        let hwc = try Tensor(uint8s: [10, 20, 30, 11, 21, 31], shape: [1, 2, 3])
        XCTAssertEqual(try ImagePixels.of(chw, rgb).argb, try ImagePixels.of(hwc, rgb).argb)
        XCTAssertEqual(try ImagePixels.of(chw, rgb).argb[0], 0xff0a_141e)
    }

    func testGreyImageIsReplicatedToRgb() throws {
        let grey = ImageSpec(height: 1, width: 2, channels: 1)
        let px = try ImagePixels.of(try Tensor(uint8s: [200, 0], shape: [1, 1, 1, 2]), grey).argb
        XCTAssertEqual(px, [0xffc8_c8c8, 0xff00_0000])
    }

    func testPsnrOfIdenticalTensorsIsFiniteAndHigh() throws {
        let a = try Tensor(floats: [0.1, 0.2], shape: [2])
        let p = try Psnr.of(a, a)
        XCTAssertTrue(p.isFinite && p > 200)
        XCTAssertEqual(try Psnr.of(try Tensor(floats: [0.2, 0.3], shape: [2]), a), 20 * log10(2 / 0.1), accuracy: 1e-4)
    }
}
