package org.lazydit.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Names of the tensors in golden.lzt (docs/bundle.md) and typed access to them. */
public final class Golden {
    private final Map<String, Tensor> tensors;

    public Golden(Map<String, Tensor> tensors) {
        this.tensors = tensors;
    }

    public static String stepInput(int index, String name) {
        return "step/" + index + "/in/" + name;
    }

    public static String stepOutput(int index, String name) {
        return "step/" + index + "/out/" + name;
    }

    public static String decodeOutput(String name) {
        return "decode/out/" + name;
    }

    public Map<String, Tensor> tensors() {
        return tensors;
    }

    public Tensor get(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("golden.lzt has no tensor '" + name
                    + "'; it does not match this manifest, so re-export the bundle");
        }
        return t;
    }

    /** The names under {@code step/<index>/in/}, in file order (which is the method's input order). */
    public List<String> stepInputNames(int index) {
        String prefix = "step/" + index + "/in/";
        List<String> out = new ArrayList<>();
        for (String k : tensors.keySet()) {
            if (k.startsWith(prefix)) {
                out.add(k.substring(prefix.length()));
            }
        }
        return out;
    }

    /** The reference run's starting state: init/x, init/y, init/cfg_scale. */
    public State initialState() {
        return State.of(get("init/x"), get("init/y"), get("init/cfg_scale"));
    }
}
