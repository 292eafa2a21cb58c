// Line charts for training curves: a figure is a grid of panels, each with labelled axes, ticks
// at round numbers, one polyline per series and a legend; rendered as SVG text or as a raster
// (PNG) with the same layout.
import Foundation

public struct Series: Sendable {
    public var name: String
    public var points: [(x: Double, y: Double)]
    /// Series of one group (a run) share a colour in every panel; nil = the series' own name.
    public var group: String?
    /// Dashed: a secondary part of the group (the CE and CAVPT parts of a loss, the text lr).
    public var dashed: Bool
    public init(name: String, points: [(x: Double, y: Double)], group: String? = nil, dashed: Bool = false) {
        self.name = name; self.points = points; self.group = group; self.dashed = dashed
    }
    var colorKey: String { group ?? name }
}

public struct Panel: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// Log-scale y (learning rates).
    public var logY: Bool
    public init(title: String, xLabel: String = "epoch", yLabel: String, series: [Series], logY: Bool = false) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series; self.logY = logY
    }
}

public struct Figure: Sendable {
    public var panels: [Panel]
    public var columns: Int
    public var panelWidth = 460, panelHeight = 320
    /// Series names → colours, shared by every panel so a run has one colour throughout.
    public var colors: [String: RGB] = [:]

    public init(panels: [Panel], columns: Int) {
        self.panels = panels
        self.columns = max(1, columns)
        var names: [String] = []
        for p in panels { for s in p.series where !names.contains(s.colorKey) { names.append(s.colorKey) } }
        for (i, n) in names.enumerated() { colors[n] = RGB.cycle[i % RGB.cycle.count] }
    }

    public var width: Int { columns * panelWidth }
    public var height: Int { ((panels.count + columns - 1) / columns) * panelHeight }

    /// Plot area inside a panel (margins for title, tick labels and axis labels).
    struct Frame { var x0: Double, y0: Double, x1: Double, y1: Double }
    func frame(_ index: Int) -> Frame {
        let (col, row) = (index % columns, index / columns)
        let (ox, oy) = (Double(col * panelWidth), Double(row * panelHeight))
        return Frame(x0: ox + 70, y0: oy + 30, x1: ox + Double(panelWidth) - 15, y1: oy + Double(panelHeight) - 50)
    }

    /// Data range and ticks of a panel.
    struct Axes { var xMin, xMax, yMin, yMax: Double; var xTicks, yTicks: [Double]; var logY: Bool }
    func axes(_ p: Panel) -> Axes {
        let points = p.series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!p.logY || $0.y > 0) }
        var (xMin, xMax) = (points.map(\.x).min() ?? 0, points.map(\.x).max() ?? 1)
        var ys = points.map { p.logY ? log10($0.y) : $0.y }
        if ys.isEmpty { ys = [0, 1] }
        var (yMin, yMax) = (ys.min()!, ys.max()!)
        if xMax <= xMin { xMax = xMin + 1 }
        if yMax <= yMin { (yMin, yMax) = (yMin - 0.5, yMax + 0.5) }
        if p.logY {
            (yMin, yMax) = (yMin.rounded(.down), max(yMax.rounded(.up), yMin.rounded(.down) + 1))
            return Axes(
                xMin: xMin, xMax: xMax, yMin: yMin, yMax: yMax, xTicks: niceTicks(xMin, xMax),
                yTicks: stride(from: yMin, through: yMax, by: 1).map { $0 }, logY: true)
        }
        let pad = (yMax - yMin) * 0.05
        (yMin, yMax) = (yMin - pad, yMax + pad)
        return Axes(
            xMin: xMin, xMax: xMax, yMin: yMin, yMax: yMax, xTicks: niceTicks(xMin, xMax),
            yTicks: niceTicks(yMin, yMax), logY: false)
    }

    func tickLabel(_ v: Double, log: Bool) -> String {
        if log { return "1e\(Int(v.rounded()))" }
        if v != 0 && (abs(v) >= 1e5 || abs(v) < 1e-3) { return String(format: "%.0e", v) }
        return v == v.rounded() ? String(Int(v)) : String(format: "%g", (v * 1e6).rounded() / 1e6)
    }

    // MARK: SVG

    public func svg() -> String {
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 "
            + "\(width) \(height)\" "
            + "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n<rect width=\"100%\" "
            + "height=\"100%\" fill=\"white\"/>\n"
        for (index, p) in panels.enumerated() {
            let f = frame(index), a = axes(p)
            func sx(_ x: Double) -> Double { f.x0 + (x - a.xMin) / (a.xMax - a.xMin) * (f.x1 - f.x0) }
            func sy(_ y: Double) -> Double {
                f.y1 - ((a.logY ? log10(y) : y) - a.yMin) / (a.yMax - a.yMin) * (f.y1 - f.y0)
            }
            func syRaw(_ v: Double) -> Double { f.y1 - (v - a.yMin) / (a.yMax - a.yMin) * (f.y1 - f.y0) }
            out +=
                "<g>\n<text x=\"\((f.x0 + f.x1) / 2)\" y=\"\(f.y0 - 10)\" text-anchor=\"middle\" "
                + "font-weight=\"bold\">\(escape(p.title))</text>\n"
            for t in a.xTicks {
                out +=
                    line(sx(t), f.y0, sx(t), f.y1, "#e1e1e1")
                    + "<text x=\"\(sx(t))\" y=\"\(f.y1 + 16)\" "
                    + "text-anchor=\"middle\">\(tickLabel(t, log: false))</text>\n"
            }
            for t in a.yTicks {
                out +=
                    line(f.x0, syRaw(t), f.x1, syRaw(t), "#e1e1e1")
                    + "<text x=\"\(f.x0 - 6)\" y=\"\(syRaw(t) + 4)\" "
                    + "text-anchor=\"end\">\(tickLabel(t, log: a.logY))</text>\n"
            }
            out +=
                "<rect x=\"\(f.x0)\" y=\"\(f.y0)\" width=\"\(f.x1 - f.x0)\" height=\"\(f.y1 - f.y0)\" fill=\"none\" "
                + "stroke=\"black\"/>\n"
            out +=
                "<text x=\"\((f.x0 + f.x1) / 2)\" y=\"\(f.y1 + 36)\" "
                + "text-anchor=\"middle\">\(escape(p.xLabel))</text>\n"
            out +=
                "<text transform=\"translate(\(f.x0 - 52),\((f.y0 + f.y1) / 2)) rotate(-90)\" "
                + "text-anchor=\"middle\">\(escape(p.yLabel))</text>\n"
            for s in p.series {
                let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite && (!a.logY || $0.y > 0) }
                guard !pts.isEmpty else { continue }
                let color = (colors[s.colorKey] ?? .black).hex
                let path = pts.map { String(format: "%.2f,%.2f", sx($0.x), sy($0.y)) }.joined(separator: " ")
                out +=
                    "<polyline class=\"series\" data-name=\"\(escape(s.name))\" fill=\"none\" stroke=\"\(color)\" "
                    + "stroke-width=\"1.8\""
                    + (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + " points=\"\(path)\"/>\n"
                if pts.count == 1 {
                    out += "<circle cx=\"\(sx(pts[0].x))\" cy=\"\(sy(pts[0].y))\" r=\"3\" fill=\"\(color)\"/>\n"
                }
            }
            let legendWidth = Double(p.series.map { Font.width($0.name) }.max() ?? 0) + 34
            if !p.series.isEmpty {
                out +=
                    "<rect x=\"\(f.x1 - legendWidth - 4)\" y=\"\(f.y0 + 2)\" width=\"\(legendWidth)\" "
                    + "height=\"\(p.series.count * 16 + 4)\" "
                    + "fill=\"white\" fill-opacity=\"0.85\" stroke=\"#c8c8c8\"/>\n"
            }
            for (i, s) in p.series.enumerated() {
                let y = f.y0 + 16 + Double(i) * 16
                let x = f.x1 - legendWidth
                out +=
                    line(x, y - 4, x + 18, y - 4, (colors[s.colorKey] ?? .black).hex, width: 2)
                    .replacingOccurrences(of: "/>", with: s.dashed ? " stroke-dasharray=\"6 4\"/>" : "/>")
                    + "<text x=\"\(x + 22)\" y=\"\(y)\">\(escape(s.name))</text>\n"
            }
            out += "</g>\n"
        }
        return out + "</svg>\n"
    }

    func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ color: String, width: Double = 1) -> String {
        String(
            format: "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%@\" stroke-width=\"%.1f\"/>\n", x0,
            y0, x1, y1, color, width)
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    // MARK: Raster

    public func canvas() -> Canvas {
        var c = Canvas(width: width, height: height)
        for (index, p) in panels.enumerated() {
            let f = frame(index), a = axes(p)
            func sx(_ x: Double) -> Double { f.x0 + (x - a.xMin) / (a.xMax - a.xMin) * (f.x1 - f.x0) }
            func sy(_ y: Double) -> Double {
                f.y1 - ((a.logY ? log10(y) : y) - a.yMin) / (a.yMax - a.yMin) * (f.y1 - f.y0)
            }
            func syRaw(_ v: Double) -> Double { f.y1 - (v - a.yMin) / (a.yMax - a.yMin) * (f.y1 - f.y0) }
            let titleWidth = Font.width(p.title)
            c.text(p.title, x: Int((f.x0 + f.x1) / 2) - titleWidth / 2, y: Int(f.y0) - 22)
            for t in a.xTicks {
                c.line(sx(t), f.y0, sx(t), f.y1, .light, thickness: 1)
                let label = tickLabel(t, log: false)
                c.text(label, x: Int(sx(t)) - Font.width(label) / 2, y: Int(f.y1) + 4, .black)
            }
            for t in a.yTicks {
                c.line(f.x0, syRaw(t), f.x1, syRaw(t), .light, thickness: 1)
                let label = tickLabel(t, log: a.logY)
                c.text(label, x: Int(f.x0) - 6 - Font.width(label), y: Int(syRaw(t)) - Font.height / 2, .black)
            }
            for (x0, y0, x1, y1) in [
                (f.x0, f.y0, f.x1, f.y0), (f.x0, f.y1, f.x1, f.y1), (f.x0, f.y0, f.x0, f.y1), (f.x1, f.y0, f.x1, f.y1),
            ] {
                c.line(x0, y0, x1, y1, .black, thickness: 1)
            }
            c.text(p.xLabel, x: Int((f.x0 + f.x1) / 2) - Font.width(p.xLabel) / 2, y: Int(f.y1) + 24)
            c.verticalText(p.yLabel, x: Int(f.x0) - 66, y: Int((f.y0 + f.y1) / 2) + Font.width(p.yLabel) / 2)
            for s in p.series {
                let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite && (!a.logY || $0.y > 0) }
                let color = colors[s.colorKey] ?? .black
                let projected = pts.map { (sx($0.x), sy($0.y)) }
                if s.dashed {
                    c.dashedPolyline(projected, color)
                } else {
                    for (q0, q1) in zip(projected, projected.dropFirst()) {
                        c.line(q0.0, q0.1, q1.0, q1.1, color, thickness: 1.8)
                    }
                }
                if pts.count == 1 {
                    c.line(projected[0].0, projected[0].1, projected[0].0, projected[0].1, color, thickness: 6)
                }
            }
            let legendWidth = (p.series.map { Font.width($0.name) }.max() ?? 0) + 34
            if !p.series.isEmpty {
                let (lx, ly, lh) = (Int(f.x1) - legendWidth - 4, Int(f.y0) + 2, p.series.count * 16 + 4)
                c.fill(x: lx, y: ly, width: legendWidth, height: lh, .white)
                for (x0, y0, x1, y1) in [
                    (lx, ly, lx + legendWidth, ly), (lx, ly + lh, lx + legendWidth, ly + lh), (lx, ly, lx, ly + lh),
                    (lx + legendWidth, ly, lx + legendWidth, ly + lh),
                ] {
                    c.line(Double(x0), Double(y0), Double(x1), Double(y1), RGB(200, 200, 200), thickness: 1)
                }
            }
            for (i, s) in p.series.enumerated() {
                let y = f.y0 + 12 + Double(i) * 16
                let x = f.x1 - Double(legendWidth)
                if s.dashed {
                    c.dashedPolyline([(x, y), (x + 18, y)], colors[s.colorKey] ?? .black)
                } else {
                    c.line(x, y, x + 18, y, colors[s.colorKey] ?? .black, thickness: 2)
                }
                c.text(s.name, x: Int(x) + 22, y: Int(y) - Font.height / 2)
            }
        }
        return c
    }
}

/// About five ticks at 1, 2 or 5 × 10^k inside [lo, hi].
func niceTicks(_ lo: Double, _ hi: Double) -> [Double] {
    let span = hi - lo
    guard span > 0, span.isFinite else { return [lo] }
    let raw = span / 5
    let magnitude = pow(10, (log10(raw)).rounded(.down))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
    var ticks: [Double] = []
    var t = (lo / step).rounded(.up) * step
    while t <= hi + step * 1e-9 { ticks.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
    return ticks
}
