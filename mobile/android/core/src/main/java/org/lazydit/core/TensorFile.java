package org.lazydit.core;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reader and writer of the bundle's tensor file ({@code .lzt}), byte for byte the layout of
 * {@code lazydit/runtime/tensorfile.py}:
 *
 * <pre>
 * magic "LZT1", count u32, then per tensor:
 *   name_len u32, name UTF-8, dtype u8, ndim u32, dims u64 x ndim, nbytes u64, data
 * </pre>
 *
 * All little-endian. Tensors keep file order.
 */
public final class TensorFile {
    private static final byte[] MAGIC = {'L', 'Z', 'T', '1'};

    private TensorFile() {}

    public static Map<String, Tensor> read(Path path) throws IOException {
        return read(ByteBuffer.wrap(Files.readAllBytes(path)), path.toString());
    }

    /** Parses a whole file held in {@code buf}; {@code source} names it in error messages. */
    public static Map<String, Tensor> read(ByteBuffer buf, String source) throws TensorFileException {
        ByteBuffer in = buf.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        byte[] magic = new byte[MAGIC.length];
        if (in.remaining() < MAGIC.length) {
            throw new TensorFileException(source + ": not a lazydit tensor file (shorter than its magic)");
        }
        in.get(magic);
        if (!java.util.Arrays.equals(magic, MAGIC)) {
            throw new TensorFileException(source + ": not a lazydit tensor file (bad magic)");
        }
        Map<String, Tensor> out = new LinkedHashMap<>();
        String current = "<header>";
        try {
            long count = Integer.toUnsignedLong(in.getInt());
            for (long k = 0; k < count; k++) {
                current = "#" + k;
                byte[] name = new byte[checkedSize(in.getInt() & 0xffffffffL, in, source, current)];
                in.get(name);
                current = new String(name, StandardCharsets.UTF_8);
                int code = in.get() & 0xff;
                int ndim = checkedSize(in.getInt() & 0xffffffffL, in, source, current);
                long[] shape = new long[ndim];
                for (int d = 0; d < ndim; d++) {
                    shape[d] = in.getLong();
                }
                long nbytes = in.getLong();
                DType dtype = dtypeOf(code, source, current);
                int size = checkedSize(nbytes, in, source, current);
                ByteBuffer slice = in.slice();
                slice.limit(size);
                in.position(in.position() + size);
                out.put(current, tensorOf(dtype, shape, slice, source, current));
            }
        } catch (BufferUnderflowException e) {
            throw new TensorFileException(source + ": truncated inside tensor '" + current + "'");
        }
        return out;
    }

    public static void write(Path path, Map<String, Tensor> tensors) throws IOException {
        try (OutputStream out = Files.newOutputStream(path)) {
            out.write(MAGIC);
            out.write(le(4).putInt(tensors.size()).array());
            for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
                writeOne(out, e.getKey(), e.getValue());
            }
        }
    }

    private static void writeOne(OutputStream out, String name, Tensor t) throws IOException {
        byte[] raw = name.getBytes(StandardCharsets.UTF_8);
        long[] shape = t.shape();
        ByteBuffer head = le(4 + raw.length + 1 + 4 + 8 * shape.length + 8);
        head.putInt(raw.length).put(raw).put((byte) t.dtype().code()).putInt(shape.length);
        for (long d : shape) {
            head.putLong(d);
        }
        head.putLong(t.nbytes());
        out.write(head.array());
        out.write(t.toByteArray());
    }

    private static ByteBuffer le(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static int checkedSize(long size, ByteBuffer in, String source, String tensor)
            throws TensorFileException {
        if (size > in.remaining()) {
            throw new TensorFileException(source + ": truncated inside tensor '" + tensor + "'");
        }
        return (int) size;
    }

    private static DType dtypeOf(int code, String source, String tensor) throws TensorFileException {
        try {
            return DType.fromCode(code);
        } catch (IllegalArgumentException e) {
            throw new TensorFileException(source + ": tensor '" + tensor + "' has " + e.getMessage());
        }
    }

    private static Tensor tensorOf(DType dtype, long[] shape, ByteBuffer bytes, String source, String tensor)
            throws TensorFileException {
        try {
            return Tensor.fromBytes(dtype, shape, bytes);
        } catch (IllegalArgumentException | ArithmeticException e) {
            throw new TensorFileException(source + ": tensor '" + tensor + "' is inconsistent: " + e.getMessage());
        }
    }
}
