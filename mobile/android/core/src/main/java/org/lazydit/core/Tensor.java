package org.lazydit.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A dense row-major tensor in a direct little-endian buffer, so it can be handed to a native
 * runtime without copying. Tensors carry no name: the manifest names the slot they live in.
 * Treat them as values; nothing in the core writes into a tensor after creating it.
 */
public final class Tensor {
    private final DType dtype;
    private final long[] shape;
    private final ByteBuffer data;

    private Tensor(DType dtype, long[] shape, ByteBuffer data) {
        this.dtype = dtype;
        this.shape = shape;
        this.data = data;
    }

    /** A zero-filled tensor. */
    public static Tensor allocate(DType dtype, long... shape) {
        int nbytes = byteCount(dtype, shape);
        return new Tensor(dtype, shape.clone(), ByteBuffer.allocateDirect(nbytes).order(ByteOrder.LITTLE_ENDIAN));
    }

    /** Copies {@code bytes} (remaining bytes, little-endian row-major) into a new tensor. */
    public static Tensor fromBytes(DType dtype, long[] shape, ByteBuffer bytes) {
        int nbytes = byteCount(dtype, shape);
        if (bytes.remaining() != nbytes) {
            throw new IllegalArgumentException(
                    describe(dtype, shape) + " needs " + nbytes + " bytes, got " + bytes.remaining());
        }
        Tensor t = allocate(dtype, shape);
        t.data.put(bytes.duplicate());
        t.data.clear();
        return t;
    }

    public static Tensor ofFloats(float[] values, long... shape) {
        Tensor t = allocate(DType.FLOAT32, checkCount(values.length, shape));
        t.data.asFloatBuffer().put(values);
        return t;
    }

    public static Tensor ofLongs(long[] values, long... shape) {
        Tensor t = allocate(DType.INT64, checkCount(values.length, shape));
        t.data.asLongBuffer().put(values);
        return t;
    }

    public static Tensor ofInts(int[] values, long... shape) {
        Tensor t = allocate(DType.INT32, checkCount(values.length, shape));
        t.data.asIntBuffer().put(values);
        return t;
    }

    /** float16 values given as their IEEE binary16 bits (how ExecuTorch's Java API returns HALF). */
    public static Tensor ofHalfBits(short[] bits, long... shape) {
        Tensor t = allocate(DType.FLOAT16, checkCount(bits.length, shape));
        t.data.asShortBuffer().put(bits);
        return t;
    }

    /** uint8 values, stored as Java's signed bytes (0..255 read back with {@code & 0xff}). */
    public static Tensor ofUnsignedBytes(byte[] values, long... shape) {
        Tensor t = allocate(DType.UINT8, checkCount(values.length, shape));
        t.data.duplicate().put(values);
        return t;
    }

    /** A float32 tensor of shape [1]: how the manifest's per-step scalars and cfg_scale are fed. */
    public static Tensor scalar(float value) {
        return ofFloats(new float[] {value}, 1);
    }

    public DType dtype() {
        return dtype;
    }

    public long[] shape() {
        return shape.clone();
    }

    public int numel() {
        return byteCount(dtype, shape) / dtype.itemSize();
    }

    public int nbytes() {
        return data.capacity();
    }

    /** A read-only little-endian view of the data, positioned at 0. */
    public ByteBuffer data() {
        return data.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    public float[] toFloatArray() {
        requireDtype(DType.FLOAT32);
        float[] out = new float[numel()];
        data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    public long[] toLongArray() {
        requireDtype(DType.INT64);
        long[] out = new long[numel()];
        data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(out);
        return out;
    }

    public int[] toIntArray() {
        requireDtype(DType.INT32);
        int[] out = new int[numel()];
        data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(out);
        return out;
    }

    /** The raw bytes (for uint8, the pixel values). */
    public byte[] toByteArray() {
        byte[] out = new byte[nbytes()];
        data.duplicate().get(out);
        return out;
    }

    /** Element {@code i} widened to double, whatever the dtype (uint8 read as 0..255). */
    public double getDouble(int i) {
        int at = i * dtype.itemSize();
        switch (dtype) {
            case FLOAT32:
                return data.getFloat(at);
            case INT64:
                return data.getLong(at);
            case INT32:
                return data.getInt(at);
            case UINT8:
                return data.get(at) & 0xff;
            case FLOAT16:
                return halfToFloat(data.getShort(at));
            default:
                throw new AssertionError(dtype);
        }
    }

    /** IEEE 754 binary16 bits to float (subnormals, infinities and NaN included). */
    static float halfToFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h >>> 15) << 31;
        int exponent = (h >>> 10) & 0x1f;
        int mantissa = h & 0x3ff;
        if (exponent == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mantissa << 13));
        }
        if (exponent == 0) {
            float magnitude = mantissa * 0x1p-24f;
            return sign == 0 ? magnitude : -magnitude;
        }
        return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    /** Same dtype, same shape, same bytes. */
    public boolean sameAs(Tensor other) {
        return dtype == other.dtype && Arrays.equals(shape, other.shape) && data.equals(other.data);
    }

    public boolean hasSpec(DType dtype, long[] shape) {
        return this.dtype == dtype && Arrays.equals(this.shape, shape);
    }

    /** "float32[1, 4, 8, 8]". */
    public String describe() {
        return describe(dtype, shape);
    }

    @Override
    public String toString() {
        return describe();
    }

    static String describe(DType dtype, long[] shape) {
        return dtype.label() + Arrays.toString(shape);
    }

    private void requireDtype(DType wanted) {
        if (dtype != wanted) {
            throw new IllegalStateException("tensor is " + describe() + ", not " + wanted.label());
        }
    }

    private static int byteCount(DType dtype, long[] shape) {
        long count = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            }
            count = Math.multiplyExact(count, d);
        }
        long nbytes = Math.multiplyExact(count, (long) dtype.itemSize());
        if (nbytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(describe(dtype, shape) + " is larger than 2 GiB");
        }
        return (int) nbytes;
    }

    private static long[] checkCount(int count, long[] shape) {
        long expected = 1;
        for (long d : shape) {
            expected *= d;
        }
        if (expected != count) {
            throw new IllegalArgumentException(
                    "shape " + Arrays.toString(shape) + " holds " + expected + " values, got " + count);
        }
        return shape;
    }
}
