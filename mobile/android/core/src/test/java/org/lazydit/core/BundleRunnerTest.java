package org.lazydit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.Test;

public class BundleRunnerTest {
    /** Records what it is fed and answers with zeros shaped like the target slots. */
    private static class RecordingBackend implements Backend {
        private final Manifest manifest;
        final List<String> methods = new ArrayList<>();
        final List<List<Tensor>> feeds = new ArrayList<>();

        RecordingBackend(Manifest manifest) {
            this.manifest = manifest;
        }

        @Override
        public String name() {
            return "recording";
        }

        @Override
        public void load(Path bundleDir, Manifest manifest) {}

        @Override
        public List<Tensor> run(String method, List<Tensor> inputs) {
            methods.add(method);
            feeds.add(inputs);
            List<Tensor> outs = new ArrayList<>();
            for (MethodSpec.Output o : manifest.method(method).outputs()) {
                SlotSpec s = manifest.slot(o.target());
                outs.add(Tensor.allocate(s.dtype(), s.shape()));
            }
            return outs;
        }

        @Override
        public void close() {}
    }

    @Test
    public void runsEveryStepMethodThenDecode() throws Exception {
        Manifest m = FixtureBundle.manifest();
        RecordingBackend b = new RecordingBackend(m);
        RunResult r = new BundleRunner(m, b).run(State.initial(FixtureBundle.initialNoise(), 3, 1.5f));
        assertEquals(List.of("step_full", "step_lazy", "step_last", "decode"), b.methods);
        assertEquals(3, r.stepMillis().length);
        assertArrayEquals(FixtureBundle.IMAGE_SHAPE, r.image().shape());
    }

    @Test
    public void stepScalarsAreFedAsFloat32OfShapeOne() throws Exception {
        Manifest m = FixtureBundle.manifest();
        RecordingBackend b = new RecordingBackend(m);
        new BundleRunner(m, b).run(State.initial(FixtureBundle.initialNoise(), 3, 1.5f));
        Tensor t = b.feeds.get(1).get(2);
        assertTrue(t.sameAs(Tensor.scalar(500f)));
        Tensor y = b.feeds.get(0).get(1);
        assertTrue(y.sameAs(Tensor.ofLongs(new long[] {3}, 1)));
    }

    @Test
    public void skippingStepIsFedTheCacheTheEarlierStepWrote() throws Exception {
        Manifest m = FixtureBundle.manifest();
        RecordingBackend b = new RecordingBackend(m) {
            @Override
            public List<Tensor> run(String method, List<Tensor> inputs) {
                List<Tensor> outs = super.run(method, inputs);
                if (method.equals("step_full")) {
                    return List.of(outs.get(0), Tensor.ofFloats(new float[] {9, 8, 7, 6}, FixtureBundle.X_SHAPE));
                }
                return outs;
            }
        };
        new BundleRunner(m, b).run(State.initial(FixtureBundle.initialNoise(), 3, 1.5f));
        assertArrayEquals(new float[] {9, 8, 7, 6}, b.feeds.get(1).get(4).toFloatArray(), 0f);
    }

    @Test
    public void wrongNumberOfOutputsIsAnError() throws Exception {
        Manifest m = FixtureBundle.manifest();
        Backend b = new RecordingBackend(m) {
            @Override
            public List<Tensor> run(String method, List<Tensor> inputs) {
                return List.of();
            }
        };
        BackendException e = assertThrows(BackendException.class,
                () -> new BundleRunner(m, b).run(State.initial(FixtureBundle.initialNoise(), 3, 1.5f)));
        assertEquals("method 'step_full' returned 0 tensors; the manifest lists 2 outputs", e.getMessage());
    }

    @Test
    public void outputWithAnotherDtypeThanItsSlotIsAnError() throws Exception {
        Manifest m = FixtureBundle.manifest();
        Backend b = new RecordingBackend(m) {
            @Override
            public List<Tensor> run(String method, List<Tensor> inputs) {
                List<Tensor> outs = super.run(method, inputs);
                return method.equals("decode") ? List.of(Tensor.allocate(DType.INT32, 2, 2, 1)) : outs;
            }
        };
        BackendException e = assertThrows(BackendException.class,
                () -> new BundleRunner(m, b).run(State.initial(FixtureBundle.initialNoise(), 3, 1.5f)));
        assertTrue(e.getMessage(),
                e.getMessage().contains("output 'image' is int32[2, 2, 1] but slot 'image' is uint8[2, 2, 1]"));
    }
}
