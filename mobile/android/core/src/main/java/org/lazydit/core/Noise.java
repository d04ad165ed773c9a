package org.lazydit.core;

/**
 * Standard-normal noise from SplitMix64 and Box-Muller: a generator small enough to write the same
 * way in Swift, so a seed gives the same starting noise on Android and iOS.
 */
public final class Noise {
    private static final double TWO_POW_53 = 9007199254740992.0;

    private long state;

    public Noise(long seed) {
        this.state = seed;
    }

    public static Tensor gaussian(long[] shape, long seed) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        Noise rng = new Noise(seed);
        float[] values = new float[Math.toIntExact(n)];
        for (int i = 0; i < values.length; i += 2) {
            double u1 = rng.nextUnit();
            double u2 = rng.nextUnit();
            double r = Math.sqrt(-2.0 * Math.log(u1));
            values[i] = (float) (r * Math.cos(2.0 * Math.PI * u2));
            if (i + 1 < values.length) {
                values[i + 1] = (float) (r * Math.sin(2.0 * Math.PI * u2));
            }
        }
        return Tensor.ofFloats(values, shape);
    }

    public long nextLong() {
        state += 0x9E3779B97F4A7C15L;
        long z = state;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** Uniform in (0, 1]: never 0, so log() stays finite. */
    public double nextUnit() {
        return ((nextLong() >>> 11) + 1) / TWO_POW_53;
    }
}
