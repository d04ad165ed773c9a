package org.lazydit.core;

import java.util.Arrays;

/**
 * Peak signal-to-noise ratio as lazydit.metrics.psnr computes it: range 2 for float samples in
 * [-1, 1], 255 for uint8 images, MSE floored at 1e-20 so identical tensors give a finite number.
 */
public final class Psnr {
    private Psnr() {}

    public static double of(Tensor actual, Tensor expected) {
        if (actual.dtype() != expected.dtype() || !Arrays.equals(actual.shape(), expected.shape())) {
            throw new IllegalArgumentException(
                    "cannot compare " + actual.describe() + " with golden " + expected.describe());
        }
        double range = expected.dtype() == DType.UINT8 ? 255.0 : 2.0;
        int n = expected.numel();
        double sum = 0;
        for (int i = 0; i < n; i++) {
            double d = actual.getDouble(i) - expected.getDouble(i);
            sum += d * d;
        }
        double mse = n == 0 ? 0 : sum / n;
        return 10 * Math.log10(range * range / Math.max(mse, 1e-20));
    }
}
