package org.lazydit.core;

/** One generated image with the time each step, the decode and the whole run took. */
public final class RunResult {
    private final Tensor image;
    private final State state;
    private final long[] stepNanos;
    private final long decodeNanos;
    private final long totalNanos;

    RunResult(Tensor image, State state, long[] stepNanos, long decodeNanos, long totalNanos) {
        this.image = image;
        this.state = state;
        this.stepNanos = stepNanos;
        this.decodeNanos = decodeNanos;
        this.totalNanos = totalNanos;
    }

    public Tensor image() {
        return image;
    }

    /** The state after decode: x, the cache slots still held, and the image. */
    public State state() {
        return state;
    }

    public double[] stepMillis() {
        double[] out = new double[stepNanos.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = stepNanos[i] / 1e6;
        }
        return out;
    }

    public double decodeMillis() {
        return decodeNanos / 1e6;
    }

    public double totalMillis() {
        return totalNanos / 1e6;
    }
}
