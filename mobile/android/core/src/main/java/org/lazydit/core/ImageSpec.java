package org.lazydit.core;

/** The decoded image's size, from {@code model.image} in the manifest. */
public final class ImageSpec {
    private final int height;
    private final int width;
    private final int channels;

    public ImageSpec(int height, int width, int channels) {
        this.height = height;
        this.width = width;
        this.channels = channels;
    }

    public int height() {
        return height;
    }

    public int width() {
        return width;
    }

    public int channels() {
        return channels;
    }
}
