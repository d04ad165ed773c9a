package org.lazydit.core;

/** The decoded image's size, from {@code model.image} in the manifest. */
public record ImageSpec(int height, int width, int channels) {}
