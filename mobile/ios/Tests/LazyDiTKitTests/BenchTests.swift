import XCTest
@testable import LazyDiTKit

final class BenchTests: XCTestCase {
    private let ten: [Double] = [12, 10, 11, 100, 13, 10.5, 11.5, 1, 12.5, 11]

    func testMedianInterpolatesBetweenTheMiddleSamples() throws {
        XCTAssertEqual(try LatencyStats.median(ten), 11.25, accuracy: 1e-12)
        XCTAssertEqual(try LatencyStats.median([3, 1, 2]), 2)
    }

    func testP90InterpolatesLikeNumpy() throws {
        // sorted: 1 10 10.5 11 11 11.5 12 12.5 13 100; rank 8.1 -> 13 + 0.1 * 87
        XCTAssertEqual(try LatencyStats.p90(ten), 21.7, accuracy: 1e-9)
    }

    func testTrimmedMeanOfTenRunsDropsTheFastestAndTheSlowest() throws {
        let middle: [Double] = [10, 10.5, 11, 11, 11.5, 12, 12.5, 13]
        XCTAssertEqual(try LatencyStats.trimmedMean(ten), middle.reduce(0, +) / 8, accuracy: 1e-12)
    }

    func testTrimmedMeanOfTwentyRunsDropsTwoOnEachSide() throws {
        XCTAssertEqual(try LatencyStats.trimmedMean((1...20).map { Double($0) }), (3 + 18) / 2, accuracy: 1e-12)
    }

    func testTrimmedMeanOfVeryFewRunsIsTheMean() throws {
        XCTAssertEqual(try LatencyStats.trimmedMean([1, 3]), 2)
    }

    func testStatisticsOfNoSamplesExplainWhatToDo() {
        XCTAssertThrowsError(try LatencyStats.mean([])) { error in
            XCTAssertTrue("\(error)".contains("run the benchmark at least once"))
        }
    }

    func testBenchRunsWarmupPlusTimedImagesAndAveragesEachStep() throws {
        let m = try FixtureBundle.manifest()
        let backend = ToyBackend()
        let start = State.initial(noise: try FixtureBundle.initialNoise(), label: 3, cfgScale: 1.5)
        let r = try Bench.run(BundleRunner(manifest: m, backend: backend), initial: start, warmup: 2, runs: 5)
        XCTAssertEqual(backend.calls, (2 + 5) * 4)
        XCTAssertEqual(r.imageMillis.count, 5)
        XCTAssertEqual(r.stepMeanMillis.count, 3)
        XCTAssertLessThanOrEqual(r.stepMeanMillis.reduce(r.decodeMeanMillis, +), try r.meanMillis() + 1e-9)
    }

    func testReportIsAListOfRecordsWithMinibenchAndLazyditMetrics() throws {
        let m = try FixtureBundle.manifest()
        let start = State.initial(noise: try FixtureBundle.initialNoise(), label: 3, cfgScale: 1.5)
        let r = try Bench.run(BundleRunner(manifest: m, backend: ToyBackend()), initial: start, warmup: 0, runs: 3)
        let record = BenchRecord(bundle: "toy", backend: "toy", device: "test", modelLoadMillis: 4.5, result: r,
                                 lazySteps: m.lazySteps, goldenPsnrDb: 99)
        let report = try JSONSerialization.jsonObject(with: BenchReport.toJSON([record])) as! [[String: Any]]
        XCTAssertEqual(report.count, 1)
        let o = report[0]
        for key in ["avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "model_load_time(ms)",
                    "median_latency(ms)", "p90_latency(ms)", "per_step_latency(ms)", "lazy_steps", "backend",
                    "bundle", "device"] {
            XCTAssertNotNil(o[key], "missing \(key)")
        }
        XCTAssertEqual(o["model_load_time(ms)"] as? Double, 4.5)
        XCTAssertEqual((o["per_step_latency(ms)"] as? [Double])?.count, 3)
        XCTAssertEqual(o["lazy_steps"] as? [Int], [1])
        XCTAssertEqual(o["device"] as? String, "test")
    }
}
