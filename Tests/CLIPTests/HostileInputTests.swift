import Foundation
import Testing

@testable import CLIP
// Hostile weight and vocabulary files: JSON nested past any sane depth, FIFOs where a file should
// be, and the inputs the fuzzers found, replayed through the same parsers.
@testable import Files

private func deepList(_ depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

@Suite struct CLIPHostileInputTests {
    @Test func deepSafeTensorsHeaderIsAnError() throws {
        let dir = try makeScratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/deep.safetensors"
        try writeRawSafeTensors(
            header: "{\"w\": {\"dtype\": \"F32\", \"shape\": " + deepList(100_000) + ", \"data_offsets\": [0, 0]}}",
            data: [], to: path)
        #expect(thrownMessage { _ = try SafeTensorsFile(path: path) }?.contains("invalid JSON in ") == true)
        // Within Foundation's depth limit the nested shape is refused, and echoed only in part.
        try writeRawSafeTensors(
            header: "{\"w\": {\"dtype\": \"F32\", \"shape\": [" + deepList(400) + "], \"data_offsets\": [0, 0]}}",
            data: [], to: path)
        let message = thrownMessage { _ = try SafeTensorsFile(path: path) } ?? ""
        #expect(message.contains("has an entry that is not a non-negative integer"), "\(message.prefix(300))")
        #expect(message.count < 300, "\(message.prefix(300))")
    }

    @Test func deepVocabJSONIsAnError() throws {
        let dir = try makeScratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(("{\"a\": " + deepList(100_000) + "}").utf8).write(to: URL(fileURLWithPath: dir + "/vocab.json"))
        try Data("#version: 0.2\na b\n".utf8).write(to: URL(fileURLWithPath: dir + "/merges.txt"))
        let message = thrownMessage {
            _ = try CLIPTokenizer(vocabJSON: dir + "/vocab.json", merges: dir + "/merges.txt")
        }
        #expect(
            message
                == "\(dir)/vocab.json: not a CLIP tokenizer vocabulary: expected a JSON object of token → integer id")
    }

    @Test func fifosAreRefusedWithoutBlocking() throws {
        let dir = try makeScratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["model.safetensors", "vocab.txt.gz", "vocab.json"] {
            try #require(mkfifo(dir + "/" + name, 0o644) == 0)
        }
        // Each would block in open() forever before the fix; a writer opening the FIFO releases them.
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var messages: [String?] = []
        Thread {
            messages = [
                thrownMessage { _ = try SafeTensorsFile(path: dir + "/model.safetensors") },
                thrownMessage { _ = try CLIPTokenizer(bpeGzPath: dir + "/vocab.txt.gz") },
                thrownMessage { _ = try CLIPTokenizer(vocabJSON: dir + "/vocab.json", merges: dir + "/vocab.json") },
            ]
            done.signal()
        }.start()
        if done.wait(timeout: .now() + 60) == .timedOut {
            Issue.record("reading a FIFO blocked")
            for name in ["model.safetensors", "vocab.txt.gz", "vocab.json"] {
                let fd = open(dir + "/" + name, O_RDWR | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
            done.wait()
        }
        #expect(messages.count == 3)
        for message in messages {
            #expect(message?.contains("not a regular file (a FIFO)") == true, "\(message ?? "no error")")
        }
        #expect(messages.first??.hasPrefix(dir + "/model.safetensors") == true)
    }

    /// Inputs that crashed FuzzSafeTensors or FuzzTokenizer (Tests/Fixtures/fuzz/<target>/).
    @Test func fuzzRegressions() throws {
        func inputs(_ target: String) -> [String] {
            let dir = fixturePath("fuzz/" + target)
            return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().map { dir + "/" + $0 }
        }
        for input in inputs("FuzzSafeTensors") {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: input)))
            guard bytes.count >= 8 else { continue }
            _ = bytes.withUnsafeBytes {
                try? SafeTensorsFile.parseHeader($0.baseAddress!, fileBytes: bytes.count, file: input)
            }
        }
        let tokenizer = try CLIPTokenizer(bpeGzPath: fixturePath("golden/tiny_vocab.txt.gz"))
        for input in inputs("FuzzTokenizer") {
            let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: input)), as: UTF8.self)
            let ids = tokenizer.tokenize(text, contextLength: 77)
            #expect(ids.count == 77 && ids.allSatisfy { (0..<tokenizer.vocabularySize).contains($0) }, "\(input)")
        }
    }
}
