package org.lazydit.core;

/** One state slot declared in the manifest: its name, shape and dtype. */
public final class SlotSpec {
    private final String name;
    private final long[] shape;
    private final DType dtype;

    public SlotSpec(String name, long[] shape, DType dtype) {
        this.name = name;
        this.shape = shape.clone();
        this.dtype = dtype;
    }

    public String name() {
        return name;
    }

    public long[] shape() {
        return shape.clone();
    }

    public DType dtype() {
        return dtype;
    }

    public String describe() {
        return Tensor.describe(dtype, shape);
    }
}
