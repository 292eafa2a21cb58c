// open_clip's text cleanup before BPE, reproduced step for step on Unicode scalars (Python strings
// index code points, so working on scalars keeps every rule's meaning):
//
//   basic_clean(text)      = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
//   whitespace_clean(text) = " ".join(text.split())
//   then text.lower()
//
// ftfy.fix_text is reproduced except for its mojibake repair (`fix_encoding`: re-decoding text that was
// decoded with the wrong codec, a statistical heuristic with large tables). Text that ftfy would
// re-decode (e.g. "cafÃ©") therefore tokenizes differently here; the golden test records which of its
// strings that excludes. Every other ftfy step (HTML entities, C1 controls, Latin ligatures,
// full/half-width forms, curly quotes, line breaks, terminal escapes, control characters, NFC) is done.
import Foundation

enum TextCleaning {
    /// open_clip's `_clean_lower`: basic_clean, whitespace_clean, lower-case.
    static func cleanLower(_ text: String) -> [Unicode.Scalar] {
        var scalars = Array(text.unicodeScalars)
        scalars = ftfyFixText(scalars)
        scalars = htmlUnescape(htmlUnescape(scalars))
        scalars = collapseWhitespace(scalars) // also strips, which makes basic_clean's strip moot
        return pythonLower(scalars)
    }

    // MARK: ftfy.fix_text without fix_encoding

    /// ftfy fixes text line by line; HTML unescaping ("auto") switches off for good at the first line
    /// that contains "<", since that looks like real HTML whose entities are meant literally.
    static func ftfyFixText(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(text.count)
        var unescape = true
        var start = 0
        while start < text.count {
            var end = start
            while end < text.count && text[end] != "\n" { end += 1 }
            if end < text.count { end += 1 } // the segment keeps its "\n"
            var segment = Array(text[start..<end])
            if segment.contains("<") { unescape = false }
            // ftfy repeats its fixers until nothing changes; a few rounds always suffice.
            for _ in 0..<16 {
                let before = segment
                if unescape { segment = ftfyUnescapeHTML(segment) }
                segment = segment.map(fixC1Control)
                segment = translate(segment, TextTables.ligatures)
                segment = translate(segment, TextTables.widthMap)
                segment = segment.map(uncurlQuote)
                segment = fixLineBreaks(segment)
                segment = removeTerminalEscapes(segment)
                segment = segment.filter { !isControlCharacter($0) }
                segment = nfc(segment)
                if segment == before { break }
            }
            output += segment
            start = end
        }
        return output
    }

    static func fixC1Control(_ c: Unicode.Scalar) -> Unicode.Scalar {
        guard (0x80...0x9F).contains(c.value), let mapped = TextTables.c1Controls[c.value],
            let scalar = Unicode.Scalar(mapped)
        else { return c }
        return scalar
    }

    static func translate(_ text: [Unicode.Scalar], _ table: [UInt32: String]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for c in text {
            if let replacement = table[c.value] { out += replacement.unicodeScalars } else { out.append(c) }
        }
        return out
    }

    /// ftfy `uncurl_quotes`: U+02BC, U+2018–U+201B → ', U+201C–U+201F → ".
    static func uncurlQuote(_ c: Unicode.Scalar) -> Unicode.Scalar {
        switch c.value {
        case 0x2BC, 0x2018...0x201B: return "'"
        case 0x201C...0x201F: return "\""
        default: return c
        }
    }

    /// ftfy `fix_line_breaks`: CRLF, CR, U+2028, U+2029, U+85 → LF.
    static func fixLineBreaks(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            let c = text[i]
            if c == "\r" {
                out.append("\n")
                if i + 1 < text.count && text[i + 1] == "\n" { i += 1 }
            } else if c.value == 0x2028 || c.value == 0x2029 || c.value == 0x85 {
                out.append("\n")
            } else {
                out.append(c)
            }
            i += 1
        }
        return out
    }

    /// ftfy `remove_terminal_escapes`: ESC "[" (digits | ";")* ASCII-letter. Python's `\d` takes any Nd digit.
    static func removeTerminalEscapes(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard text.contains("\u{1B}") else { return text }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < text.count {
            if text[i] == "\u{1B}", i + 1 < text.count, text[i + 1] == "[" {
                var j = i + 2
                while j < text.count && (text[j] == ";" || text[j].properties.generalCategory == .decimalNumber) {
                    j += 1
                }
                if j < text.count && text[j].isASCII && text[j].properties.isAlphabetic {
                    i = j + 1
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    static func isControlCharacter(_ c: Unicode.Scalar) -> Bool {
        TextTables.controlCharacters.contains { $0.contains(c.value) }
    }

    static func nfc(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        // ASCII is already in NFC; skip the round trip through Foundation for the common case.
        if text.allSatisfy({ $0.isASCII }) { return text }
        var string = String()
        string.unicodeScalars.append(contentsOf: text)
        return Array(string.precomposedStringWithCanonicalMapping.unicodeScalars)
    }

    /// ftfy `unescape_html`: `&#?[0-9A-Za-z]{1,24};` replaced when it names an html5 entity (or one of
    /// ftfy's upper-cased ones), or is a numeric reference that html.unescape fully decodes.
    static func ftfyUnescapeHTML(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard text.contains("&") else { return text }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < text.count {
            guard text[i] == "&" else { out.append(text[i]); i += 1; continue }
            var j = i + 1
            let numeric = j < text.count && text[j] == "#"
            if numeric { j += 1 }
            let nameStart = j
            while j < text.count && j - nameStart < 25 && isASCIIAlphanumeric(text[j]) { j += 1 }
            let nameLength = j - nameStart
            guard nameLength >= 1, nameLength <= 24, j < text.count, text[j] == ";" else {
                out.append(text[i]); i += 1; continue
            }
            let entity = Array(text[i...j]) // "&...;"
            let name = String(String.UnicodeScalarView(text[nameStart...j])) // "name;"
            if !numeric, let replacement = HTMLEntities.ftfy[name] {
                out += replacement
            } else if numeric {
                let decoded = htmlUnescape(entity)
                out += decoded.contains(";") ? entity : decoded
            } else {
                out += entity
            }
            i = j + 1
        }
        return out
    }

    static func isASCIIAlphanumeric(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        default: return false
        }
    }

    // MARK: Python html.unescape

    /// Python's `html.unescape`: `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` replaced by
    /// its character reference or (longest-prefix) named entity.
    static func htmlUnescape(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard text.contains("&") else { return text }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            guard text[i] == "&", i + 1 < text.count else { out.append(text[i]); i += 1; continue }
            if text[i + 1] == "#" {
                // Numeric reference: decimal, else hexadecimal.
                var j = i + 2
                var hex = false
                if j < text.count && (text[j] == "x" || text[j] == "X") { hex = true; j += 1 }
                let digitsStart = j
                while j < text.count && (hex ? isHexDigit(text[j]) : isDecimalDigit(text[j])) { j += 1 }
                // "&#x" without hex digits also fails the decimal alternative: "x" is no digit.
                if j == digitsStart { out.append(text[i]); i += 1; continue }
                let digits = String(String.UnicodeScalarView(text[digitsStart..<j]))
                if j < text.count && text[j] == ";" { j += 1 }
                out += numericCharacterReference(digits, radix: hex ? 16 : 10)
                i = j
                continue
            }
            // Named reference: up to 32 characters that are not \t \n \f space < & # ;, then an optional ";".
            var j = i + 1
            while j < text.count && j - (i + 1) < 32 && !isNamedReferenceStop(text[j]) { j += 1 }
            guard j > i + 1 else { out.append(text[i]); i += 1; continue }
            if j < text.count && text[j] == ";" { j += 1 }
            let name = Array(text[(i + 1)..<j])
            out += namedCharacterReference(name)
            i = j
        }
        return out
    }

    static func isDecimalDigit(_ c: Unicode.Scalar) -> Bool { (0x30...0x39).contains(c.value) }
    static func isHexDigit(_ c: Unicode.Scalar) -> Bool {
        isDecimalDigit(c) || (0x41...0x46).contains(c.value) || (0x61...0x66).contains(c.value)
    }
    static func isNamedReferenceStop(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "\t", "\n", "\u{0C}", " ", "<", "&", "#", ";": return true;
        default: return false
        }
    }

    /// Python's `_replace_charref` for `#…`: fixed replacements, then U+FFFD for surrogates and values
    /// past U+10FFFF, nothing for the invalid code points, else the character.
    static func numericCharacterReference(_ digits: String, radix: Int) -> [Unicode.Scalar] {
        // Overflow means the value is far past U+10FFFF.
        guard let value = UInt32(digits, radix: radix) else { return ["\u{FFFD}"] }
        if let fixed = TextTables.invalidCharrefs[value], let scalar = Unicode.Scalar(fixed) { return [scalar] }
        if (0xD800...0xDFFF).contains(value) || value > 0x10FFFF { return ["\u{FFFD}"] }
        if TextTables.invalidCodepoints.contains(where: { $0.contains(value) }) { return [] }
        return Unicode.Scalar(value).map { [$0] } ?? ["\u{FFFD}"]
    }

    /// Python's `_replace_charref` for names: exact html5 name, else the longest html5 prefix of at
    /// least two characters followed by the rest verbatim, else unchanged.
    static func namedCharacterReference(_ name: [Unicode.Scalar]) -> [Unicode.Scalar] {
        let full = String(String.UnicodeScalarView(name))
        if let replacement = HTMLEntities.html5[full] { return replacement }
        var length = name.count - 1
        while length > 1 {
            let prefix = String(String.UnicodeScalarView(name[0..<length]))
            if let replacement = HTMLEntities.html5[prefix] { return replacement + name[length...] }
            length -= 1
        }
        return ["&"] + name
    }

    // MARK: whitespace and case

    static func isPythonWhitespace(_ c: Unicode.Scalar) -> Bool { TextTables.pythonWhitespace.contains(c.value) }

    /// `" ".join(text.split())`: runs of Python whitespace become one space, ends stripped.
    static func collapseWhitespace(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var pendingSpace = false
        for c in text {
            if isPythonWhitespace(c) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" "); pendingSpace = false }
                out.append(c)
            }
        }
        return out
    }

    /// Python's `str.lower()`: full lower-case mappings (İ → i̇), with capital sigma becoming final
    /// ς when it ends a word (Unicode's Final_Sigma context), which Swift's `lowercased()` omits.
    static func pythonLower(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for (i, c) in text.enumerated() {
            if c.isASCII {
                out.append((0x41...0x5A).contains(c.value) ? Unicode.Scalar(UInt8(c.value + 32)) : c)
            } else if c.value == 0x3A3 {
                out.append(isFinalSigma(text, at: i) ? "\u{3C2}" : "\u{3C3}")
            } else {
                out += c.properties.lowercaseMapping.unicodeScalars
            }
        }
        return out
    }

    /// \p{cased} \p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased}), as CPython's handle_capital_sigma.
    static func isFinalSigma(_ text: [Unicode.Scalar], at index: Int) -> Bool {
        var j = index - 1
        while j >= 0 && text[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0 && text[j].properties.isCased else { return false }
        j = index + 1
        while j < text.count && text[j].properties.isCaseIgnorable { j += 1 }
        return j == text.count || !text[j].properties.isCased
    }
}

/// The entity tables, parsed once from TextTables' text form.
enum HTMLEntities {
    /// Python's html5 names (with and without ";") → replacement.
    static let html5: [String: [Unicode.Scalar]] = parse(TextTables.html5Entities)
    /// ftfy's decodable names (all ";"-terminated): html5's plus the upper-cased extras.
    static let ftfy: [String: [Unicode.Scalar]] = {
        var table = html5.filter { $0.key.hasSuffix(";") }
        for (name, value) in parse(TextTables.ftfyUppercaseEntities) { table[name] = value }
        return table
    }()

    static func parse(_ text: String) -> [String: [Unicode.Scalar]] {
        var table: [String: [Unicode.Scalar]] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t")
            guard fields.count == 2 else { continue }
            let scalars = fields[1].split(separator: " ").compactMap {
                UInt32($0, radix: 16).flatMap(Unicode.Scalar.init)
            }
            table[String(fields[0])] = scalars
        }
        return table
    }
}
