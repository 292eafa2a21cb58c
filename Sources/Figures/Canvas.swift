// An RGB raster the figures draw on: filled rectangles, anti-aliased lines, text from the
// embedded DejaVu glyph masks, images and colour-mapped heat maps blended in.
import Foundation

public struct RGB: Sendable, Equatable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
    public static let white = RGB(255, 255, 255), black = RGB(0, 0, 0), gray = RGB(128, 128, 128),
        light = RGB(225, 225, 225)
    /// Matplotlib's "tab10" cycle: distinguishable series colours.
    public static let cycle: [RGB] = [
        RGB(31, 119, 180), RGB(255, 127, 14), RGB(44, 160, 44), RGB(214, 39, 40), RGB(148, 103, 189),
        RGB(140, 86, 75), RGB(227, 119, 194), RGB(127, 127, 127), RGB(188, 189, 34), RGB(23, 190, 207),
    ]
    public var hex: String { String(format: "#%02x%02x%02x", r, g, b) }
}

public struct Canvas: Sendable {
    public let width: Int, height: Int
    /// [height, width, 3] bytes, row-major.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: RGB = .white) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, background)
    }

    /// Blends `color` into pixel (x, y) with opacity `alpha` in [0, 1].
    public mutating func blend(_ x: Int, _ y: Int, _ color: RGB, _ alpha: Double) {
        guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
        let a = min(alpha, 1), i = (y * width + x) * 3
        pixels[i] = UInt8((Double(pixels[i]) * (1 - a) + Double(color.r) * a).rounded())
        pixels[i + 1] = UInt8((Double(pixels[i + 1]) * (1 - a) + Double(color.g) * a).rounded())
        pixels[i + 2] = UInt8((Double(pixels[i + 2]) * (1 - a) + Double(color.b) * a).rounded())
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ color: RGB) {
        for yy in max(0, y)..<min(height, y + h) {
            for xx in max(0, x)..<min(width, x + w) {
                let i = (yy * width + xx) * 3
                pixels[i] = color.r; pixels[i + 1] = color.g; pixels[i + 2] = color.b
            }
        }
    }

    /// A line of `thickness` pixels, anti-aliased by distance to the segment.
    public mutating func line(
        _ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ color: RGB, thickness: Double = 1.5
    ) {
        let r = thickness / 2
        let (minX, maxX) = (Int((min(x0, x1) - r - 1).rounded(.down)), Int((max(x0, x1) + r + 1).rounded(.up)))
        let (minY, maxY) = (Int((min(y0, y1) - r - 1).rounded(.down)), Int((max(y0, y1) + r + 1).rounded(.up)))
        let (dx, dy) = (x1 - x0, y1 - y0)
        let length2 = dx * dx + dy * dy
        for y in max(0, minY)...max(0, min(height - 1, maxY)) {
            for x in max(0, minX)...max(0, min(width - 1, maxX)) {
                let (px, py) = (Double(x) + 0.5, Double(y) + 0.5)
                let t = length2 > 0 ? max(0, min(1, ((px - x0) * dx + (py - y0) * dy) / length2)) : 0
                let (cx, cy) = (x0 + t * dx - px, y0 + t * dy - py)
                let distance = (cx * cx + cy * cy).squareRoot()
                blend(x, y, color, r + 0.5 - distance)
            }
        }
    }

    /// A polyline dashed 6 on, 4 off along its length.
    public mutating func dashedPolyline(_ points: [(Double, Double)], _ color: RGB, thickness: Double = 1.8) {
        var phase = 0.0
        for (p, q) in zip(points, points.dropFirst()) {
            let length = ((q.0 - p.0) * (q.0 - p.0) + (q.1 - p.1) * (q.1 - p.1)).squareRoot()
            var t = 0.0
            while t < length {
                let on = phase < 6
                let run = min(length - t, on ? 6 - phase : 10 - phase)
                if on {
                    let (a, b) = (t / length, (t + run) / length)
                    line(
                        p.0 + (q.0 - p.0) * a, p.1 + (q.1 - p.1) * a, p.0 + (q.0 - p.0) * b, p.1 + (q.1 - p.1) * b,
                        color, thickness: thickness)
                }
                t += run
                phase = (phase + run).truncatingRemainder(dividingBy: 10)
            }
        }
    }

    /// Text with its top-left corner at (x, y); returns its width. Characters outside printable
    /// ASCII are drawn as '?'.
    @discardableResult
    public mutating func text(_ string: String, x: Int, y: Int, _ color: RGB = .black) -> Int {
        var cursor = x
        for scalar in string.unicodeScalars {
            let glyph = Font.glyph(scalar)
            for gy in 0..<Font.height {
                for gx in 0..<glyph.width {
                    let coverage = Font.masks[glyph.offset + gy * glyph.width + gx]
                    if coverage > 0 { blend(cursor + gx, y + gy, color, Double(coverage) / 255) }
                }
            }
            cursor += glyph.advance
        }
        return cursor - x
    }

    /// Text turned 90° counter-clockwise (a y-axis label), its bottom-left at (x, y).
    public mutating func verticalText(_ string: String, x: Int, y: Int, _ color: RGB = .black) {
        var cursor = y
        for scalar in string.unicodeScalars {
            let glyph = Font.glyph(scalar)
            for gy in 0..<Font.height {
                for gx in 0..<glyph.width {
                    let coverage = Font.masks[glyph.offset + gy * glyph.width + gx]
                    if coverage > 0 { blend(x + gy, cursor - gx, color, Double(coverage) / 255) }
                }
            }
            cursor -= glyph.advance
        }
    }

    /// Copies an RGB image ([h, w, 3] bytes) with its top-left corner at (x, y).
    public mutating func draw(image: [UInt8], width w: Int, height h: Int, x: Int, y: Int) {
        for yy in 0..<h where y + yy >= 0 && y + yy < height {
            for xx in 0..<w where x + xx >= 0 && x + xx < width {
                let s = (yy * w + xx) * 3, d = ((y + yy) * width + x + xx) * 3
                pixels[d] = image[s]; pixels[d + 1] = image[s + 1]; pixels[d + 2] = image[s + 2]
            }
        }
    }
}

/// The embedded font: DejaVu Sans glyph masks (GlyphTable.swift, generated by tools/make_font_table.py).
public enum Font {
    public static let height = GlyphTable.height
    static let masks: [UInt8] = Array(
        Data(base64Encoded: GlyphTable.base64, options: .ignoreUnknownCharacters) ?? Data())
    static let table: [(width: Int, advance: Int, offset: Int)] = GlyphTable.glyphs.map { ($0.1, $0.2, $0.3 * 1) }

    static func glyph(_ scalar: Unicode.Scalar) -> (width: Int, advance: Int, offset: Int) {
        let code = Int(scalar.value)
        let index = (32...126).contains(code) ? code - 32 : Int(("?" as Unicode.Scalar).value) - 32
        return table[index]
    }

    /// The width `string` takes when drawn.
    public static func width(_ string: String) -> Int { string.unicodeScalars.reduce(0) { $0 + glyph($1).advance } }
}

/// A perceptual colour map (matplotlib's "jet"-like blue → cyan → yellow → red) for attention maps.
public func heatColor(_ value: Double) -> RGB {
    let v = max(0, min(1, value))
    func channel(_ centre: Double) -> UInt8 { UInt8(max(0, min(1, 1.5 - abs(4 * v - centre))) * 255) }
    return RGB(channel(3), channel(2), channel(1))
}
