package org.lazydit.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The files of one format (executorch, coreml, onnx) and where each manifest method lives in them. */
public final class ArtifactSet {
    /** One file with the digest the exporter recorded. */
    public static final class ArtifactFile {
        private final String path;
        private final String sha256;
        private final long bytes;

        public ArtifactFile(String path, String sha256, long bytes) {
            this.path = path;
            this.sha256 = sha256;
            this.bytes = bytes;
        }

        /** Relative to the bundle folder. */
        public String path() {
            return path;
        }

        public String sha256() {
            return sha256;
        }

        public long bytes() {
            return bytes;
        }
    }

    private final String format;
    private final List<ArtifactFile> files;
    private final Map<String, String> methods;

    public ArtifactSet(String format, List<ArtifactFile> files, Map<String, String> methods) {
        this.format = format;
        this.files = List.copyOf(files);
        this.methods = Collections.unmodifiableMap(new LinkedHashMap<>(methods));
    }

    public String format() {
        return format;
    }

    public List<ArtifactFile> files() {
        return files;
    }

    /** Manifest method name to the format's own name for it (a file path or a function name). */
    public Map<String, String> methods() {
        return methods;
    }

    /** The format's name for {@code method}; the method's own name when the manifest maps none. */
    public String locate(String method) {
        return methods.getOrDefault(method, method);
    }

    /**
     * The first file whose path contains {@code marker} (".pte", ".mlpackage/", ".mlmodelc/"), or null.
     */
    public ArtifactFile firstFileContaining(String marker) {
        for (ArtifactFile f : files) {
            if (f.path().contains(marker)) {
                return f;
            }
        }
        return null;
    }
}
