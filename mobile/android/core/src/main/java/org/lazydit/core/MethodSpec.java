package org.lazydit.core;

import java.util.ArrayList;
import java.util.List;

/** A graph in the bundle: its inputs (each fed from a source) and outputs (each written to a target slot). */
public final class MethodSpec {
    /** An input named as in the graph, fed from a slot or a per-step scalar. */
    public static final class Input {
        private final String name;
        private final String source;

        public Input(String name, String source) {
            this.name = name;
            this.source = source;
        }

        public String name() {
            return name;
        }

        public String source() {
            return source;
        }
    }

    /** An output named as in the graph, written to a slot. */
    public static final class Output {
        private final String name;
        private final String target;

        public Output(String name, String target) {
            this.name = name;
            this.target = target;
        }

        public String name() {
            return name;
        }

        public String target() {
            return target;
        }
    }

    private final String name;
    private final List<Input> inputs;
    private final List<Output> outputs;

    public MethodSpec(String name, List<Input> inputs, List<Output> outputs) {
        this.name = name;
        this.inputs = List.copyOf(inputs);
        this.outputs = List.copyOf(outputs);
    }

    public String name() {
        return name;
    }

    public List<Input> inputs() {
        return inputs;
    }

    public List<Output> outputs() {
        return outputs;
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
