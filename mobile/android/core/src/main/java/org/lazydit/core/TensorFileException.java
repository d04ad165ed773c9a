package org.lazydit.core;

import java.io.IOException;

/** A {@code .lzt} file that cannot be read: wrong magic, truncated, unknown dtype. */
public final class TensorFileException extends IOException {
    private static final long serialVersionUID = 1L;

    public TensorFileException(String message) {
        super(message);
    }
}
