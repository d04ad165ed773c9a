package org.lazydit.core;

import java.util.ArrayList;
import java.util.List;

/**
 * The whole runtime of docs/bundle.md: for each step, feed the method's inputs from the state or
 * the step's scalars, run it, write its outputs back; then decode x. No math happens here.
 */
public final class BundleRunner {
    private final Manifest manifest;
    private final Backend backend;

    public BundleRunner(Manifest manifest, Backend backend) {
        this.manifest = manifest;
        this.backend = backend;
    }

    public Manifest manifest() {
        return manifest;
    }

    public Backend backend() {
        return backend;
    }

    public RunResult run(State state) {
        return run(state, StepListener.NONE);
    }

    /** Runs every step and decode on {@code state}, which is updated in place. */
    public RunResult run(State state, StepListener listener) {
        for (String slot : List.of(State.X, State.Y, State.CFG_SCALE)) {
            SlotSpec spec = manifest.slot(slot);
            if (!state.get(slot).hasSpec(spec.dtype(), spec.shape())) {
                throw new IllegalArgumentException("the starting " + slot + " is " + state.get(slot).describe()
                        + " but slot '" + slot + "' is " + spec.describe());
            }
        }
        long start = System.nanoTime();
        List<StepSpec> steps = manifest.steps();
        long[] stepNanos = new long[steps.size()];
        for (int pos = 0; pos < steps.size(); pos++) {
            StepSpec step = steps.get(pos);
            MethodSpec method = manifest.method(step.method());
            List<Tensor> feed = feed(method, step, state);
            long t0 = System.nanoTime();
            List<Tensor> outs = backend.run(method.name(), feed);
            stepNanos[pos] = System.nanoTime() - t0;
            store(method, outs, state);
            listener.onStep(pos, step, state, stepNanos[pos]);
        }
        MethodSpec decode = manifest.decodeMethod();
        List<Tensor> feed = feed(decode, null, state);
        long t0 = System.nanoTime();
        List<Tensor> outs = backend.run(decode.name(), feed);
        long decodeNanos = System.nanoTime() - t0;
        store(decode, outs, state);
        Tensor image = state.get(decode.outputs().get(0).target());
        return new RunResult(image, state, stepNanos, decodeNanos, System.nanoTime() - start);
    }

    /** The method's inputs in order: slots from the state, anything else a float32 [1] step scalar. */
    List<Tensor> feed(MethodSpec method, StepSpec step, State state) {
        List<Tensor> feed = new ArrayList<>(method.inputs().size());
        for (MethodSpec.Input in : method.inputs()) {
            if (manifest.isSlot(in.source())) {
                feed.add(state.get(in.source()));
            } else {
                feed.add(Tensor.scalar(step.scalars().get(in.source()).floatValue()));
            }
        }
        return feed;
    }

    private void store(MethodSpec method, List<Tensor> outs, State state) {
        if (outs.size() != method.outputs().size()) {
            throw new BackendException("method '" + method.name() + "' returned " + outs.size()
                    + " tensors; the manifest lists " + method.outputs().size() + " outputs");
        }
        for (int i = 0; i < outs.size(); i++) {
            MethodSpec.Output o = method.outputs().get(i);
            SlotSpec slot = manifest.slot(o.target());
            Tensor value = outs.get(i);
            if (!value.hasSpec(slot.dtype(), slot.shape())) {
                throw new BackendException("method '" + method.name() + "' output '" + o.name() + "' is "
                        + value.describe() + " but slot '" + slot.name() + "' is " + slot.describe()
                        + "; the backend must convert outputs to the manifest's dtypes");
            }
            state.put(o.target(), value);
        }
    }
}
