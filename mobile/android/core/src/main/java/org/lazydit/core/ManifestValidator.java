package org.lazydit.core;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * The bundle contract's rules that JSON types cannot express: steps name existing methods, every
 * input's source is a slot or a scalar of each step that uses it, outputs land in declared slots,
 * a slot is written before it is read (so every cache slot is routed), and decode exists.
 */
final class ManifestValidator {
    private ManifestValidator() {}

    static List<String> problems(Manifest m) {
        List<String> problems = new ArrayList<>();
        if (!m.isSlot(State.X)) {
            problems.add("slots: no 'x' slot; the runtime needs its shape to make the initial noise");
        }
        for (MethodSpec method : m.methods().values()) {
            for (MethodSpec.Output o : method.outputs()) {
                if (!m.isSlot(o.target())) {
                    problems.add("method '" + method.name() + "' output '" + o.name() + "' targets '" + o.target()
                            + "', which is not a declared slot");
                }
            }
        }
        if (m.steps().isEmpty()) {
            problems.add("steps: empty; a bundle runs at least one step");
        }
        Set<String> written = new LinkedHashSet<>(List.of(State.X, State.Y, State.CFG_SCALE));
        for (int pos = 0; pos < m.steps().size(); pos++) {
            checkStep(m, pos, m.steps().get(pos), written, problems);
        }
        checkDecode(m, written, problems);
        checkNumbers(m, problems);
        com.google.gson.JsonElement sampler = m.json().get("sampler");
        if (sampler != null && sampler.isJsonObject() && sampler.getAsJsonObject().has("steps")) {
            com.google.gson.JsonElement steps = sampler.getAsJsonObject().get("steps");
            if (!steps.isJsonPrimitive() || !steps.getAsJsonPrimitive().isNumber()
                    || steps.getAsDouble() != m.steps().size()) {
                problems.add("sampler.steps is " + steps + " but the manifest lists " + m.steps().size() + " steps");
            }
        }
        return problems;
    }

    /** Scalars reach the graphs as float32; slot shapes must be tensors a phone can hold. */
    private static void checkNumbers(Manifest m, List<String> problems) {
        for (StepSpec step : m.steps()) {
            step.scalars().forEach((name, value) -> {
                if (!Double.isFinite(value) || Math.abs(value) > Float.MAX_VALUE) {
                    problems.add("steps[" + step.index() + "] scalar '" + name + "' = " + value
                            + " is not a finite float32");
                }
            });
        }
        for (SlotSpec slot : m.slots().values()) {
            double count = 1;
            for (long d : slot.shape()) {
                count *= d;
                if (d < 0) {
                    count = Double.NaN;
                }
            }
            if (!(count <= MAX_ELEMENTS)) {
                problems.add("slot '" + slot.name() + "' has shape " + java.util.Arrays.toString(slot.shape())
                        + ", not a tensor a runtime can hold");
            }
        }
    }

    private static final double MAX_ELEMENTS = 0x1p34;

    private static void checkStep(Manifest m, int pos, StepSpec step, Set<String> written, List<String> problems) {
        String where = "steps[" + pos + "] (index " + step.index() + ")";
        MethodSpec method = m.methods().get(step.method());
        if (method == null) {
            problems.add(where + " uses method '" + step.method() + "', which is not in methods "
                    + new TreeSet<>(m.methods().keySet()));
            return;
        }
        for (MethodSpec.Input in : method.inputs()) {
            String source = in.source();
            if (m.isSlot(source)) {
                if (!written.contains(source)) {
                    problems.add(where + " reads slot '" + source + "' (input '" + in.name() + "' of method '"
                            + method.name() + "') before any earlier step writes it");
                }
            } else if (!step.scalars().containsKey(source)) {
                problems.add(where + " feeds input '" + in.name() + "' of method '" + method.name() + "' from '"
                        + source + "', which is neither a slot nor one of the step's scalars "
                        + new TreeSet<>(step.scalars().keySet()));
            }
        }
        for (MethodSpec.Output o : method.outputs()) {
            written.add(o.target());
        }
    }

    private static void checkDecode(Manifest m, Set<String> written, List<String> problems) {
        MethodSpec decode = m.methods().get(m.decode());
        if (decode == null) {
            problems.add("decode names method '" + m.decode() + "', which is not in methods "
                    + new TreeSet<>(m.methods().keySet()));
            return;
        }
        if (decode.inputs().isEmpty() || decode.outputs().isEmpty()) {
            problems.add("decode method '" + decode.name() + "' must take the sample and return the image");
        }
        for (MethodSpec.Input in : decode.inputs()) {
            if (!m.isSlot(in.source()) || !written.contains(in.source())) {
                problems.add("decode method '" + decode.name() + "' input '" + in.name() + "' reads '" + in.source()
                        + "', which is not a slot holding a value after the last step");
            }
        }
    }
}
