package org.lazydit.core;

/**
 * The arithmetic behind the hand-made fixture bundle: three step graphs and a decode small enough
 * to write twice (once as the reference that produces golden.lzt, once as a Backend).
 */
final class ToyModel {
    private ToyModel() {}

    /** step_full: fresh attention output (kept as the cache) and the updated sample. */
    static float[][] full(float[] x, long y, float cfg, float t, float alpha) {
        float[] attn = new float[x.length];
        float[] next = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            attn[i] = 0.5f * x[i] + 0.01f * y;
            next[i] = alpha * x[i] + (1 - alpha) * attn[i] * cfg + t * 1e-4f;
        }
        return new float[][] {next, attn};
    }

    /** step_lazy: the attention output is the cache instead of a fresh one. */
    static float[] lazy(float[] x, float cfg, float t, float alpha, float[] cachedAttn) {
        float[] next = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            next[i] = alpha * x[i] + (1 - alpha) * cachedAttn[i] * cfg + t * 1e-4f;
        }
        return next;
    }

    /** step_last: no attention at all. */
    static float[] last(float[] x, float t, float alpha) {
        float[] next = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            next[i] = alpha * x[i] + t * 1e-4f;
        }
        return next;
    }

    static byte[] decode(float[] x) {
        byte[] px = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            long v = Math.round((x[i] + 1) * 127.5);
            px[i] = (byte) Math.max(0, Math.min(255, v));
        }
        return px;
    }
}
