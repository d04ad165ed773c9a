import XCTest
@testable import LazyDiTKit

final class TensorFileTests: XCTestCase {
    private func sample() throws -> NamedTensors {
        var m = NamedTensors()
        m.set("step/0/in/x", try Tensor(floats: [1.5, -2, 3.25, 0, 1e-7, -0.0], shape: [1, 2, 3]))
        m.set("init/y", try Tensor(int64s: [Int64.max], shape: [1]))
        m.set("decode/out/image", try Tensor(uint8s: [0, 255, 128, 7], shape: [2, 2, 1]))
        m.set("counts", try Tensor(int32s: [-1, 2], shape: [2]))
        m.set("scalar", try Tensor.zeros(.float32, shape: []))
        return m
    }

    private func temporaryFile() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".lzt")
    }

    func testRoundTripKeepsOrderDtypesShapesAndValues() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        let written = try sample()
        try TensorFile.write(url, written)
        let read = try TensorFile.read(url)
        XCTAssertEqual(read.names, written.names)
        for name in written.names {
            XCTAssertEqual(read[name], written[name], name)
        }
        XCTAssertEqual(read["decode/out/image"]?.bytes()[1], 255)
        XCTAssertEqual(read["scalar"]?.shape, [])
    }

    func testReadsTheLayoutThePythonWriterProduces() throws {
        var bytes = Data("LZT1".utf8)
        bytes.appendLE(UInt32(1))
        let name = Data("init/x".utf8)
        bytes.appendLE(UInt32(name.count))
        bytes.append(name)
        bytes.append(0)
        bytes.appendLE(UInt32(2))
        bytes.appendLE(UInt64(1))
        bytes.appendLE(UInt64(2))
        bytes.appendLE(UInt64(8))
        bytes.appendLE(Float(0.5).bitPattern)
        bytes.appendLE(Float(-1).bitPattern)
        let x = try XCTUnwrap(TensorFile.read(bytes, source: "handmade")["init/x"])
        XCTAssertEqual(x.shape, [1, 2])
        XCTAssertEqual(try x.floats(), [0.5, -1])
    }

    func testTruncatedFileNamesTheTensorItStoppedIn() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try TensorFile.write(url, sample())
        let all = try Data(contentsOf: url)
        XCTAssertThrowsError(try TensorFile.read(all.prefix(all.count - 3), source: "cut.lzt")) { error in
            XCTAssertEqual("\(error)", "cut.lzt: truncated inside tensor 'scalar'")
        }
        XCTAssertThrowsError(try TensorFile.read(all.prefix(30), source: "early.lzt")) { error in
            XCTAssertTrue("\(error)".hasPrefix("early.lzt: truncated inside tensor"), "\(error)")
        }
    }

    func testBadMagicIsRejected() {
        XCTAssertThrowsError(try TensorFile.read(Data("NOPE0000".utf8), source: "x.lzt")) { error in
            XCTAssertEqual("\(error)", "x.lzt: not a lazydit tensor file (bad magic)")
        }
    }

    func testUnknownDtypeCodeIsRejected() throws {
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        var one = NamedTensors()
        one.set("a", try Tensor(int32s: [1], shape: [1]))
        try TensorFile.write(url, one)
        var all = try Data(contentsOf: url)
        all[4 + 4 + 4 + 1] = 9
        XCTAssertThrowsError(try TensorFile.read(all, source: "d.lzt")) { error in
            XCTAssertTrue("\(error)".contains("tensor 'a' has unknown dtype code 9"), "\(error)")
        }
    }
}
