package org.lazydit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.util.List;
import org.junit.Test;

public class BenchTest {
    private static final List<Double> TEN = List.of(12.0, 10.0, 11.0, 100.0, 13.0, 10.5, 11.5, 1.0, 12.5, 11.0);

    private static State start() {
        return State.initial(FixtureBundle.initialNoise(), 3, 1.5f);
    }

    @Test
    public void medianInterpolatesBetweenTheMiddleSamples() {
        assertEquals(11.25, LatencyStats.median(TEN), 1e-12);
        assertEquals(2.0, LatencyStats.median(List.of(3.0, 1.0, 2.0)), 0);
    }

    @Test
    public void p90InterpolatesLikeNumpy() {
        // sorted: 1 10 10.5 11 11 11.5 12 12.5 13 100; rank 8.1 -> 13 + 0.1 * 87
        assertEquals(21.7, LatencyStats.p90(TEN), 1e-9);
    }

    @Test
    public void trimmedMeanOfTenRunsDropsTheFastestAndTheSlowest() {
        double expected = (10 + 10.5 + 11 + 11 + 11.5 + 12 + 12.5 + 13) / 8.0;
        assertEquals(expected, LatencyStats.trimmedMean(TEN), 1e-12);
    }

    @Test
    public void trimmedMeanOfTwentyRunsDropsTwoOnEachSide() {
        List<Double> twenty = new java.util.ArrayList<>();
        for (int i = 1; i <= 20; i++) {
            twenty.add((double) i);
        }
        assertEquals((3 + 18) / 2.0, LatencyStats.trimmedMean(twenty), 1e-12);
    }

    @Test
    public void trimmedMeanOfVeryFewRunsIsTheMean() {
        assertEquals(2.0, LatencyStats.trimmedMean(List.of(1.0, 3.0)), 0);
    }

    @Test
    public void statisticsOfNoSamplesExplainWhatToDo() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LatencyStats.mean(List.of()));
        assertTrue(e.getMessage().contains("run the benchmark at least once"));
    }

    @Test
    public void benchRunsWarmupPlusTimedImagesAndAveragesEachStep() throws Exception {
        Manifest m = FixtureBundle.manifest();
        ToyBackend backend = new ToyBackend();
        BenchResult r = Bench.run(new BundleRunner(m, backend), start(), 2, 5);
        assertEquals((2 + 5) * 4, backend.calls());
        assertEquals(5, r.imageMillis().size());
        assertEquals(3, r.stepMeanMillis().length);
        double stepsAndDecode = r.decodeMeanMillis();
        for (double s : r.stepMeanMillis()) {
            stepsAndDecode += s;
        }
        assertTrue(stepsAndDecode <= r.meanMillis() + 1e-9);
    }

    @Test
    public void reportIsAListOfRecordsWithMinibenchAndLazyditMetrics() throws Exception {
        Manifest m = FixtureBundle.manifest();
        BenchResult r = Bench.run(new BundleRunner(m, new ToyBackend()), start(), 0, 3);
        BenchRecord record = new BenchRecord("toy", "toy", "jvm", 4.5, r, m.lazySteps(), 99.0);
        JsonArray report = JsonParser.parseString(BenchReport.toJson(List.of(record))).getAsJsonArray();
        assertEquals(1, report.size());
        JsonObject o = report.get(0).getAsJsonObject();
        for (String key : List.of("avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "model_load_time(ms)",
                "median_latency(ms)", "p90_latency(ms)", "per_step_latency(ms)", "lazy_steps", "backend", "bundle",
                "device")) {
            assertTrue("missing " + key, o.has(key));
        }
        assertEquals(4.5, o.get("model_load_time(ms)").getAsDouble(), 0);
        assertEquals(3, o.getAsJsonArray("per_step_latency(ms)").size());
        assertEquals(1, o.getAsJsonArray("lazy_steps").get(0).getAsInt());
        assertEquals("jvm", o.get("device").getAsString());
    }
}
