package org.lazydit.core;

import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * A bundle's manifest.json (version 1, docs/bundle.md). Obtained only through {@link #parse} or
 * {@link #load}, both of which validate it, so a Manifest in hand is one the loop can run.
 */
public final class Manifest {
    public static final String FORMAT = "lazydit-bundle";
    public static final int VERSION = 1;
    public static final String FILE_NAME = "manifest.json";

    final String modelName;
    final ImageSpec image;
    final int numClasses;
    final long nullClass;
    final boolean timingOnly;
    final Map<String, SlotSpec> slots;
    final Map<String, MethodSpec> methods;
    final List<StepSpec> steps;
    final String decode;
    final Map<String, ArtifactSet> artifacts;
    final GoldenSpec golden;
    final JsonObject json;

    Manifest(
            String modelName,
            ImageSpec image,
            int numClasses,
            long nullClass,
            boolean timingOnly,
            Map<String, SlotSpec> slots,
            Map<String, MethodSpec> methods,
            List<StepSpec> steps,
            String decode,
            Map<String, ArtifactSet> artifacts,
            GoldenSpec golden,
            JsonObject json) {
        this.modelName = modelName;
        this.image = image;
        this.numClasses = numClasses;
        this.nullClass = nullClass;
        this.timingOnly = timingOnly;
        this.slots = Collections.unmodifiableMap(slots);
        this.methods = Collections.unmodifiableMap(methods);
        this.steps = List.copyOf(steps);
        this.decode = decode;
        this.artifacts = Collections.unmodifiableMap(artifacts);
        this.golden = golden;
        this.json = json;
    }

    /** Parses and validates; every contract violation is listed in one exception. */
    public static Manifest parse(String json) throws ManifestException {
        Manifest m = ManifestParser.parse(json);
        List<String> problems = ManifestValidator.problems(m);
        if (!problems.isEmpty()) {
            throw new ManifestException(problems);
        }
        return m;
    }

    public static Manifest load(Path bundleDir) throws IOException {
        Path file = bundleDir.resolve(FILE_NAME);
        if (!Files.isRegularFile(file)) {
            throw new IOException(file + " not found: a bundle folder holds manifest.json next to its artifacts");
        }
        return parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8));
    }

    public String modelName() {
        return modelName;
    }

    public ImageSpec image() {
        return image;
    }

    public int numClasses() {
        return numClasses;
    }

    public long nullClass() {
        return nullClass;
    }

    /** Random-weight bundles made for latency only: their images are noise by design. */
    public boolean timingOnly() {
        return timingOnly;
    }

    public Map<String, SlotSpec> slots() {
        return slots;
    }

    public boolean isSlot(String name) {
        return slots.containsKey(name);
    }

    public SlotSpec slot(String name) {
        SlotSpec s = slots.get(name);
        if (s == null) {
            throw new IllegalArgumentException("no slot '" + name + "' in the manifest");
        }
        return s;
    }

    public Map<String, MethodSpec> methods() {
        return methods;
    }

    public MethodSpec method(String name) {
        MethodSpec m = methods.get(name);
        if (m == null) {
            throw new IllegalArgumentException("no method '" + name + "' in the manifest");
        }
        return m;
    }

    public List<StepSpec> steps() {
        return steps;
    }

    public String decode() {
        return decode;
    }

    public MethodSpec decodeMethod() {
        return method(decode);
    }

    /** Indexes of the steps that skip at least one module. */
    public List<Integer> lazySteps() {
        List<Integer> out = new ArrayList<>();
        for (StepSpec s : steps) {
            if (s.isLazy()) {
                out.add(s.index());
            }
        }
        return out;
    }

    public Map<String, ArtifactSet> artifacts() {
        return artifacts;
    }

    public ArtifactSet artifacts(String format) throws ManifestException {
        ArtifactSet a = artifacts.get(format);
        if (a == null) {
            throw new ManifestException("this bundle has no '" + format + "' artifacts (it has "
                    + artifacts.keySet() + "); export it with that format enabled");
        }
        return a;
    }

    /** The golden vectors' description, or null when the bundle ships none. */
    public GoldenSpec golden() {
        return golden;
    }

    /** The whole document, for fields the runtime does not interpret (sampler, plan, metadata). */
    public JsonObject json() {
        return json.deepCopy();
    }
}
