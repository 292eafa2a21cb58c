// The CLIP tokenizer against open_clip's ids (Tests/Fixtures/tokenizer/golden.json, made by
// make_tokenizer_fixtures.py), from both vocabulary formats, plus its pieces and file lookup.
import Foundation
import Testing

@testable import CLIP

@Suite struct TokenizerTests {
    struct Case { let text: String; let clean: String?; let ids: [Int]; let encoded: [Int]? }

    static func golden() throws -> (all: [String: Any], cases: [Case]) {
        let json = try #require(try loadJSON("tokenizer/golden.json") as? [String: Any])
        let raw = try #require(json["cases"] as? [[String: Any]])
        let cases = try raw.map { entry in
            Case(
                text: try #require(entry["text"] as? String), clean: entry["clean"] as? String,
                ids: try #require(entry["ids"] as? [Int]), encoded: entry["encoded"] as? [Int])
        }
        return (json, cases)
    }

    static let full: CLIPTokenizer? = try? CLIPTokenizer(bpeGzPath: bundledVocabularyForTests)

    /// Compares every case; reports up to `limit` differences with their texts.
    static func compare(_ tokenizer: CLIPTokenizer, _ cases: [Case], limit: Int = 10) -> [String] {
        var failures: [String] = []
        for c in cases {
            let got = tokenizer.tokenize(c.text)
            let want = c.ids + [Int](repeating: 0, count: 77 - c.ids.count)
            if got != want && failures.count < limit {
                failures.append("\(c.text.debugDescription): got \(got.prefix(c.ids.count + 1)), want \(c.ids)")
            }
        }
        return failures
    }

    @Test func idsMatchOpenCLIPOnEveryGoldenString() throws {
        let tokenizer = try #require(Self.full, "needs \(bundledVocabularyForTests)")
        let (json, cases) = try Self.golden()
        #expect(cases.count >= 300)
        #expect(tokenizer.sot == json["sot"] as? Int && tokenizer.eot == json["eot"] as? Int)
        #expect(tokenizer.sot == 49406 && tokenizer.eot == 49407 && tokenizer.vocabularySize == 49408)
        let failures = Self.compare(tokenizer, cases)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        // Truncated cases also check encode() on its own, untruncated.
        let long = cases.filter { $0.encoded != nil }
        #expect(long.count >= 8)
        for c in long {
            #expect(tokenizer.encode(c.text) == c.encoded, "\(c.text.prefix(40))")
            let row = tokenizer.tokenize(c.text)
            #expect(row.count == 77 && row[76] == tokenizer.eot && row.firstIndex(of: tokenizer.eot) == 76)
        }
    }

    @Test func cleanupMatchesOpenCLIPText() throws {
        let (_, cases) = try Self.golden()
        var failures: [String] = []
        for c in cases {
            guard let clean = c.clean else { continue }
            let got = String(String.UnicodeScalarView(TextCleaning.cleanLower(c.text)))
            if got != clean && failures.count < 10 {
                failures.append("\(c.text.debugDescription) → \(got.debugDescription), want \(clean.debugDescription)")
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// A vocabulary with fewer merges: ids and the SOT/EOT ids after the merges, as open_clip builds them.
    @Test func smallMergeFileGivesOpenCLIPsSmallerVocabulary() throws {
        let (json, _) = try Self.golden()
        let tiny = try #require(json["tiny"] as? [String: Any])
        let tokenizer = try CLIPTokenizer(bpeGzPath: fixturePath("tokenizer/tiny_bpe.txt.gz"))
        #expect(tokenizer.sot == tiny["sot"] as? Int && tokenizer.eot == tiny["eot"] as? Int)
        #expect(tokenizer.vocabularySize == tiny["vocab_size"] as? Int)
        #expect(tokenizer.sot == 512 + 1001 && tokenizer.vocabularySize == 1515)
        let raw = try #require(tiny["cases"] as? [[String: Any]])
        let cases = try raw.map {
            Case(
                text: try #require($0["text"] as? String), clean: nil,
                ids: try #require($0["ids"] as? [Int]), encoded: nil)
        }
        #expect(cases.count >= 50)
        let failures = Self.compare(tokenizer, cases)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// Hugging Face files built from the gz the way the released vocab.json is laid out (bytes,
    /// bytes + </w>, merges, then the two specials) give the same ids.
    @Test func huggingFaceVocabularyGivesTheSameIds() throws {
        _ = try #require(Self.full, "needs \(bundledVocabularyForTests)")
        let folder = try makeScratchFolder()
        let text = String(decoding: try Gzip.decompress(file: bundledVocabularyForTests), as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let merges = lines[1..<48895]
        var tokens = byteCharacters.map { String($0.scalar) } + byteCharacters.map { String($0.scalar) + "</w>" }
        tokens += merges.map { $0.split(separator: " ").joined() }
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        let vocab = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($0.element, $0.offset) })
        try JSONEncoder().encode(vocab).write(to: URL(fileURLWithPath: folder + "/vocab.json"))
        try ("#version: 0.2\n" + merges.joined(separator: "\n") + "\n")
            .write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)

        let source = try findVocabulary(modelPath: folder + "/model.safetensors", override: nil, environment: [:])
        #expect(source == .huggingFace(vocabJSON: folder + "/vocab.json", merges: folder + "/merges.txt"))
        let tokenizer = try CLIPTokenizer(source)
        #expect(tokenizer.sot == 49406 && tokenizer.eot == 49407 && tokenizer.vocabularySize == 49408)
        // Same ids except where the text spells open_clip's own special tokens, which HF does not treat
        // as special (HF's are <|startoftext|> / <|endoftext|>).
        let (_, cases) = try Self.golden()
        let comparable = cases.filter { !$0.text.lowercased().contains("_of_text>") && !$0.text.contains("oftext|>") }
        #expect(comparable.count >= 300)
        let failures = Self.compare(tokenizer, comparable)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(tokenizer.encode("<|endoftext|>") == [49407])
        #expect(Self.full?.encode("<|endoftext|>") != [49407])
    }

    @Test func tokenizeFrame() throws {
        let tokenizer = try #require(Self.full, "needs \(bundledVocabularyForTests)")
        #expect(tokenizer.tokenize("") == [49406, 49407] + [Int](repeating: 0, count: 75))
        let row = tokenizer.tokenize("a photo of a dog.")
        #expect(Array(row.prefix(8)) == [49406, 320, 1125, 539, 320, 1929, 269, 49407])
        #expect(row.count == 77 && row.dropFirst(8).allSatisfy { $0 == 0 })
        // Shorter contexts truncate the same way (EOT last).
        #expect(tokenizer.tokenize("a photo of a dog.", contextLength: 4) == [49406, 320, 1125, 49407])
        #expect(tokenizer.tokenize(["a", "b"]).count == 2)
        // open_clip's decode gives the same
        #expect(tokenizer.decode(tokenizer.encode("Hello, world! It's 3.14 ☺")) == "hello , world ! it 's 3 . 1 4 ☺ ")
    }

    @Test func pieces() {
        #expect(TextCleaning.pythonLower(Array("ΟΔΟΣ ΣΑΣ Σ".unicodeScalars)) == Array("οδος σας σ".unicodeScalars))
        #expect(TextCleaning.pythonLower(Array("İ".unicodeScalars)) == ["i", "\u{307}"])
        #expect(
            TextCleaning.htmlUnescape(Array("&ampx &notit; &#65 &#x110000; &#128;".unicodeScalars))
                == Array("&x ¬it; A \u{FFFD} €".unicodeScalars))
        #expect(
            TextCleaning.collapseWhitespace(Array(" a \t\n b\u{3000}c  ".unicodeScalars))
                == Array("a b c".unicodeScalars))
        #expect(byteEncoder[Int(UInt8(ascii: " "))] == "\u{120}")
        #expect(byteEncoder[Int(UInt8(ascii: "a"))] == "a")
        #expect(byteCharacters.prefix(3).map(\.byte) == [0x21, 0x22, 0x23])
        #expect(pythonSplit(" a  b\u{85}c ") == ["a", "b", "c"])
    }

    @Test func vocabularyFilesAreFoundOrReported() throws {
        let root = try makeScratchFolder()
        let gz = root + "/bpe_simple_vocab_16e6.txt.gz"
        try FileManager.default.copyItem(atPath: fixturePath("tokenizer/tiny_bpe.txt.gz"), toPath: gz)
        // Next to the weights (file or folder).
        #expect(
            try findVocabulary(modelPath: root + "/model.safetensors", override: nil, environment: [:])
                == .bpeGzip(path: gz))
        #expect(try findVocabulary(modelPath: root, override: nil, environment: [:]) == .bpeGzip(path: gz))
        // --vocab wins, and may name a gz, a vocab.json (merges.txt beside it) or a folder.
        let other = root + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        #expect(try findVocabulary(modelPath: root, override: gz, environment: [:]) == .bpeGzip(path: gz))
        #expect(try findVocabulary(modelPath: nil, override: root, environment: [:]) == .bpeGzip(path: gz))
        #expect(
            thrownMessage { _ = try findVocabulary(modelPath: nil, override: other, environment: [:]) }?
                .contains("folder holds neither") == true)
        try "{}".write(toFile: other + "/vocab.json", atomically: true, encoding: .utf8)
        #expect(
            thrownMessage { _ = try findVocabulary(modelPath: nil, override: other + "/vocab.json", environment: [:]) }?
                .contains("needs merges.txt beside it") == true)
        #expect(
            thrownMessage { _ = try findVocabulary(modelPath: nil, override: root + "/nope.gz", environment: [:]) }
                == "\(root)/nope.gz (--vocab): no such file or folder")
        // $CAVPT_DIST_VOCAB comes after the weights' folder.
        #expect(
            try findVocabulary(modelPath: other, override: nil, environment: ["CAVPT_DIST_VOCAB": gz])
                == .bpeGzip(path: gz))
        // Without anything, the copy in the repository (always present: a clone needs no flag).
        #expect(FileManager.default.fileExists(atPath: bundledVocabularyForTests))
        #expect(bundledVocabularyPath == bundledVocabularyForTests)
        #expect(
            try findVocabulary(modelPath: nil, override: nil, environment: [:])
                == .bpeGzip(path: bundledVocabularyForTests))
    }

    @Test func malformedVocabularyFilesAreReported() throws {
        let folder = try makeScratchFolder()
        let notGzip = folder + "/plain.txt.gz"
        try "i n\nt h\n".write(toFile: notGzip, atomically: true, encoding: .utf8)
        #expect(thrownMessage { _ = try CLIPTokenizer(bpeGzPath: notGzip) }?.contains("not a valid gzip file") == true)

        let original = try Data(contentsOf: URL(fileURLWithPath: fixturePath("tokenizer/tiny_bpe.txt.gz")))
        let truncated = folder + "/truncated.txt.gz"
        try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: truncated))
        #expect(thrownMessage { _ = try CLIPTokenizer(bpeGzPath: truncated) }?.contains("truncated") == true)

        #expect(
            thrownMessage { _ = try CLIPTokenizer(bpeGzPath: folder + "/absent.gz") }?.contains("no such file") == true)

        try "{\"a\": 1}".write(toFile: folder + "/vocab.json", atomically: true, encoding: .utf8)
        try "#version: 0.2\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        #expect(
            thrownMessage { _ = try CLIPTokenizer(vocabJSON: folder + "/vocab.json", merges: folder + "/merges.txt") }
                == "\(folder)/vocab.json: not a CLIP tokenizer vocabulary: no <|startoftext|> token")
        try "[1, 2]".write(toFile: folder + "/vocab.json", atomically: true, encoding: .utf8)
        #expect(
            thrownMessage { _ = try CLIPTokenizer(vocabJSON: folder + "/vocab.json", merges: folder + "/merges.txt") }?
                .contains("expected a JSON object") == true)
    }

    @Test func concatenatedGzipMembersAreRead() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: fixturePath("tokenizer/tiny_bpe.txt.gz")))
        let once = try Gzip.decompress([UInt8](original), file: "tiny")
        let twice = try Gzip.decompress([UInt8](original + original), file: "tiny×2")
        #expect(twice == once + once)
        #expect(
            thrownMessage { _ = try Gzip.decompress([UInt8](original), file: "tiny", maxOutputBytes: 1000) }
                == "tiny: decompresses to more than 1000 bytes; not a CLIP vocabulary")
    }
}
