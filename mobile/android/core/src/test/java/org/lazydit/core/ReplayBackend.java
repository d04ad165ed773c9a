package org.lazydit.core;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * A backend that plays back golden.lzt: at step i it checks that every tensor it is fed equals
 * {@code step/<i>/in/<name>} (name, shape, dtype, values) and answers with {@code step/<i>/out/<name>}.
 * A loop that feeds the wrong slot, forgets a cache or skips a step fails here.
 */
final class ReplayBackend implements Backend {
    private final Golden golden;
    private Manifest manifest;
    private int position;
    private boolean decoded;
    private final Set<String> cacheSlotsFed = new LinkedHashSet<>();

    ReplayBackend(Golden golden) {
        this.golden = golden;
    }

    int stepsReplayed() {
        return position;
    }

    boolean decoded() {
        return decoded;
    }

    /** Every cache slot some step was fed from, in first-use order. */
    Set<String> cacheSlotsFed() {
        return cacheSlotsFed;
    }

    @Override
    public String name() {
        return "replay";
    }

    @Override
    public void load(Path bundleDir, Manifest manifest) {
        this.manifest = manifest;
        this.position = 0;
        this.decoded = false;
    }

    @Override
    public List<Tensor> run(String method, List<Tensor> inputs) {
        if (position == manifest.steps().size()) {
            return decode(method, inputs);
        }
        StepSpec step = manifest.steps().get(position);
        if (!step.method().equals(method)) {
            throw new AssertionError(
                    "step " + step.index() + " should run '" + step.method() + "', got '" + method + "'");
        }
        MethodSpec spec = manifest.method(method);
        List<String> goldenNames = golden.stepInputNames(step.index());
        if (!goldenNames.equals(spec.inputNames())) {
            throw new AssertionError("step " + step.index() + ": golden inputs " + goldenNames
                    + " differ from the method's inputs " + spec.inputNames());
        }
        if (inputs.size() != spec.inputs().size()) {
            throw new AssertionError("step " + step.index() + ": fed " + inputs.size() + " tensors, method '" + method
                    + "' takes " + spec.inputs().size());
        }
        for (int k = 0; k < inputs.size(); k++) {
            MethodSpec.Input in = spec.inputs().get(k);
            expectSame("step " + step.index() + " input '" + in.name() + "' (from '" + in.source() + "')",
                    golden.get(Golden.stepInput(step.index(), in.name())), inputs.get(k));
            if (State.isCache(in.source())) {
                cacheSlotsFed.add(in.source());
            }
        }
        List<Tensor> outs = new ArrayList<>();
        for (MethodSpec.Output o : spec.outputs()) {
            outs.add(golden.get(Golden.stepOutput(step.index(), o.name())));
        }
        position++;
        return outs;
    }

    private List<Tensor> decode(String method, List<Tensor> inputs) {
        if (!method.equals(manifest.decode()) || decoded) {
            throw new AssertionError(
                    "after the last step only one '" + manifest.decode() + "' may run, got '" + method + "'");
        }
        StepSpec last = manifest.steps().get(manifest.steps().size() - 1);
        MethodSpec.Output xOut = manifest.method(last.method()).outputFor(State.X);
        expectSame("decode input", golden.get(Golden.stepOutput(last.index(), xOut.name())), inputs.get(0));
        decoded = true;
        List<Tensor> outs = new ArrayList<>();
        for (MethodSpec.Output o : manifest.method(method).outputs()) {
            outs.add(golden.get(Golden.decodeOutput(o.name())));
        }
        return outs;
    }

    private static void expectSame(String what, Tensor expected, Tensor actual) {
        if (!actual.sameAs(expected)) {
            String detail = actual.hasSpec(expected.dtype(), expected.shape()) ? " in its values" : "";
            throw new AssertionError(
                    what + ": fed " + actual.describe() + " that differs from golden " + expected.describe() + detail);
        }
    }

    @Override
    public void close() {}
}
