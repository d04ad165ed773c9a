package org.lazydit.core;

import java.nio.file.Path;
import java.util.List;

/** Runs the fixture bundle's methods with {@link ToyModel}; optionally drifts at one step. */
final class ToyBackend implements Backend {
    private final int driftAtCall;
    private int calls;

    ToyBackend() {
        this(-1);
    }

    /** Adds 0.1 to x on the {@code driftAtCall}-th run call, like a backend with a numerics bug. */
    ToyBackend(int driftAtCall) {
        this.driftAtCall = driftAtCall;
    }

    int calls() {
        return calls;
    }

    @Override
    public String name() {
        return "toy";
    }

    @Override
    public void load(Path bundleDir, Manifest manifest) {}

    @Override
    public List<Tensor> run(String method, List<Tensor> in) {
        boolean drift = calls++ == driftAtCall;
        switch (method) {
            case "step_full": {
                float[][] out = ToyModel.full(in.get(0).toFloatArray(), in.get(1).toLongArray()[0], f(in.get(2)),
                        f(in.get(3)), f(in.get(4)));
                return List.of(x(out[0], drift), x(out[1], false));
            }
            case "step_lazy":
                return List.of(x(ToyModel.lazy(in.get(0).toFloatArray(), f(in.get(1)), f(in.get(2)), f(in.get(3)),
                        in.get(4).toFloatArray()), drift));
            case "step_last":
                return List.of(x(ToyModel.last(in.get(0).toFloatArray(), f(in.get(1)), f(in.get(2))), drift));
            case "decode":
                byte[] pixels = ToyModel.decode(in.get(0).toFloatArray());
                return List.of(Tensor.ofUnsignedBytes(pixels, FixtureBundle.IMAGE_SHAPE));
            default:
                throw new BackendException("toy backend has no method '" + method + "'");
        }
    }

    @Override
    public void close() {}

    private static float f(Tensor scalar) {
        return scalar.toFloatArray()[0];
    }

    private static Tensor x(float[] values, boolean drift) {
        if (drift) {
            for (int i = 0; i < values.length; i++) {
                values[i] += 0.1f;
            }
        }
        return Tensor.ofFloats(values, FixtureBundle.X_SHAPE);
    }
}
