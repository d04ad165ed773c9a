package org.lazydit.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One denoising step: which method runs, with which per-step scalars, and how lazy it is.
 *
 * @param index the step number used in golden tensor names ({@code step/<index>/...})
 */
public record StepSpec(int index, String method, Map<String, Double> scalars, int computedModules,
        int skippedModules) {
    public StepSpec {
        scalars = Collections.unmodifiableMap(new LinkedHashMap<>(scalars));
    }

    /** True when the plan reuses or forecasts at least one module at this step. */
    public boolean isLazy() {
        return skippedModules > 0;
    }
}
