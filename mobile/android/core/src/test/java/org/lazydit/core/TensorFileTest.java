package org.lazydit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class TensorFileTest {
    @Rule public TemporaryFolder tmp = new TemporaryFolder();

    private static Map<String, Tensor> sample() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("step/0/in/x", Tensor.ofFloats(new float[] {1.5f, -2f, 3.25f, 0f, 1e-7f, -0f}, 1, 2, 3));
        m.put("init/y", Tensor.ofLongs(new long[] {Long.MAX_VALUE}, 1));
        m.put("decode/out/image", Tensor.ofUnsignedBytes(new byte[] {0, (byte) 255, (byte) 128, 7}, 2, 2, 1));
        m.put("counts", Tensor.ofInts(new int[] {-1, 2}, 2));
        m.put("scalar", Tensor.allocate(DType.FLOAT32));
        return m;
    }

    @Test
    public void roundTripKeepsOrderDtypesShapesAndValues() throws Exception {
        Path file = tmp.getRoot().toPath().resolve("t.lzt");
        Map<String, Tensor> written = sample();
        TensorFile.write(file, written);
        Map<String, Tensor> read = TensorFile.read(file);
        assertEquals(List.copyOf(written.keySet()), List.copyOf(read.keySet()));
        for (String name : written.keySet()) {
            assertTrue(name, written.get(name).sameAs(read.get(name)));
        }
        assertEquals(255, read.get("decode/out/image").toByteArray()[1] & 0xff);
        assertArrayEquals(new long[] {}, read.get("scalar").shape());
    }

    @Test
    public void readsTheLayoutThePythonWriterProduces() throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write("LZT1".getBytes(StandardCharsets.US_ASCII));
        byte[] name = "init/x".getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + 4 + name.length + 1 + 4 + 16 + 8 + 8).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(1).putInt(name.length).put(name).put((byte) 0).putInt(2).putLong(1).putLong(2).putLong(8);
        b.putFloat(0.5f).putFloat(-1f);
        out.write(b.array());
        Map<String, Tensor> read = TensorFile.read(ByteBuffer.wrap(out.toByteArray()), "handmade");
        Tensor x = read.get("init/x");
        assertArrayEquals(new long[] {1, 2}, x.shape());
        assertArrayEquals(new float[] {0.5f, -1f}, x.toFloatArray(), 0f);
    }

    @Test
    public void truncatedFileNamesTheTensorItStoppedIn() throws Exception {
        Path file = tmp.getRoot().toPath().resolve("t.lzt");
        TensorFile.write(file, sample());
        byte[] all = Files.readAllBytes(file);
        byte[] cut = java.util.Arrays.copyOf(all, all.length - 3);
        TensorFileException e = assertThrows(TensorFileException.class,
                () -> TensorFile.read(ByteBuffer.wrap(cut), "cut.lzt"));
        assertEquals("cut.lzt: truncated inside tensor 'scalar'", e.getMessage());
        byte[] cutEarly = java.util.Arrays.copyOf(all, 30);
        e = assertThrows(TensorFileException.class, () -> TensorFile.read(ByteBuffer.wrap(cutEarly), "early.lzt"));
        assertTrue(e.getMessage(), e.getMessage().startsWith("early.lzt: truncated inside tensor"));
    }

    @Test
    public void badMagicIsRejected() {
        TensorFileException e = assertThrows(TensorFileException.class,
                () -> TensorFile.read(ByteBuffer.wrap("NOPE0000".getBytes(StandardCharsets.US_ASCII)), "x.lzt"));
        assertEquals("x.lzt: not a lazydit tensor file (bad magic)", e.getMessage());
    }

    @Test
    public void unknownDtypeCodeIsRejected() throws Exception {
        Path file = tmp.getRoot().toPath().resolve("t.lzt");
        Map<String, Tensor> one = new LinkedHashMap<>();
        one.put("a", Tensor.ofInts(new int[] {1}, 1));
        TensorFile.write(file, one);
        byte[] all = Files.readAllBytes(file);
        all[4 + 4 + 4 + 1] = 9;
        TensorFileException e = assertThrows(TensorFileException.class,
                () -> TensorFile.read(ByteBuffer.wrap(all), "d.lzt"));
        assertTrue(e.getMessage(), e.getMessage().contains("tensor 'a' has unknown dtype code 9"));
    }
}
