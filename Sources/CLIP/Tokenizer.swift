// CLIP's byte-level BPE tokenizer, id for id the same as open_clip's `SimpleTokenizer`: text cleanup
// (TextCleaning.swift), the CLIP pre-tokenizer pattern, bytes→unicode, BPE merges by rank, `</w>` word
// ends, start/end-of-text ids, truncation to the context with EOT kept last, zero padding.
import Files
import Foundation
import Tensor

public enum TokenizerError: Error, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case malformed(file: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "\(file): cannot read tokenizer vocabulary: \(reason)"
        case let .malformed(file, reason): return "\(file): not a CLIP tokenizer vocabulary: \(reason)"
        }
    }
}

/// Turns text into CLIP token ids. Thread-safe; BPE results are cached per word.
public final class CLIPTokenizer: @unchecked Sendable {
    public static let defaultContextLength = 77
    /// open_clip reads merges lines [1, 48895) of the vocabulary file: 49152 ids − 256 bytes − 2 specials.
    static let mergeLines = 1..<(49152 - 256 - 2 + 1)

    /// Start- and end-of-text ids (49406 and 49407 for the released vocabulary).
    public let sot: Int
    public let eot: Int
    /// Rows a token embedding needs for these ids: one more than the largest id.
    public let vocabularySize: Int

    private let byteSymbol: [Int32] // [256] id of the byte's character
    private let byteSymbolWordEnd: [Int32] // [256] id of the byte's character + "</w>"
    private let merges: [UInt64: Merge] // (left id, right id) → rank and merged id
    private let specials: [(text: [Unicode.Scalar], id: Int)]
    private let tokenStrings: [Int: String] // id → token text, for decode

    private struct Merge { let rank: Int32; let merged: Int32 }

    private let cacheLock = NSLock()
    private var cache: [[UInt8]: [Int]] = [:]
    private static let cacheLimit = 200_000

    /// Loads open_clip's `bpe_simple_vocab_16e6.txt.gz` (or any file of that format, e.g. a smaller
    /// merge list for test models: the vocabulary is always 256 bytes, 256 bytes + `</w>`, one entry per
    /// merge line read, then `<start_of_text>` and `<end_of_text>`).
    public convenience init(bpeGzPath path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = try Gzip.decompress(file: path, maxOutputBytes: 64 << 20)
        } catch let error as GzipError {
            throw TokenizerError.unreadable(file: path, reason: error.description)
        }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw TokenizerError.malformed(file: path, reason: "decompressed text is not UTF-8")
        }
        // Python's `text.split('\n')[1:48895]`: the trailing empty line of a short file counts too,
        // and like open_clip we give it a vocabulary slot.
        let lines = splitLines(text)
        guard lines.count > 1 else { throw TokenizerError.malformed(file: path, reason: "no merge lines") }
        let mergeLines = lines[
            min(Self.mergeLines.lowerBound, lines.count)..<min(Self.mergeLines.upperBound, lines.count)]

        var vocabulary = byteCharacters.map { String($0.scalar) }
        vocabulary += byteCharacters.map { String($0.scalar) + "</w>" }
        let merges = mergeLines.map(pythonSplit)
        vocabulary += merges.map { $0.joined() }
        vocabulary += ["<start_of_text>", "<end_of_text>"]
        var encoder: [String: Int] = [:]
        for (id, token) in vocabulary.enumerated() { encoder[token] = id } // later duplicates win, as dict(zip())
        try self.init(
            encoder: encoder, merges: merges, sotToken: "<start_of_text>", eotToken: "<end_of_text>", file: path)
    }

    /// Loads a Hugging Face `vocab.json` (token → id) and `merges.txt`; SOT/EOT are `<|startoftext|>`
    /// and `<|endoftext|>`.
    public convenience init(vocabJSON: String, merges mergesPath: String) throws {
        let json: Data
        do { json = Data(try RegularFile.read(vocabJSON)) } catch let error as RegularFileError {
            throw TokenizerError.unreadable(file: vocabJSON, reason: error.reason)
        }
        let encoder: [String: Int]
        do {
            encoder = try JSONDecoder().decode([String: Int].self, from: json)
        } catch {
            throw TokenizerError.malformed(file: vocabJSON, reason: "expected a JSON object of token → integer id")
        }
        let mergesData: Data
        do { mergesData = Data(try RegularFile.read(mergesPath)) } catch let error as RegularFileError {
            throw TokenizerError.unreadable(file: mergesPath, reason: error.reason)
        }
        guard let mergesText = String(data: mergesData, encoding: .utf8) else {
            throw TokenizerError.malformed(file: mergesPath, reason: "not UTF-8")
        }
        // transformers' CLIPTokenizer: `read().strip().split("\n")[1:48895]`.
        let lines = splitLines(pythonStrip(mergesText))
        let mergeLines = lines[
            min(Self.mergeLines.lowerBound, lines.count)..<min(Self.mergeLines.upperBound, lines.count)]
        try self.init(
            encoder: encoder, merges: mergeLines.map(pythonSplit),
            sotToken: "<|startoftext|>", eotToken: "<|endoftext|>", file: vocabJSON)
    }

    /// Loads whichever vocabulary `source` names.
    public convenience init(_ source: VocabularySource) throws {
        switch source {
        case let .bpeGzip(path): try self.init(bpeGzPath: path)
        case let .huggingFace(vocabJSON, merges): try self.init(vocabJSON: vocabJSON, merges: merges)
        }
    }

    private init(encoder: [String: Int], merges: [[String]], sotToken: String, eotToken: String, file: String) throws {
        func bad(_ reason: String) -> TokenizerError { .malformed(file: file, reason: reason) }
        guard let sot = encoder[sotToken] else { throw bad("no \(sotToken) token") }
        guard let eot = encoder[eotToken] else { throw bad("no \(eotToken) token") }
        guard let maxID = encoder.values.max(), let minID = encoder.values.min(), minID >= 0, maxID < Int(Int32.max)
        else {
            throw bad("token ids must lie in 0..<2³¹")
        }
        var byteSymbol: [Int32] = []
        var byteSymbolWordEnd: [Int32] = []
        for scalar in byteEncoder {
            guard let id = encoder[String(scalar)], let end = encoder[String(scalar) + "</w>"] else {
                throw bad("byte token \"\(scalar)\" or \"\(scalar)</w>\" is missing")
            }
            byteSymbol.append(Int32(id))
            byteSymbolWordEnd.append(Int32(end))
        }
        var table: [UInt64: Merge] = [:]
        for (rank, parts) in merges.enumerated() {
            // Only pairs can merge; a pair whose halves are not tokens can never occur in a word.
            guard parts.count == 2, let left = encoder[parts[0]], let right = encoder[parts[1]] else { continue }
            guard let merged = encoder[parts[0] + parts[1]] else {
                throw bad(
                    "merge \"\(excerpt(parts[0] + " " + parts[1]))\" (line \(rank + 2)) produces a token missing "
                        + "from the vocabulary"
                )
            }
            // Later duplicates win, as in open_clip's dict(zip(merges, range(...))).
            table[Self.pairKey(Int32(left), Int32(right))] = Merge(rank: Int32(rank), merged: Int32(merged))
        }
        self.sot = sot
        self.eot = eot
        self.vocabularySize = maxID + 1
        self.byteSymbol = byteSymbol
        self.byteSymbolWordEnd = byteSymbolWordEnd
        self.merges = table
        self.specials = [(Array(sotToken.unicodeScalars), sot), (Array(eotToken.unicodeScalars), eot)]
        var strings: [Int: String] = [:]
        for (token, id) in encoder { strings[id] = token }
        self.tokenStrings = strings
    }

    @inline(__always) private static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    // MARK: Encoding

    /// The ids of `text` without start/end tokens (open_clip `SimpleTokenizer.encode`).
    public func encode(_ text: String) -> [Int] {
        let cleaned = TextCleaning.cleanLower(text)
        var ids: [Int] = []
        for piece in preTokenize(cleaned) {
            if let special = piece.special { ids.append(special); continue }
            var bytes: [UInt8] = []
            for scalar in cleaned[piece.range] { appendUTF8(scalar, to: &bytes) }
            ids += bpe(bytes)
        }
        return ids
    }

    /// `contextLength` ids: SOT, the text's ids, EOT, zeros; too-long text is cut with EOT kept last.
    public func tokenize(_ text: String, contextLength: Int = CLIPTokenizer.defaultContextLength) -> [Int] {
        var ids = [sot] + encode(text) + [eot]
        if ids.count > contextLength {
            ids.removeLast(ids.count - contextLength)
            if contextLength > 0 { ids[contextLength - 1] = eot }
        }
        return ids + [Int](repeating: 0, count: contextLength - ids.count)
    }

    public func tokenize(_ texts: [String], contextLength: Int = CLIPTokenizer.defaultContextLength) -> [[Int]] {
        texts.map { tokenize($0, contextLength: contextLength) }
    }

    /// Text for ids (open_clip `decode`): word ends become spaces; invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int]) -> String {
        var text = ""
        for id in ids { text += tokenStrings[id] ?? "" }
        var bytes: [UInt8] = []
        var word = text.unicodeScalars[...]
        while let scalar = word.first {
            if word.starts(with: "</w>".unicodeScalars) {
                bytes.append(0x20)
                word = word.dropFirst(4)
                continue
            }
            if let byte = byteDecoder[scalar] { bytes.append(byte) } else { bytes += Array(String(scalar).utf8) }
            word = word.dropFirst()
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Pre-tokenizer

    private struct Piece { let range: Range<Int>; let special: Int? }

    /// open_clip's pattern, with re.IGNORECASE, matched leftmost-first as `regex.findall` does:
    /// `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`.
    private func preTokenize(_ text: [Unicode.Scalar]) -> [Piece] {
        var pieces: [Piece] = []
        var i = 0
        scan: while i < text.count {
            for special in specials where matchesIgnoringCase(text, at: i, special.text) {
                let range = i..<(i + special.text.count)
                // Only the exact token is special; a case-folded look-alike ("<ſtart_of_text>") is BPE'd.
                let exact = text[range].elementsEqual(special.text)
                pieces.append(Piece(range: range, special: exact ? special.id : nil))
                i = range.upperBound
                continue scan
            }
            if text[i] == "'" {
                for suffix in contractionSuffixes where matchesIgnoringCase(text, at: i + 1, suffix) {
                    pieces.append(Piece(range: i..<(i + 1 + suffix.count), special: nil))
                    i += 1 + suffix.count
                    continue scan
                }
            }
            let kind = characterClass(text[i])
            var j = i + 1
            switch kind {
            case .letter:
                while j < text.count && characterClass(text[j]) == .letter { j += 1 }
            case .number:
                break // [\p{N}] is a single character
            case .other:
                while j < text.count && characterClass(text[j]) == .other { j += 1 }
            case .space, .unmatched:
                i += 1
                continue scan
            }
            pieces.append(Piece(range: i..<j, special: nil))
            i = j
        }
        return pieces
    }

    private let contractionSuffixes: [[Unicode.Scalar]] = ["s", "t", "re", "ve", "m", "ll", "d"].map {
        Array($0.unicodeScalars)
    }

    // MARK: BPE

    /// BPE over one pre-token's UTF-8 bytes: start from byte symbols (the last one word-final) and
    /// repeatedly merge every occurrence of the adjacent pair with the lowest merge rank.
    private func bpe(_ bytes: [UInt8]) -> [Int] {
        cacheLock.lock()
        if let cached = cache[bytes] { cacheLock.unlock(); return cached }
        cacheLock.unlock()

        var word = [Int32]()
        word.reserveCapacity(bytes.count)
        for (k, byte) in bytes.enumerated() {
            word.append(k == bytes.count - 1 ? byteSymbolWordEnd[Int(byte)] : byteSymbol[Int(byte)])
        }
        var next = [Int32]()
        next.reserveCapacity(bytes.count)
        while word.count > 1 {
            var best: Merge?
            var first: Int32 = 0, second: Int32 = 0
            for k in 0..<(word.count - 1) {
                if let merge = merges[Self.pairKey(word[k], word[k + 1])], merge.rank < (best?.rank ?? .max) {
                    best = merge
                    first = word[k]
                    second = word[k + 1]
                }
            }
            guard let best else { break }
            next.removeAll(keepingCapacity: true)
            var k = 0
            while k < word.count {
                if k + 1 < word.count && word[k] == first && word[k + 1] == second {
                    next.append(best.merged)
                    k += 2
                } else {
                    next.append(word[k])
                    k += 1
                }
            }
            swap(&word, &next)
        }
        let ids = word.map { Int($0) }

        cacheLock.lock()
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = ids
        cacheLock.unlock()
        return ids
    }
}

// MARK: Character classes and tables

enum CharacterClass { case letter, number, space, other, unmatched }

/// Which alternative of the pre-tokenizer pattern a character can belong to.
@inline(__always)
func characterClass(_ c: Unicode.Scalar) -> CharacterClass {
    if c.isASCII {
        switch c.value {
        case 0x61...0x7A, 0x41...0x5A: return .letter
        case 0x30...0x39: return .number
        case 0x09...0x0D, 0x20: return .space
        default: return .other
        }
    }
    switch c.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: break
    }
    switch c.value {
    // The `regex` module's \s beyond ASCII.
    case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return .space
    // U+0345 (combining ypogegrammeni) case-folds to ι, and under re.IGNORECASE the `regex` module then
    // lets it match neither [\p{L}] nor [^\s\p{L}\p{N}]: findall skips it like whitespace.
    case 0x345: return .unmatched
    default: return .other
    }
}

/// Whether `pattern` (ASCII) occurs at `text[start...]` under re.IGNORECASE. After lower-casing, the
/// only non-ASCII character that case-folds onto a pattern letter is ſ (U+017F) ~ s.
func matchesIgnoringCase(_ text: [Unicode.Scalar], at start: Int, _ pattern: [Unicode.Scalar]) -> Bool {
    guard start + pattern.count <= text.count else { return false }
    for (k, p) in pattern.enumerated() {
        let c = text[start + k]
        if c == p { continue }
        if p == "s" && c == "\u{17F}" { continue }
        if p == "k" && c == "\u{212A}" { continue }
        if p.isASCII && c.isASCII && p.properties.isAlphabetic
            && (c.value | 0x20) == (p.value | 0x20)
        {
            continue
        }
        return false
    }
    return true
}

/// open_clip's `bytes_to_unicode()` as (byte, character) pairs in its dict order: printable Latin-1
/// bytes map to themselves, the rest to U+0100 onwards, so no token holds whitespace or control
/// characters. This order (printable bytes first) is the id order of the first 256 vocabulary entries.
let byteCharacters: [(byte: UInt8, scalar: Unicode.Scalar)] = {
    let printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
    var pairs = printable.map { (UInt8($0), Unicode.Scalar(UInt8($0))) }
    var extra: UInt32 = 0
    for byte in 0..<256 where !printable.contains(byte) {
        // 256 + extra stays below U+0144, always a valid scalar.
        pairs.append((UInt8(byte), Unicode.Scalar(256 + extra)!))
        extra += 1
    }
    return pairs
}()

/// The character standing for each byte value, indexed by byte.
let byteEncoder: [Unicode.Scalar] = {
    var table = [Unicode.Scalar](repeating: " ", count: 256)
    for (byte, scalar) in byteCharacters { table[Int(byte)] = scalar }
    return table
}()

/// The byte each character stands for.
let byteDecoder: [Unicode.Scalar: UInt8] = Dictionary(uniqueKeysWithValues: byteCharacters.map { ($0.scalar, $0.byte) })

/// Appends the UTF-8 encoding of `scalar`.
@inline(__always)
func appendUTF8(_ scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
    let v = scalar.value
    switch v {
    case 0..<0x80:
        bytes.append(UInt8(v))
    case 0x80..<0x800:
        bytes += [UInt8(0xC0 | (v >> 6)), UInt8(0x80 | (v & 0x3F))]
    case 0x800..<0x10000:
        bytes += [UInt8(0xE0 | (v >> 12)), UInt8(0x80 | ((v >> 6) & 0x3F)), UInt8(0x80 | (v & 0x3F))]
    default:
        bytes += [
            UInt8(0xF0 | (v >> 18)), UInt8(0x80 | ((v >> 12) & 0x3F)),
            UInt8(0x80 | ((v >> 6) & 0x3F)), UInt8(0x80 | (v & 0x3F)),
        ]
    }
}

/// Python's `text.split('\n')`: on scalars, so that "\r\n" (one Swift Character) still splits.
func splitLines(_ text: String) -> [String] {
    text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map {
        String(String.UnicodeScalarView($0))
    }
}

/// Python's `str.split()` with no argument.
func pythonSplit(_ text: String) -> [String] {
    text.unicodeScalars.split(whereSeparator: TextCleaning.isPythonWhitespace).map {
        String(String.UnicodeScalarView($0))
    }
}

/// Python's `str.strip()` with no argument.
func pythonStrip(_ text: String) -> String {
    let scalars = Array(text.unicodeScalars)
    guard let first = scalars.firstIndex(where: { !TextCleaning.isPythonWhitespace($0) }),
        let last = scalars.lastIndex(where: { !TextCleaning.isPythonWhitespace($0) })
    else { return "" }
    return String(String.UnicodeScalarView(scalars[first...last]))
}
