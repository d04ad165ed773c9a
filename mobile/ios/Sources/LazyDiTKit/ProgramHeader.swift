import Foundation

/// The head of an ExecuTorch program file (.pte), read before the engine sees it: the flatbuffer's
/// "ET" file identifier and, when present, the extended header ("eh00" at byte 8: header length,
/// program size, segment base offset, segment data size; little-endian), whose sizes must fit in
/// the file. ExecuTorch's own loader makes the same size check; doing it here refuses a cut-short
/// program whose digest was recorded after the damage with a message of the package's own, before
/// any native code maps it.
public enum ProgramHeader {
    private static let headBytes = 64
    private static let headerOffset = 8
    private static let minHeaderLength = 24
    private static let headerLengthWithDataSize = 32

    /// What is wrong with the program at `file` (named `path` in messages); nil when fine.
    public static func problem(_ file: URL, path: String) throws -> String? {
        let size = try (FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.uint64Value ?? 0
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        let head = [UInt8](try handle.read(upToCount: headBytes) ?? Data())
        guard head.count >= headerOffset, head[4] == UInt8(ascii: "E"), head[5] == UInt8(ascii: "T") else {
            return "\(path): not an ExecuTorch program (no 'ET' file identifier)"
        }
        guard head.count >= headerOffset + minHeaderLength, head[8] == UInt8(ascii: "e"), head[9] == UInt8(ascii: "h"),
              head[10] == UInt8(ascii: "0"), head[11] == UInt8(ascii: "0")
        else {
            return nil  // no extended header: the flatbuffer is the whole file
        }
        func le(_ at: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(head[at + $1]) << (8 * UInt64($1)) }
        }
        let headerLength = Int(le(headerOffset + 4, 4))
        guard headerLength >= minHeaderLength, headerOffset + headerLength <= head.count else {
            return "\(path): corrupt extended header (length \(headerLength))"
        }
        let programSize = le(headerOffset + 8, 8)
        let segmentBase = le(headerOffset + 16, 8)
        let segmentData = headerLength >= headerLengthWithDataSize ? le(headerOffset + 24, 8) : 0
        guard segmentBase <= UInt64.max - segmentData else {
            return "\(path): corrupt extended header (segment sizes overflow)"
        }
        if segmentData == 0 && segmentBase != 0 {
            return nil  // written before segment sizes were recorded: nothing to compare
        }
        let expected = segmentBase == 0 ? programSize : segmentBase + segmentData
        if expected > size {
            return "\(path): \(size) bytes, but its header says the program spans \(expected) (cut short?); "
                + "re-export the bundle"
        }
        return nil
    }
}
