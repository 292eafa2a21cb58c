// libFuzzer target: text → token ids with the real CLIP vocabulary (the one the product finds,
// or $CAVPT_FUZZ_VOCAB); cleaning, byte-level BPE and truncation to the context length.
import CLIP
import CLibFuzzer
import Foundation

private let tokenizer: CLIPTokenizer = {
    let path = ProcessInfo.processInfo.environment["CAVPT_FUZZ_VOCAB"]
    do { return try CLIPTokenizer(try findVocabulary(modelPath: nil, override: path)) } catch {
        fatalError("FuzzTokenizer: \(error)")
    }
}()

@main enum FuzzTokenizer {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = bytes else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let ids = tokenizer.tokenize(text, contextLength: 77)
    // Every id must index the vocabulary, and the sequence must have exactly the context length.
    guard ids.count == 77, ids.allSatisfy({ (0..<tokenizer.vocabularySize).contains($0) }) else {
        fatalError("tokenize returned \(ids.count) ids or an id outside the vocabulary")
    }
    let encoded = tokenizer.encode(text)
    guard encoded.allSatisfy({ (0..<tokenizer.vocabularySize).contains($0) }) else {
        fatalError("encode returned an id outside the vocabulary")
    }
    return 0
}
