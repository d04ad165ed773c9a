import XCTest
@testable import LazyDiTKit

final class ManifestTests: XCTestCase {
    private func rejection(_ json: [String: Any], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try Manifest.parse(FixtureBundle.data(json))
            XCTFail("manifest was accepted", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    private func editStep(_ json: inout [String: Any], _ pos: Int, _ edit: (inout [String: Any]) -> Void) {
        var steps = json["steps"] as! [[String: Any]]
        edit(&steps[pos])
        json["steps"] = steps
    }

    func testFixtureManifestParsesWithStepsSlotsAndLazySteps() throws {
        let m = try FixtureBundle.manifest()
        XCTAssertEqual(m.steps.count, 3)
        XCTAssertEqual(m.steps[1].method, "step_lazy")
        XCTAssertEqual(m.lazySteps, [1])
        XCTAssertEqual(try m.slot("y").dtype, .int64)
        XCTAssertEqual(try m.decodeMethod().name, "decode")
        XCTAssertEqual(m.steps[1].scalars["t"], 500)
        XCTAssertEqual(m.golden?.label, 3)
    }

    func testStepNamingAnUnknownMethodIsRejected() {
        var json = FixtureBundle.manifestJSON()
        editStep(&json, 2) { $0["method"] = "step_missing" }
        let message = rejection(json)
        XCTAssertTrue(message.contains("steps[2] (index 2) uses method 'step_missing', which is not in methods"),
                      message)
    }

    func testInputFromAScalarTheStepLacksIsRejected() {
        var json = FixtureBundle.manifestJSON()
        editStep(&json, 1) { step in
            var scalars = step["scalars"] as! [String: Any]
            scalars["alpha"] = nil
            step["scalars"] = scalars
        }
        let message = rejection(json)
        XCTAssertTrue(message.contains("steps[1] (index 1) feeds input 'alpha' of method 'step_lazy' from 'alpha'"),
                      message)
        XCTAssertTrue(message.contains("neither a slot nor one of the step's scalars [alpha_prev, t]"), message)
    }

    func testDecodeNamingAMissingMethodIsRejected() {
        var json = FixtureBundle.manifestJSON()
        var methods = json["methods"] as! [String: Any]
        methods["decode"] = nil
        json["methods"] = methods
        XCTAssertTrue(rejection(json).contains("decode names method 'decode', which is not in methods"))
    }

    func testAbsentDecodeKeyIsRejectedByName() {
        var json = FixtureBundle.manifestJSON()
        json["decode"] = nil
        XCTAssertTrue(rejection(json).contains("manifest.decode: missing"))
    }

    func testCacheReadBeforeAnyStepWritesItIsRejected() {
        var json = FixtureBundle.manifestJSON()
        var methods = json["methods"] as! [String: Any]
        var full = methods["step_full"] as! [String: Any]
        full["outputs"] = [["name": "x_next", "target": "x"]]
        methods["step_full"] = full
        json["methods"] = methods
        let message = rejection(json)
        XCTAssertTrue(message.contains("steps[1] (index 1) reads slot 'cache:0.attn'"), message)
        XCTAssertTrue(message.contains("before any earlier step writes it"), message)
    }

    func testOutputToAnUndeclaredSlotIsRejected() {
        var json = FixtureBundle.manifestJSON()
        var slots = json["slots"] as! [String: Any]
        slots["cache:0.attn"] = nil
        json["slots"] = slots
        XCTAssertTrue(rejection(json).contains(
            "method 'step_full' output 'attn_0' targets 'cache:0.attn', which is not a declared slot"))
    }

    func testEveryProblemIsListedAtOnce() throws {
        var json = FixtureBundle.manifestJSON()
        editStep(&json, 0) { $0["method"] = "nope" }
        json["decode"] = "nope_decode"
        XCTAssertThrowsError(try Manifest.parse(FixtureBundle.data(json))) { error in
            XCTAssertEqual((error as? ManifestError)?.problems.count, 3, "\(error)")
        }
    }

    func testOtherFormatOrVersionIsRejected() {
        var json = FixtureBundle.manifestJSON()
        json["version"] = 2
        XCTAssertTrue(rejection(json).contains("this runtime reads version 1 only"))
    }

    func testMissingFieldIsNamedByItsPath() {
        var json = FixtureBundle.manifestJSON()
        editStep(&json, 0) { $0["method"] = nil }
        XCTAssertTrue(rejection(json).contains("manifest.steps[0].method: missing"))
    }

    func testUnknownSlotDtypeIsRejected() {
        var json = FixtureBundle.manifestJSON()
        var slots = json["slots"] as! [String: Any]
        slots["x"] = ["shape": [1], "dtype": "bfloat16"]
        json["slots"] = slots
        XCTAssertTrue(rejection(json).contains("manifest.slots.x.dtype"))
    }

    func testBrokenJSONIsRejected() {
        XCTAssertThrowsError(try Manifest.parse(Data("{\"format\": ".utf8)))
    }
}
