package org.lazydit.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** JSON text to {@link Manifest}: checks types and presence; contract rules live in ManifestValidator. */
final class ManifestParser {
    private ManifestParser() {}

    static Manifest parse(String text) throws ManifestException {
        JsonElement root;
        try {
            root = JsonParser.parseString(text);
        } catch (JsonParseException e) {
            throw new ManifestException("not valid JSON: " + e.getMessage());
        }
        JsonFields m = JsonFields.of(root, "manifest");
        String format = m.string("format");
        long version = m.integer("version");
        if (!Manifest.FORMAT.equals(format) || version != Manifest.VERSION) {
            throw new ManifestException("format '" + format + "' version " + version + " is not "
                    + Manifest.FORMAT + " version " + Manifest.VERSION + "; this runtime reads version 1 only");
        }
        JsonFields model = m.object("model");
        JsonFields image = model.object("image");
        return new Manifest(
                model.string("name", ""),
                new ImageSpec(
                        (int) image.integer("height"), (int) image.integer("width"), (int) image.integer("channels")),
                (int) model.integer("num_classes", 0),
                model.integer("null_class", -1),
                model.bool("timing_only", false),
                slots(m),
                methods(m),
                steps(m),
                m.string("decode"),
                artifacts(m),
                m.has("golden") ? golden(m.object("golden")) : null,
                root.getAsJsonObject());
    }

    private static Map<String, SlotSpec> slots(JsonFields m) throws ManifestException {
        Map<String, SlotSpec> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : m.members("slots").entrySet()) {
            JsonFields s = JsonFields.of(e.getValue(), m.at("slots") + "." + e.getKey());
            DType dtype;
            try {
                dtype = DType.fromLabel(s.string("dtype"));
            } catch (IllegalArgumentException err) {
                throw new ManifestException(s.at("dtype") + ": " + err.getMessage());
            }
            out.put(e.getKey(), new SlotSpec(e.getKey(), s.longs("shape"), dtype));
        }
        return out;
    }

    private static Map<String, MethodSpec> methods(JsonFields m) throws ManifestException {
        Map<String, MethodSpec> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : m.members("methods").entrySet()) {
            JsonFields f = JsonFields.of(e.getValue(), m.at("methods") + "." + e.getKey());
            List<MethodSpec.Input> inputs = new ArrayList<>();
            for (JsonFields p : objects(f, "inputs")) {
                inputs.add(new MethodSpec.Input(p.string("name"), p.string("source")));
            }
            List<MethodSpec.Output> outputs = new ArrayList<>();
            for (JsonFields p : objects(f, "outputs")) {
                outputs.add(new MethodSpec.Output(p.string("name"), p.string("target")));
            }
            out.put(e.getKey(), new MethodSpec(e.getKey(), inputs, outputs));
        }
        return out;
    }

    private static List<StepSpec> steps(JsonFields m) throws ManifestException {
        List<StepSpec> out = new ArrayList<>();
        for (JsonFields s : objects(m, "steps")) {
            Map<String, Double> scalars = new LinkedHashMap<>();
            if (s.has("scalars")) {
                JsonFields sc = s.object("scalars");
                for (String key : s.members("scalars").keySet()) {
                    scalars.put(key, sc.number(key));
                }
            }
            out.add(new StepSpec(
                    (int) s.integer("index"), s.string("method"), scalars, count(s, "computed"), count(s, "skipped")));
        }
        return out;
    }

    /** {@code computed}/{@code skipped} may list module cells or count them; absent means none. */
    private static int count(JsonFields s, String key) throws ManifestException {
        if (!s.has(key)) {
            return 0;
        }
        JsonElement e = s.raw(key);
        if (e.isJsonArray()) {
            return e.getAsJsonArray().size();
        }
        return (int) s.integer(key);
    }

    private static Map<String, ArtifactSet> artifacts(JsonFields m) throws ManifestException {
        Map<String, ArtifactSet> out = new LinkedHashMap<>();
        if (!m.has("artifacts")) {
            return out;
        }
        for (Map.Entry<String, JsonElement> e : m.members("artifacts").entrySet()) {
            JsonFields a = JsonFields.of(e.getValue(), m.at("artifacts") + "." + e.getKey());
            List<ArtifactSet.ArtifactFile> files = new ArrayList<>();
            for (JsonFields f : objects(a, "files")) {
                files.add(new ArtifactSet.ArtifactFile(
                        f.string("path"), f.string("sha256", null), f.integer("bytes", -1)));
            }
            Map<String, String> methods = new LinkedHashMap<>();
            if (a.has("methods")) {
                JsonFields mm = a.object("methods");
                for (String key : a.members("methods").keySet()) {
                    methods.put(key, mm.string(key));
                }
            }
            out.put(e.getKey(), new ArtifactSet(e.getKey(), files, methods));
        }
        return out;
    }

    private static GoldenSpec golden(JsonFields g) throws ManifestException {
        return new GoldenSpec(g.string("path"), g.string("sha256", null), g.integer("label"), g.number("cfg_scale"),
                g.integer("seed", 0));
    }

    private static List<JsonFields> objects(JsonFields parent, String key) throws ManifestException {
        JsonArray a = parent.array(key);
        List<JsonFields> out = new ArrayList<>();
        for (int i = 0; i < a.size(); i++) {
            out.add(JsonFields.of(a.get(i), parent.at(key) + "[" + i + "]"));
        }
        return out;
    }
}
