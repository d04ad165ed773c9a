package org.lazydit.core;

import java.io.IOException;
import java.util.List;

/** manifest.json is unreadable or breaks the bundle contract (docs/bundle.md). */
public final class ManifestException extends IOException {
    private static final long serialVersionUID = 1L;

    private final List<String> problems;

    public ManifestException(String problem) {
        this(List.of(problem));
    }

    public ManifestException(List<String> problems) {
        super(message(problems));
        this.problems = List.copyOf(problems);
    }

    public List<String> problems() {
        return problems;
    }

    private static String message(List<String> problems) {
        StringBuilder sb = new StringBuilder("manifest.json breaks the bundle contract (");
        sb.append(problems.size()).append(problems.size() == 1 ? " problem" : " problems").append("):");
        for (String p : problems) {
            sb.append("\n  - ").append(p);
        }
        sb.append("\nRe-export the bundle with `lazydit export`; runtimes never patch a manifest.");
        return sb.toString();
    }
}
