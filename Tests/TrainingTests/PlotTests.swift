// `cavpt-dist plot` on real runs: a valid SVG with one curve per run and series, axes labelled; a
// PNG with the PNG signature and IHDR of the figure's size.
import Foundation
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite(.serialized) struct PlotTests {
    final class SVGReader: NSObject, XMLParserDelegate {
        var names: [String] = [], texts: [String] = [], current = ""
        func parser(
            _ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            if e == "polyline", let name = attributes["data-name"] { names.append(name) }
            current = ""
        }
        func parser(_ p: XMLParser, foundCharacters s: String) { current += s }
        func parser(_ p: XMLParser, didEndElement e: String, namespaceURI: String?, qualifiedName: String?) {
            if e == "text" { texts.append(current) }
        }
    }

    @Test func runsOverlayInOnePicture() throws {
        let base = temporaryDirectory("plot")
        for method in ["vpt_deep", "coop"] {
            let r = try cavptDist(tinyRun.trainArguments(method: method, output: base + "/runs/\(method)", epochs: 3))
            try #require(r.status == 0, "\(r.stderr)")
        }
        let svg = base + "/curves.svg"
        let r = try cavptDist(["plot", "--run", base + "/runs/vpt_deep", "--run", base + "/runs/coop", "--out", svg])
        try #require(r.status == 0, "\(r.stderr)")
        let reader = SVGReader()
        let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: svg)))
        parser.delegate = reader
        #expect(parser.parse())
        // Loss and accuracy per run; lr: visual for vpt_deep, text for coop (no group without tensors).
        #expect(
            Set(reader.names) == [
                "vpt_deep seed 3 loss", "coop seed 3 loss", "vpt_deep seed 3", "coop seed 3",
                "vpt_deep seed 3 visual", "coop seed 3 text",
            ], "\(reader.names)")
        for label in ["training loss", "train accuracy", "learning rate", "epoch", "accuracy (%)", "lr"] {
            #expect(reader.texts.contains(label), "\(label)")
        }
        // A folder of runs works too, and PNG output.
        let png = base + "/curves.png"
        let p = try cavptDist(["plot", "--run", base + "/runs", "--out", png])
        try #require(p.status == 0, "\(p.stderr)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: png)))
        #expect(
            Array(bytes.prefix(16)) == [
                0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52,
            ])
        let bad = try cavptDist(["plot", "--run", base + "/runs", "--out", base + "/curves.gif"])
        #expect(bad.status != 0 && bad.stderr.contains(".svg or .png"))
    }
}
