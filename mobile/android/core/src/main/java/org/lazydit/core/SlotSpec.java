package org.lazydit.core;

import java.util.Arrays;
import java.util.Objects;

/**
 * One state slot declared in the manifest: its name, shape and dtype.
 *
 * <p>{@code shape} is an array, so the record copies it on the way in and out and compares it by
 * content: a record's generated accessor, equals and hashCode would share it and compare it by identity.
 */
public record SlotSpec(String name, long[] shape, DType dtype) {
    public SlotSpec {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public String describe() {
        return Tensor.describe(dtype, shape);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SlotSpec s
                && Objects.equals(name, s.name) && Arrays.equals(shape, s.shape) && dtype == s.dtype;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, Arrays.hashCode(shape), dtype);
    }

    @Override
    public String toString() {
        return "SlotSpec[name=" + name + ", shape=" + Arrays.toString(shape) + ", dtype=" + dtype + "]";
    }
}
