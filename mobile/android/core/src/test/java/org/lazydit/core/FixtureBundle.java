package org.lazydit.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A hand-made three-step bundle: step 0 computes attention and keeps it in cache:0.attn, step 1
 * skips attention and reads the cache, step 2 runs without attention; decode makes a 2x2 grey image.
 * Its golden.lzt is written by an explicit reference loop, not by the code under test.
 */
final class FixtureBundle {
    static final long[] X_SHAPE = {1, 1, 2, 2};
    static final long[] IMAGE_SHAPE = {2, 2, 1};
    static final long LABEL = 3;
    static final float CFG = 1.5f;
    static final float[][] SCALARS = {{900f, 0.5f, 0.75f}, {500f, 0.75f, 0.875f}, {100f, 0.875f, 1f}};
    static final String[] METHODS = {"step_full", "step_lazy", "step_last"};

    private FixtureBundle() {}

    static JsonObject manifestJson() {
        JsonObject m = new JsonObject();
        m.addProperty("format", "lazydit-bundle");
        m.addProperty("version", 1);
        JsonObject model = new JsonObject();
        model.addProperty("name", "toy");
        JsonObject image = new JsonObject();
        image.addProperty("height", 2);
        image.addProperty("width", 2);
        image.addProperty("channels", 1);
        model.add("image", image);
        model.addProperty("num_classes", 10);
        model.addProperty("null_class", 10);
        model.addProperty("timing_only", false);
        m.add("model", model);

        JsonObject slots = new JsonObject();
        slots.add("x", slot(X_SHAPE, "float32"));
        slots.add("y", slot(new long[] {1}, "int64"));
        slots.add("cfg_scale", slot(new long[] {1}, "float32"));
        slots.add("cache:0.attn", slot(X_SHAPE, "float32"));
        slots.add("image", slot(IMAGE_SHAPE, "uint8"));
        m.add("slots", slots);

        JsonObject methods = new JsonObject();
        methods.add("step_full", method(
                ports("name", "source", "x", "x", "y", "y", "cfg_scale", "cfg_scale", "t", "t", "alpha", "alpha"),
                ports("name", "target", "x_next", "x", "attn_0", "cache:0.attn")));
        methods.add("step_lazy", method(
                ports("name", "source", "x", "x", "cfg_scale", "cfg_scale", "t", "t", "alpha", "alpha",
                        "cache_attn_0", "cache:0.attn"),
                ports("name", "target", "x_next", "x")));
        methods.add("step_last", method(
                ports("name", "source", "x", "x", "t", "t", "alpha", "alpha"),
                ports("name", "target", "x_next", "x")));
        methods.add("decode",
                method(ports("name", "source", "sample", "x"), ports("name", "target", "image", "image")));
        m.add("methods", methods);

        JsonArray steps = new JsonArray();
        for (int i = 0; i < 3; i++) {
            JsonObject s = new JsonObject();
            s.addProperty("index", i);
            s.addProperty("method", METHODS[i]);
            JsonObject scalars = new JsonObject();
            scalars.addProperty("t", SCALARS[i][0]);
            scalars.addProperty("alpha", SCALARS[i][1]);
            scalars.addProperty("alpha_prev", SCALARS[i][2]);
            s.add("scalars", scalars);
            s.add("computed", strings(i == 1 ? new String[] {"0.mlp"} : new String[] {"0.attn", "0.mlp"}));
            s.add("skipped", strings(i == 1 ? new String[] {"0.attn"} : new String[] {}));
            s.addProperty("macs", 1000);
            steps.add(s);
        }
        m.add("steps", steps);
        m.addProperty("decode", "decode");

        JsonObject golden = new JsonObject();
        golden.addProperty("path", "golden.lzt");
        golden.addProperty("label", LABEL);
        golden.addProperty("cfg_scale", CFG);
        golden.addProperty("seed", 7);
        m.add("golden", golden);
        m.add("artifacts", new JsonObject());
        return m;
    }

    static Manifest manifest() throws ManifestException {
        return Manifest.parse(manifestJson().toString());
    }

    /** Writes manifest.json (with the golden digest filled in) and golden.lzt into {@code dir}. */
    static Path write(Path dir) throws IOException {
        Files.createDirectories(dir);
        Path golden = dir.resolve("golden.lzt");
        TensorFile.write(golden, goldenTensors());
        JsonObject m = manifestJson();
        m.getAsJsonObject("golden").addProperty("sha256", BundleIntegrity.sha256(golden));
        Files.write(dir.resolve("manifest.json"), m.toString().getBytes(StandardCharsets.UTF_8));
        return dir;
    }

    static Tensor initialNoise() {
        return Tensor.ofFloats(new float[] {0.25f, -0.5f, 0.75f, -1f}, X_SHAPE);
    }

    /** The reference run, written out step by step with the names docs/bundle.md gives. */
    static Map<String, Tensor> goldenTensors() {
        Map<String, Tensor> g = new LinkedHashMap<>();
        Tensor x = initialNoise();
        Tensor y = Tensor.ofLongs(new long[] {LABEL}, 1);
        Tensor cfg = Tensor.scalar(CFG);
        g.put("init/x", x);
        g.put("init/y", y);
        g.put("init/cfg_scale", cfg);

        Tensor t0 = Tensor.scalar(SCALARS[0][0]);
        Tensor a0 = Tensor.scalar(SCALARS[0][1]);
        putAll(g, "step/0/in/", List.of("x", "y", "cfg_scale", "t", "alpha"), List.of(x, y, cfg, t0, a0));
        float[][] full = ToyModel.full(x.toFloatArray(), LABEL, CFG, SCALARS[0][0], SCALARS[0][1]);
        Tensor x1 = Tensor.ofFloats(full[0], X_SHAPE);
        Tensor cache = Tensor.ofFloats(full[1], X_SHAPE);
        putAll(g, "step/0/out/", List.of("x_next", "attn_0"), List.of(x1, cache));

        Tensor t1 = Tensor.scalar(SCALARS[1][0]);
        Tensor a1 = Tensor.scalar(SCALARS[1][1]);
        putAll(g, "step/1/in/", List.of("x", "cfg_scale", "t", "alpha", "cache_attn_0"),
                List.of(x1, cfg, t1, a1, cache));
        Tensor x2 = Tensor.ofFloats(
                ToyModel.lazy(x1.toFloatArray(), CFG, SCALARS[1][0], SCALARS[1][1], cache.toFloatArray()), X_SHAPE);
        g.put("step/1/out/x_next", x2);

        Tensor t2 = Tensor.scalar(SCALARS[2][0]);
        Tensor a2 = Tensor.scalar(SCALARS[2][1]);
        putAll(g, "step/2/in/", List.of("x", "t", "alpha"), List.of(x2, t2, a2));
        Tensor x3 = Tensor.ofFloats(ToyModel.last(x2.toFloatArray(), SCALARS[2][0], SCALARS[2][1]), X_SHAPE);
        g.put("step/2/out/x_next", x3);

        g.put("decode/out/image", Tensor.ofUnsignedBytes(ToyModel.decode(x3.toFloatArray()), IMAGE_SHAPE));
        return g;
    }

    private static void putAll(Map<String, Tensor> g, String prefix, List<String> names, List<Tensor> values) {
        for (int i = 0; i < names.size(); i++) {
            g.put(prefix + names.get(i), values.get(i));
        }
    }

    private static JsonObject slot(long[] shape, String dtype) {
        JsonObject s = new JsonObject();
        JsonArray a = new JsonArray();
        for (long d : shape) {
            a.add(d);
        }
        s.add("shape", a);
        s.addProperty("dtype", dtype);
        return s;
    }

    private static JsonObject method(JsonArray inputs, JsonArray outputs) {
        JsonObject m = new JsonObject();
        m.add("inputs", inputs);
        m.add("outputs", outputs);
        return m;
    }

    private static JsonArray ports(String nameKey, String slotKey, String... pairs) {
        JsonArray a = new JsonArray();
        for (int i = 0; i < pairs.length; i += 2) {
            JsonObject p = new JsonObject();
            p.addProperty(nameKey, pairs[i]);
            p.addProperty(slotKey, pairs[i + 1]);
            a.add(p);
        }
        return a;
    }

    private static JsonArray strings(String[] values) {
        JsonArray a = new JsonArray();
        for (String v : values) {
            a.add(v);
        }
        return a;
    }
}
