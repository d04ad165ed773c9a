import XCTest
@testable import LazyDiTKit

/// Bundle digests: FIPS 180-4's example messages, and a file whose digest changes with one byte.
final class IntegrityTests: XCTestCase {
    private func digest(_ text: String) -> String {
        var hasher = Sha256()
        hasher.update(data: Data(text.utf8))
        return hasher.hexDigest()
    }

    func testSha256MatchesTheStandardsExampleDigests() {
        XCTAssertEqual(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertNotEqual(digest("abd"), digest("abc"))
    }

    func testSha256OfDataFedInPiecesEqualsItInOneGo() {
        let text = String(repeating: "a", count: 1_000_000)
        var pieces = Sha256()
        for chunk in stride(from: 0, to: text.utf8.count, by: 4099) {
            pieces.update(data: Data(Array(text.utf8)[chunk..<min(chunk + 4099, text.utf8.count)]))
        }
        XCTAssertEqual(pieces.hexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testFileDigestChangesWithOneByte() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lazydit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("golden.lzt")
        try Data("abc".utf8).write(to: file)
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        XCTAssertEqual(try BundleIntegrity.check(bundleDir: dir, path: "golden.lzt", expectedSha256: good), [])
        try Data("abd".utf8).write(to: file)
        let problems = try BundleIntegrity.check(bundleDir: dir, path: "golden.lzt", expectedSha256: good)
        XCTAssertEqual(problems.count, 1)
        XCTAssertTrue(problems[0].hasPrefix("golden.lzt: sha256 "), problems[0])
    }

    /// A program head as ExecuTorch writes it: root offset, "ET12", then the "eh00" extended header.
    private func programHead(programSize: UInt64, segmentBase: UInt64, segmentData: UInt64, length: Int) -> Data {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var bytes = le(UInt32(0)) + Array("ET12eh00".utf8) + le(UInt32(32))
        bytes += le(programSize) + le(segmentBase) + le(segmentData)
        return Data(bytes + [UInt8](repeating: 0, count: length - bytes.count))
    }

    func testProgramHeadMustFitTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lazydit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let whole = dir.appendingPathComponent("whole.pte")
        try programHead(programSize: 48, segmentBase: 64, segmentData: 36, length: 100).write(to: whole)
        XCTAssertNil(try ProgramHeader.problem(whole, path: "whole.pte"))
        let cut = dir.appendingPathComponent("cut.pte")
        try programHead(programSize: 48, segmentBase: 64, segmentData: 36, length: 100).prefix(80).write(to: cut)
        let message = try ProgramHeader.problem(cut, path: "cut.pte") ?? ""
        XCTAssertTrue(message.contains("80 bytes, but its header says the program spans 100"), message)
        let text = dir.appendingPathComponent("text.pte")
        try Data("{\"version\": 3, \"steps\": []}".utf8).write(to: text)
        XCTAssertTrue((try ProgramHeader.problem(text, path: "text.pte") ?? "").contains("not an ExecuTorch program"))
        let empty = dir.appendingPathComponent("empty.pte")
        try Data().write(to: empty)
        XCTAssertTrue((try ProgramHeader.problem(empty, path: "empty.pte") ?? "").contains("not an ExecuTorch program"))
        // the digest check lets a recorded digest through; the head check still refuses the program
        let problems = try BundleIntegrity.check(bundleDir: dir, path: "cut.pte", expectedSha256: BundleIntegrity.sha256(cut))
        XCTAssertEqual(problems.count, 1)
        XCTAssertTrue(problems.first?.contains("cut short") == true, "\(problems)")
    }
}
