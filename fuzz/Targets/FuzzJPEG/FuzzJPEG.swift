// libFuzzer target: JPEG decoding through the setjmp shim (cjpeg.c) and its Swift wrapper.
import CJPEG
import CLibFuzzer
import Data
import Foundation

/// Below JPEG.maxPixels so a header claiming a huge image does not spend each run on allocation;
/// the refusal path itself is the same comparison.
private let fuzzMaxPixels = 1 << 22

@main enum FuzzJPEG {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = bytes else { return 0 }
    var rgb: UnsafeMutablePointer<UInt8>?
    var width: Int32 = 0, height: Int32 = 0, components: Int32 = 0
    var message = [CChar](repeating: 0, count: 256)
    let rc = cjpeg_decode_rgb(data, size, fuzzMaxPixels, &rgb, &width, &height, &components, &message, message.count)
    if rc == 0, let rgb {
        guard width > 0, height > 0, Int(width) * Int(height) <= fuzzMaxPixels else {
            fatalError("decoded \(width)x\(height) past the pixel limit")
        }
        // Touch every output byte so ASan sees a short buffer.
        var sum = 0
        for i in 0..<(Int(width) * Int(height) * 3) { sum &+= Int(rgb[i]) }
        _ = sum
        cjpeg_free(rgb)
        // Within the limit, so the wrapper (with the product's larger limit) decodes it too.
        _ = try? JPEG.decode(data: Array(UnsafeBufferPointer(start: data, count: size)), name: "<fuzz>")
    }
    return 0
}
