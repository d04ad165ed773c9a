package org.lazydit.core;

/** Element types a bundle can hold; the codes are the ones stored in {@code .lzt} files. */
public enum DType {
    FLOAT32(0, "float32", 4),
    INT64(1, "int64", 8),
    UINT8(2, "uint8", 1),
    INT32(3, "int32", 4),
    /** IEEE half precision: an fp16 bundle's cache slots, passed between methods as they are. */
    FLOAT16(4, "float16", 2);

    private final int code;
    private final String label;
    private final int itemSize;

    DType(int code, String label, int itemSize) {
        this.code = code;
        this.label = label;
        this.itemSize = itemSize;
    }

    public int code() {
        return code;
    }

    /** The name used in manifest.json and in error messages (numpy spelling). */
    public String label() {
        return label;
    }

    public int itemSize() {
        return itemSize;
    }

    public static DType fromCode(int code) {
        for (DType d : values()) {
            if (d.code == code) {
                return d;
            }
        }
        throw new IllegalArgumentException(
                "unknown dtype code " + code + " (known: 0 float32, 1 int64, 2 uint8, 3 int32, 4 float16)");
    }

    public static DType fromLabel(String label) {
        for (DType d : values()) {
            if (d.label.equals(label)) {
                return d;
            }
        }
        throw new IllegalArgumentException("unknown dtype '" + label + "' (known: float32, int64, uint8, int32, float16)");
    }

    @Override
    public String toString() {
        return label;
    }
}
