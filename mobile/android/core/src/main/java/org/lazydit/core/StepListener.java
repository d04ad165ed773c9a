package org.lazydit.core;

/** Called after each step has written its outputs; used for progress and golden checks. */
@FunctionalInterface
public interface StepListener {
    StepListener NONE = (position, step, state, nanos) -> {};

    void onStep(int position, StepSpec step, State state, long nanos);
}
