package org.lazydit.core;

/** A backend failed to run a method; the message names the method and what went wrong. */
public final class BackendException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public BackendException(String message) {
        super(message);
    }

    public BackendException(String message, Throwable cause) {
        super(message, cause);
    }
}
