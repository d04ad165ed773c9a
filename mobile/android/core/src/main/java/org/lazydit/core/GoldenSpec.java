package org.lazydit.core;

/** Where the golden vectors live and how they were made ({@code golden} in the manifest). */
public final class GoldenSpec {
    private final String path;
    private final String sha256;
    private final long label;
    private final double cfgScale;
    private final long seed;

    public GoldenSpec(String path, String sha256, long label, double cfgScale, long seed) {
        this.path = path;
        this.sha256 = sha256;
        this.label = label;
        this.cfgScale = cfgScale;
        this.seed = seed;
    }

    public String path() {
        return path;
    }

    /** Hex digest, or null when the manifest gives none. */
    public String sha256() {
        return sha256;
    }

    public long label() {
        return label;
    }

    public double cfgScale() {
        return cfgScale;
    }

    public long seed() {
        return seed;
    }
}
