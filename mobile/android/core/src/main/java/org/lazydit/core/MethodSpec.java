package org.lazydit.core;

import java.util.ArrayList;
import java.util.List;

/** A graph in the bundle: its inputs (each fed from a source) and outputs (each written to a target slot). */
public record MethodSpec(String name, List<Input> inputs, List<Output> outputs) {
    /** An input named as in the graph, fed from a slot or a per-step scalar. */
    public record Input(String name, String source) {}

    /** An output named as in the graph, written to a slot. */
    public record Output(String name, String target) {}

    public MethodSpec {
        inputs = List.copyOf(inputs);
        outputs = List.copyOf(outputs);
    }

    /** The output written to {@code slot}, or null if this method does not write it. */
    public Output outputFor(String slot) {
        for (Output o : outputs) {
            if (o.target().equals(slot)) {
                return o;
            }
        }
        return null;
    }

    public List<String> inputNames() {
        List<String> names = new ArrayList<>();
        for (Input i : inputs) {
            names.add(i.name());
        }
        return names;
    }
}
