package org.lazydit.core;

import java.util.List;

/**
 * Runs a backend from the golden starting state and compares x after every step and the final
 * image with the reference, so any runtime on any device can prove it reproduces Python.
 */
public final class Verifier {
    /** Apple's ml-stable-diffusion gate: conversions under 35 dB are rejected. */
    public static final double DEFAULT_THRESHOLD_DB = 35.0;

    private Verifier() {}

    public static VerifyReport verify(BundleRunner runner, Golden golden) {
        return verify(runner, golden, DEFAULT_THRESHOLD_DB);
    }

    public static VerifyReport verify(BundleRunner runner, Golden golden, double thresholdDb) {
        Manifest manifest = runner.manifest();
        List<StepSpec> steps = manifest.steps();
        int[] indexes = new int[steps.size()];
        double[] psnr = new double[steps.size()];
        RunResult result = runner.run(golden.initialState(), (pos, step, state, nanos) -> {
            MethodSpec.Output xOut = manifest.method(step.method()).outputFor(State.X);
            indexes[pos] = step.index();
            psnr[pos] = xOut == null
                    ? Double.POSITIVE_INFINITY
                    : Psnr.of(state.get(State.X), golden.get(Golden.stepOutput(step.index(), xOut.name())));
        });
        String imageName = manifest.decodeMethod().outputs().get(0).name();
        double imagePsnr = Psnr.of(result.image(), golden.get(Golden.decodeOutput(imageName)));
        return new VerifyReport(indexes, psnr, imagePsnr, thresholdDb);
    }
}
