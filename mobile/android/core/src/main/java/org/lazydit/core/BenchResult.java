package org.lazydit.core;

import java.util.List;

/** Latencies of the timed runs of a {@link Bench}: per image, and mean per step. */
public final class BenchResult {
    private final List<Double> imageMillis;
    private final double[] stepMeanMillis;
    private final double decodeMeanMillis;
    private final int warmup;

    BenchResult(List<Double> imageMillis, double[] stepMeanMillis, double decodeMeanMillis, int warmup) {
        this.imageMillis = List.copyOf(imageMillis);
        this.stepMeanMillis = stepMeanMillis;
        this.decodeMeanMillis = decodeMeanMillis;
        this.warmup = warmup;
    }

    /** End-to-end latency of each timed image (all steps + decode), in run order. */
    public List<Double> imageMillis() {
        return imageMillis;
    }

    public double[] stepMeanMillis() {
        return stepMeanMillis.clone();
    }

    public double decodeMeanMillis() {
        return decodeMeanMillis;
    }

    public int runs() {
        return imageMillis.size();
    }

    public int warmup() {
        return warmup;
    }

    public double meanMillis() {
        return LatencyStats.mean(imageMillis);
    }

    public double trimmedMeanMillis() {
        return LatencyStats.trimmedMean(imageMillis);
    }

    public double medianMillis() {
        return LatencyStats.median(imageMillis);
    }

    public double p90Millis() {
        return LatencyStats.p90(imageMillis);
    }
}
