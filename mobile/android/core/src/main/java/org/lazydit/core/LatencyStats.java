package org.lazydit.core;

import java.util.Arrays;
import java.util.List;

/** Summary statistics of latency samples, defined as ExecuTorch's minibench defines them. */
public final class LatencyStats {
    private LatencyStats() {}

    public static double mean(List<Double> samples) {
        requireSamples(samples);
        double sum = 0;
        for (double s : samples) {
            sum += s;
        }
        return sum / samples.size();
    }

    /**
     * minibench's trimmed mean: sort, keep indexes [n/10, 9n/10), average. With the default 10 runs
     * that drops exactly the fastest and the slowest run. Falls back to the mean when fewer than
     * two samples would be kept.
     */
    public static double trimmedMean(List<Double> samples) {
        double[] sorted = sorted(samples);
        int from = sorted.length / 10;
        int to = sorted.length * 9 / 10;
        if (to - from < 2) {
            return mean(samples);
        }
        double sum = 0;
        for (int i = from; i < to; i++) {
            sum += sorted[i];
        }
        return sum / (to - from);
    }

    public static double median(List<Double> samples) {
        return percentile(samples, 50);
    }

    public static double p90(List<Double> samples) {
        return percentile(samples, 90);
    }

    /** Linear interpolation between closest ranks, as numpy.percentile does by default. */
    public static double percentile(List<Double> samples, double q) {
        double[] sorted = sorted(samples);
        double rank = q / 100.0 * (sorted.length - 1);
        int lo = (int) Math.floor(rank);
        int hi = (int) Math.ceil(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    private static double[] sorted(List<Double> samples) {
        requireSamples(samples);
        double[] out = new double[samples.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = samples.get(i);
        }
        Arrays.sort(out);
        return out;
    }

    private static void requireSamples(List<Double> samples) {
        if (samples.isEmpty()) {
            throw new IllegalArgumentException("no latency samples; run the benchmark at least once");
        }
    }
}
