package org.lazydit.core;

/**
 * Where the golden vectors live and how they were made ({@code golden} in the manifest).
 *
 * @param sha256 hex digest, or null when the manifest gives none
 */
public record GoldenSpec(String path, String sha256, long label, double cfgScale, long seed) {}
