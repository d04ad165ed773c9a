package org.lazydit.core;

import java.util.ArrayList;
import java.util.List;

/** minibench's protocol: W untimed warm-up images, then N timed ones, each from the same start. */
public final class Bench {
    private Bench() {}

    public static BenchResult run(BundleRunner runner, State initial, int warmup, int runs) {
        if (warmup < 0 || runs < 1) {
            throw new IllegalArgumentException("need warmup >= 0 and runs >= 1, got " + warmup + " and " + runs);
        }
        for (int i = 0; i < warmup; i++) {
            runner.run(initial.copy());
        }
        int steps = runner.manifest().steps().size();
        double[] stepSum = new double[steps];
        double decodeSum = 0;
        List<Double> images = new ArrayList<>(runs);
        for (int i = 0; i < runs; i++) {
            RunResult r = runner.run(initial.copy());
            images.add(r.totalMillis());
            double[] perStep = r.stepMillis();
            for (int s = 0; s < steps; s++) {
                stepSum[s] += perStep[s];
            }
            decodeSum += r.decodeMillis();
        }
        for (int s = 0; s < steps; s++) {
            stepSum[s] /= runs;
        }
        return new BenchResult(images, stepSum, decodeSum / runs, warmup);
    }
}
