import CoreGraphics
import Foundation
import LazyDiTKit

extension ImagePixels {
    /// The pixels as a CGImage; SwiftUI scales it up without interpolation so digits stay crisp.
    func cgImage() -> CGImage? {
        // 0xAARRGGBB words stored little-endian are B, G, R, A bytes: alpha first, 32-bit little.
        let data = argb.withUnsafeBufferPointer { Data(buffer: $0) }
        guard let provider = CGDataProvider(data: data as CFData) else { return nil }
        let info = CGBitmapInfo(rawValue: CGBitmapInfo.byteOrder32Little.rawValue
            | CGImageAlphaInfo.premultipliedFirst.rawValue)
        return CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32,
                       bytesPerRow: width * 4, space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: info,
                       provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
    }
}
