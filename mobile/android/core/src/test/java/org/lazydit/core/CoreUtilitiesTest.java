package org.lazydit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class CoreUtilitiesTest {
    @Test
    public void float16TensorsWidenTheirBitsExactly() {
        short[] bits = {0x3c00, (short) 0xc000, 0x7bff, 0x0001, 0x7c00, (short) 0x8000};
        Tensor t = Tensor.ofHalfBits(bits, 2, 3);
        assertEquals("float16[2, 3]", t.describe());
        assertEquals(1.0, t.getDouble(0), 0.0);
        assertEquals(-2.0, t.getDouble(1), 0.0);
        assertEquals(65504.0, t.getDouble(2), 0.0);
        assertEquals(Math.pow(2, -24), t.getDouble(3), 0.0);
        assertEquals(Double.POSITIVE_INFINITY, t.getDouble(4), 0.0);
        assertEquals(-0.0, t.getDouble(5), 0.0);
        assertEquals(DType.FLOAT16, DType.fromCode(4));
        assertEquals(DType.FLOAT16, DType.fromLabel("float16"));
        // negative control: the same bits read as another dtype are another tensor
        assertNotEquals(t.getDouble(0), Tensor.ofHalfBits(new short[] {0x3c01}, 1).getDouble(0), 0.0);
    }

    @Rule public TemporaryFolder tmp = new TemporaryFolder();

    @Test
    public void sha256MatchesAKnownDigest() throws Exception {
        Path f = tmp.newFile("abc").toPath();
        Files.write(f, "abc".getBytes());
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", BundleIntegrity.sha256(f));
    }

    /** A program head as ExecuTorch writes it: root offset, "ET12", then the "eh00" extended header. */
    private static byte[] programHead(long programSize, long segmentBase, long segmentData, int length) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putInt(0).put("ET12eh00".getBytes()).putInt(32).putLong(programSize).putLong(segmentBase).putLong(segmentData);
        return b.array();
    }

    @Test
    public void programHeadMustFitTheFile() throws Exception {
        Path whole = tmp.newFile("whole.pte").toPath();
        Files.write(whole, programHead(48, 64, 36, 100));
        assertEquals(null, ProgramHeader.problem(whole, "whole.pte"));
        Path cut = tmp.newFile("cut.pte").toPath();
        Files.write(cut, java.util.Arrays.copyOf(programHead(48, 64, 36, 100), 80));
        String message = ProgramHeader.problem(cut, "cut.pte");
        assertTrue(message, message.contains("80 bytes, but its header says the program spans 100"));
        Path text = tmp.newFile("text.pte").toPath();
        Files.write(text, "{\"version\": 3, \"steps\": []}".getBytes());
        message = ProgramHeader.problem(text, "text.pte");
        assertTrue(message, message.contains("not an ExecuTorch program"));
        Path empty = tmp.newFile("empty.pte").toPath();
        assertTrue(ProgramHeader.problem(empty, "empty.pte").contains("not an ExecuTorch program"));
        // the digest check lets a recorded digest through; the head check still refuses the program
        List<String> problems = BundleIntegrity.check(cut.getParent(), "cut.pte", BundleIntegrity.sha256(cut));
        assertEquals(1, problems.size());
        assertTrue(problems.get(0), problems.get(0).contains("cut short"));
    }

    @Test
    public void goldenWithAnotherDigestThanTheManifestIsRefused() throws Exception {
        Path dir = FixtureBundle.write(tmp.newFolder("toy").toPath());
        Files.write(dir.resolve("golden.lzt"), new byte[] {1, 2, 3}, java.nio.file.StandardOpenOption.APPEND);
        IOException e = assertThrows(IOException.class, () -> BundleFolder.open(dir).readGolden());
        assertTrue(e.getMessage(), e.getMessage().contains("golden.lzt: sha256"));
        assertTrue(e.getMessage(), e.getMessage().contains("Copy the whole bundle folder again."));
    }

    @Test
    public void missingArtifactFormatSaysHowToGetIt() throws Exception {
        ManifestException e = assertThrows(ManifestException.class, () -> FixtureBundle.manifest().artifacts("coreml"));
        assertTrue(e.getMessage(), e.getMessage().contains("no 'coreml' artifacts"));
    }

    @Test
    public void noiseIsSeededAndStandardNormal() {
        long[] shape = {1, 4, 50, 50};
        Tensor a = Noise.gaussian(shape, 42);
        assertTrue(a.sameAs(Noise.gaussian(shape, 42)));
        float[] v = a.toFloatArray();
        double sum = 0;
        double sq = 0;
        for (float f : v) {
            sum += f;
            sq += f * f;
        }
        double mean = sum / v.length;
        assertEquals(0, mean, 0.05);
        assertEquals(1, sq / v.length - mean * mean, 0.05);
    }

    @Test
    public void noiseMatchesThePinnedSwiftSequence() {
        // Checked against an independent Python SplitMix64 + Box-Muller; the Swift tests pin the same
        // numbers, so a seed means the same noise on both phones.
        float[] v = Noise.gaussian(new long[] {3}, 2024).toFloatArray();
        assertArrayEquals(new float[] {0.79718673f, 0.5582685f, 1.1585873f}, v, 1e-6f);
    }

    @Test
    public void channelsFirstAndChannelsLastImagesGiveTheSamePixels() {
        ImageSpec rgb = new ImageSpec(1, 2, 3);
        Tensor chw = Tensor.ofUnsignedBytes(new byte[] {10, 11, 20, 21, 30, 31}, 1, 3, 1, 2);
        Tensor hwc = Tensor.ofUnsignedBytes(new byte[] {10, 20, 30, 11, 21, 31}, 1, 2, 3);
        assertArrayEquals(ImagePixels.of(chw, rgb).argb(), ImagePixels.of(hwc, rgb).argb());
        assertEquals(0xff0a141e, ImagePixels.of(chw, rgb).argb()[0]);
    }

    @Test
    public void greyImageIsReplicatedToRgb() {
        Tensor grey = Tensor.ofUnsignedBytes(new byte[] {(byte) 200, 0}, 1, 1, 1, 2);
        int[] px = ImagePixels.of(grey, new ImageSpec(1, 2, 1)).argb();
        assertEquals(0xffc8c8c8, px[0]);
        assertEquals(0xff000000, px[1]);
    }

    @Test
    public void psnrOfIdenticalTensorsIsFiniteAndHigh() {
        Tensor a = Tensor.ofFloats(new float[] {0.1f, 0.2f}, 2);
        double p = Psnr.of(a, a);
        assertTrue(Double.isFinite(p) && p > 200);
        assertEquals(20 * Math.log10(2 / 0.1), Psnr.of(Tensor.ofFloats(new float[] {0.2f, 0.3f}, 2), a), 1e-4);
    }

    @Test
    public void slotSpecCopiesItsShapeAndComparesItByContent() {
        long[] shape = {1, 4};
        SlotSpec s = new SlotSpec("x", shape, DType.FLOAT32);
        shape[0] = 9;
        s.shape()[1] = 9;
        assertArrayEquals(new long[] {1, 4}, s.shape());
        SlotSpec same = new SlotSpec(s.name(), s.shape(), s.dtype());
        assertEquals(s, same);
        assertEquals(s.hashCode(), same.hashCode());
        assertNotEquals(s, new SlotSpec("x", new long[] {1, 5}, DType.FLOAT32));
        assertEquals("SlotSpec[name=x, shape=[1, 4], dtype=float32]", s.toString());
    }

    @Test
    public void specsCopyTheirCollections() {
        Map<String, Double> scalars = new LinkedHashMap<>(Map.of("t", 0.5));
        StepSpec step = new StepSpec(0, "step_full", scalars, 3, 1);
        scalars.put("u", 1.0);
        assertEquals(Map.of("t", 0.5), step.scalars());
        assertThrows(UnsupportedOperationException.class, () -> step.scalars().put("u", 1.0));
        assertTrue(step.isLazy());
        List<MethodSpec.Input> inputs = new ArrayList<>(List.of(new MethodSpec.Input("x_in", "x")));
        MethodSpec m = new MethodSpec("step_full", inputs, List.of(new MethodSpec.Output("x_out", "x")));
        inputs.clear();
        assertEquals(List.of("x_in"), m.inputNames());
        assertEquals(new MethodSpec.Output("x_out", "x"), m.outputFor("x"));
    }
}
