package org.lazydit.core;

import java.util.Arrays;

/**
 * The decoded uint8 image as packed ARGB pixels, whatever its layout: [.., C, H, W], [.., H, W, C]
 * or [.., H, W] with leading batch dimensions of 1. Grey, RGB and RGBA are understood.
 */
public final class ImagePixels {
    private final int width;
    private final int height;
    private final int[] argb;

    private ImagePixels(int width, int height, int[] argb) {
        this.width = width;
        this.height = height;
        this.argb = argb;
    }

    public static ImagePixels of(Tensor image, ImageSpec spec) {
        if (image.dtype() != DType.UINT8) {
            throw new IllegalArgumentException("decode must return uint8 pixels, got " + image.describe());
        }
        int h = spec.height();
        int w = spec.width();
        int c = spec.channels();
        long[] s = image.shape();
        boolean channelsFirst;
        if (endsWith(s, c, h, w)) {
            channelsFirst = true;
        } else if (endsWith(s, h, w, c) || (c == 1 && endsWith(s, h, w))) {
            channelsFirst = false;
        } else {
            throw new IllegalArgumentException("image " + image.describe()
                    + " matches neither [C, H, W] nor [H, W, C] for model.image " + h + "x" + w + "x" + c);
        }
        if (c != 1 && c != 3 && c != 4) {
            throw new IllegalArgumentException("cannot show a " + c + "-channel image");
        }
        byte[] px = image.toByteArray();
        int[] argb = new int[w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int[] ch = new int[4];
                for (int k = 0; k < c; k++) {
                    int at = channelsFirst ? (k * h + y) * w + x : (y * w + x) * c + k;
                    ch[k] = px[at] & 0xff;
                }
                int r = ch[0];
                int g = c == 1 ? r : ch[1];
                int b = c == 1 ? r : ch[2];
                int a = c == 4 ? ch[3] : 0xff;
                argb[y * w + x] = (a << 24) | (r << 16) | (g << 8) | b;
            }
        }
        return new ImagePixels(w, h, argb);
    }

    public int width() {
        return width;
    }

    public int height() {
        return height;
    }

    /** Row-major 0xAARRGGBB, ready for Android's Bitmap.createBitmap(int[], w, h, ARGB_8888). */
    public int[] argb() {
        return argb.clone();
    }

    private static boolean endsWith(long[] shape, long... tail) {
        if (shape.length < tail.length) {
            return false;
        }
        int lead = shape.length - tail.length;
        for (int i = 0; i < lead; i++) {
            if (shape[i] != 1) {
                return false;
            }
        }
        return Arrays.equals(Arrays.copyOfRange(shape, lead, shape.length), tail);
    }
}
