package org.lazydit.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The files of one format (executorch, coreml, onnx) and where each manifest method lives in them.
 *
 * @param methods manifest method name to the format's own name for it (a file path or a function name)
 */
public record ArtifactSet(String format, List<ArtifactFile> files, Map<String, String> methods) {
    /**
     * One file with the digest the exporter recorded.
     *
     * @param path relative to the bundle folder
     */
    public record ArtifactFile(String path, String sha256, long bytes) {}

    public ArtifactSet {
        files = List.copyOf(files);
        methods = Collections.unmodifiableMap(new LinkedHashMap<>(methods));
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
