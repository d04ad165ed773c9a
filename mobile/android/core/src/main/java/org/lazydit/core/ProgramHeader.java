package org.lazydit.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The head of an ExecuTorch program file (.pte), read before the engine sees it: the flatbuffer's
 * "ET" file identifier and, when present, the extended header ("eh00" at byte 8: header length,
 * program size, segment base offset, segment data size; little-endian), whose sizes must fit in
 * the file. ExecuTorch's own loader makes the same size check; doing it here refuses a cut-short
 * program whose digest was recorded after the damage with a message of the app's own, before any
 * native code maps it.
 */
public final class ProgramHeader {
    private static final int HEAD_BYTES = 64;
    private static final int HEADER_OFFSET = 8;
    private static final int MIN_HEADER_LENGTH = 24;
    private static final int HEADER_LENGTH_WITH_DATA_SIZE = 32;

    private ProgramHeader() {}

    /** What is wrong with the program at {@code file} (named {@code relativePath} in messages); null when fine. */
    public static String problem(Path file, String relativePath) throws IOException {
        long size = Files.size(file);
        byte[] head = new byte[(int) Math.min(HEAD_BYTES, size)];
        try (InputStream in = Files.newInputStream(file)) {
            int read = in.readNBytes(head, 0, head.length);
            if (read != head.length) {
                return relativePath + ": could not read its first " + head.length + " bytes";
            }
        }
        if (head.length < HEADER_OFFSET || head[4] != 'E' || head[5] != 'T') {
            return relativePath + ": not an ExecuTorch program (no 'ET' file identifier)";
        }
        if (head.length < HEADER_OFFSET + MIN_HEADER_LENGTH
                || head[8] != 'e' || head[9] != 'h' || head[10] != '0' || head[11] != '0') {
            return null; // no extended header: the flatbuffer is the whole file
        }
        ByteBuffer b = ByteBuffer.wrap(head).order(ByteOrder.LITTLE_ENDIAN);
        long headerLength = Integer.toUnsignedLong(b.getInt(HEADER_OFFSET + 4));
        if (headerLength < MIN_HEADER_LENGTH || HEADER_OFFSET + headerLength > head.length) {
            return relativePath + ": corrupt extended header (length " + headerLength + ")";
        }
        long programSize = b.getLong(HEADER_OFFSET + 8);
        long segmentBase = b.getLong(HEADER_OFFSET + 16);
        long segmentData = headerLength >= HEADER_LENGTH_WITH_DATA_SIZE ? b.getLong(HEADER_OFFSET + 24) : 0;
        if (programSize < 0 || segmentBase < 0 || segmentData < 0 || segmentBase > Long.MAX_VALUE - segmentData) {
            return relativePath + ": corrupt extended header (sizes past 2^63)";
        }
        if (segmentData == 0 && segmentBase != 0) {
            return null; // written before segment sizes were recorded: nothing to compare
        }
        long expected = segmentBase == 0 ? programSize : segmentBase + segmentData;
        if (expected > size) {
            return relativePath + ": " + size + " bytes, but its header says the program spans " + expected
                    + " (cut short?); re-export the bundle";
        }
        return null;
    }
}
