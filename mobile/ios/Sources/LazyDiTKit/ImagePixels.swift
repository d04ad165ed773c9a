import Foundation

/// The decoded uint8 image as packed ARGB pixels, whatever its layout: [.., C, H, W], [.., H, W, C]
/// or [.., H, W] with leading batch dimensions of 1. Grey, RGB and RGBA are understood.
public struct ImagePixels {
    public let width: Int
    public let height: Int
    /// Row-major 0xAARRGGBB.
    public let argb: [UInt32]

    public static func of(_ image: Tensor, _ spec: ImageSpec) throws -> ImagePixels {
        guard image.dtype == .uint8 else {
            throw TensorError("decode must return uint8 pixels, got \(image)")
        }
        let (h, w, c) = (spec.height, spec.width, spec.channels)
        let channelsFirst: Bool
        if endsWith(image.shape, [c, h, w]) {
            channelsFirst = true
        } else if endsWith(image.shape, [h, w, c]) || (c == 1 && endsWith(image.shape, [h, w])) {
            channelsFirst = false
        } else {
            throw TensorError("image \(image) matches neither [C, H, W] nor [H, W, C] for model.image \(h)x\(w)x\(c)")
        }
        guard [1, 3, 4].contains(c) else { throw TensorError("cannot show a \(c)-channel image") }
        let px = image.bytes()
        var argb = [UInt32](repeating: 0, count: w * h)
        for y in 0..<h {
            for x in 0..<w {
                var ch: [UInt32] = [0, 0, 0, 0]
                for k in 0..<c {
                    let at = channelsFirst ? (k * h + y) * w + x : (y * w + x) * c + k
                    ch[k] = UInt32(px[at])
                }
                let r = ch[0]
                let g = c == 1 ? r : ch[1]
                let b = c == 1 ? r : ch[2]
                let a: UInt32 = c == 4 ? ch[3] : 0xff
                argb[y * w + x] = (a << 24) | (r << 16) | (g << 8) | b
            }
        }
        return ImagePixels(width: w, height: h, argb: argb)
    }

    private static func endsWith(_ shape: [Int], _ tail: [Int]) -> Bool {
        guard shape.count >= tail.count else { return false }
        let lead = shape.count - tail.count
        return shape[..<lead].allSatisfy { $0 == 1 } && Array(shape[lead...]) == tail
    }
}
