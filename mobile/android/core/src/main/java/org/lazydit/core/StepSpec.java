package org.lazydit.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** One denoising step: which method runs, with which per-step scalars, and how lazy it is. */
public final class StepSpec {
    private final int index;
    private final String method;
    private final Map<String, Double> scalars;
    private final int computedModules;
    private final int skippedModules;

    public StepSpec(int index, String method, Map<String, Double> scalars, int computedModules, int skippedModules) {
        this.index = index;
        this.method = method;
        this.scalars = Collections.unmodifiableMap(new LinkedHashMap<>(scalars));
        this.computedModules = computedModules;
        this.skippedModules = skippedModules;
    }

    /** The step number used in golden tensor names ({@code step/<index>/...}). */
    public int index() {
        return index;
    }

    public String method() {
        return method;
    }

    public Map<String, Double> scalars() {
        return scalars;
    }

    public int computedModules() {
        return computedModules;
    }

    public int skippedModules() {
        return skippedModules;
    }

    /** True when the plan reuses or forecasts at least one module at this step. */
    public boolean isLazy() {
        return skippedModules > 0;
    }
}
