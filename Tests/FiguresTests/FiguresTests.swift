// The figures' building blocks: the embedded font, PNG files that decode to the drawn pixels, and
// charts whose SVG holds one polyline per series with labelled axes.
import CZlib
import Foundation
import Testing

@testable import Figures

#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite struct FiguresTests {
    @Test func theFontHasEveryPrintableGlyph() {
        #expect(Font.masks.count == GlyphTable.glyphs.last!.3 + GlyphTable.glyphs.last!.1 * GlyphTable.height)
        #expect(Font.width("W") > Font.width("i") && Font.width(" ") > 0)
        var c = Canvas(width: 60, height: 20)
        let w = c.text("Ag", x: 2, y: 1)
        #expect(w == Font.width("Ag"))
        #expect(c.pixels.contains { $0 < 100 }, "the text left dark pixels")
    }

    /// Decodes our own PNG (zlib inflate, filter 0) back to pixels.
    func be32(_ b: [UInt8], _ i: Int) -> Int {
        let hi = Int(b[i]) << 24 | Int(b[i + 1]) << 16
        return hi | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }

    func decode(_ png: Data) throws -> (width: Int, height: Int, pixels: [UInt8]) {
        let bytes = [UInt8](png)
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var i = 8, width = 0, height = 0
        var idat: [UInt8] = []
        while i + 8 <= bytes.count {
            let n = be32(bytes, i)
            let type = String(decoding: bytes[(i + 4)..<(i + 8)], as: UTF8.self)
            let body = Array(bytes[(i + 4)..<(i + 8 + n)])
            let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
            #expect(Int(crc) == be32(bytes, i + 8 + n), "\(type) CRC")
            let payload = Array(body.dropFirst(4))
            if type == "IHDR" {
                width = be32(payload, 0)
                height = be32(payload, 4)
                #expect(Array(payload[8...]) == [8, 2, 0, 0, 0])
            }
            if type == "IDAT" { idat += payload }
            i += 12 + n
        }
        var size = uLong(height * (width * 3 + 1))
        var raw = [UInt8](repeating: 0, count: Int(size))
        #expect(uncompress(&raw, &size, idat, uLong(idat.count)) == Z_OK)
        var pixels: [UInt8] = []
        let stride = width * 3 + 1
        for y in 0..<height {
            let start = y * stride
            #expect(raw[start] == 0)
            pixels += raw[(start + 1)..<(start + stride)]
        }
        return (width, height, pixels)
    }

    @Test func pngDecodesToTheCanvas() throws {
        var c = Canvas(width: 37, height: 23)
        c.fill(x: 3, y: 4, width: 10, height: 5, RGB(10, 200, 30))
        c.line(0, 0, 36, 22, .black)
        let decoded = try decode(try PNG.encode(c))
        #expect(decoded.width == 37 && decoded.height == 23)
        #expect(decoded.pixels == c.pixels)
    }

    @Test func chartsDrawEverySeriesWithLabelledAxes() throws {
        let epochs: [Double] = (1...10).map(Double.init)
        let a = Series(name: "vpt_deep seed 1", points: epochs.map { e -> (x: Double, y: Double) in (e, 3 / e) })
        let b = Series(name: "coop seed 1", points: epochs.map { e -> (x: Double, y: Double) in (e, 2 / e + 0.5) })
        let lr = Series(
            name: "visual", points: epochs.map { e -> (x: Double, y: Double) in (e, e == 1 ? 1e-5 : 0.001 * (11 - e)) })
        let figure = Figure(
            panels: [
                Panel(title: "training loss", yLabel: "loss", series: [a, b]),
                Panel(title: "learning rate", yLabel: "lr", series: [lr], logY: true),
            ], columns: 2)
        let svg = figure.svg()
        // Valid XML, a polyline per series, the axis labels and tick labels present.
        final class Counter: NSObject, XMLParserDelegate {
            var polylines = 0, texts: [String] = [], current = ""
            func parser(
                _ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]
            ) {
                if e == "polyline" { polylines += 1 }
                current = ""
            }
            func parser(_ p: XMLParser, foundCharacters s: String) { current += s }
            func parser(_ p: XMLParser, didEndElement e: String, namespaceURI: String?, qualifiedName: String?) {
                if e == "text" { texts.append(current) }
            }
        }
        let counter = Counter()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = counter
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        #expect(counter.polylines == 3)
        for label in [
            "training loss", "learning rate", "epoch", "loss", "lr", "vpt_deep seed 1", "coop seed 1", "1e-5", "1e-2",
        ] {
            #expect(counter.texts.contains(label), "\(label) not in \(counter.texts)")
        }
        // The raster has each series' colour.
        let pixels = figure.canvas().pixels
        for color in [figure.colors["vpt_deep seed 1"]!, figure.colors["coop seed 1"]!] {
            var found = false
            for i in Swift.stride(from: 0, to: pixels.count, by: 3)
            where pixels[i] == color.r && pixels[i + 1] == color.g && pixels[i + 2] == color.b {
                found = true
                break
            }
            #expect(found, "\(color) not drawn")
        }
        #expect(niceTicks(0, 1).count == 6 && niceTicks(0, 1).first == 0 && niceTicks(0, 1).last == 1)
    }
}
