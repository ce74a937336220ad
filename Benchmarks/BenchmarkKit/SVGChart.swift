import Foundation

/// A line on a chart: points in data coordinates.
public struct LineSeries: Sendable {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var color: String
    public var dashed: Bool

    public init(name: String, points: [(x: Double, y: Double)], color: String, dashed: Bool = false) {
        self.name = name
        self.points = points
        self.color = color
        self.dashed = dashed
    }
}

/// One plot area with axes, lines and an optional horizontal reference line.
public struct LinePanel: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var logX: Bool
    public var logY: Bool
    public var series: [LineSeries]
    public var reference: (value: Double, label: String)?

    public init(title: String, xLabel: String, yLabel: String, logX: Bool, logY: Bool,
                series: [LineSeries], reference: (value: Double, label: String)? = nil) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logX = logX
        self.logY = logY
        self.series = series
        self.reference = reference
    }
}

/// A small SVG writer for line charts: panels side by side, a shared legend below.
public enum SVGChart {
    static let panelWidth = 460.0, panelHeight = 320.0
    static let margin = (left: 64.0, right: 16.0, top: 40.0, bottom: 48.0)

    public static func document(title: String, panels: [LinePanel]) -> String {
        let legendNames = uniqueLegend(panels)
        let legendRows = Double((legendNames.count + 2) / 3)
        let width = panelWidth * Double(panels.count)
        let height = panelHeight + 40 + legendRows * 20 + 10
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(fmt(width))" height="\(fmt(height))" \
        viewBox="0 0 \(fmt(width)) \(fmt(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(fmt(width / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(escape(title))</text>

        """
        for (i, panel) in panels.enumerated() {
            svg += panelSVG(panel, originX: Double(i) * panelWidth, originY: 20)
        }
        let legendY = panelHeight + 40
        for (i, entry) in legendNames.enumerated() {
            let x = 20 + Double(i % 3) * (width - 40) / 3
            let y = legendY + Double(i / 3) * 20
            svg += "<line x1=\"\(fmt(x))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x + 28))\" y2=\"\(fmt(y))\" "
                + "stroke=\"\(entry.color)\" stroke-width=\"2.5\"\(entry.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            svg += "<text x=\"\(fmt(x + 34))\" y=\"\(fmt(y + 4))\">\(escape(entry.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func uniqueLegend(_ panels: [LinePanel]) -> [LineSeries] {
        var seen = Set<String>()
        var out: [LineSeries] = []
        for p in panels {
            for s in p.series where !seen.contains(s.name) {
                seen.insert(s.name)
                out.append(s)
            }
        }
        return out
    }

    static func panelSVG(_ p: LinePanel, originX: Double, originY: Double) -> String {
        let x0 = originX + margin.left, x1 = originX + panelWidth - margin.right
        let y0 = originY + margin.top, y1 = originY + panelHeight - margin.bottom
        let xs = p.series.flatMap { $0.points.map(\.x) }.filter { $0.isFinite && (!p.logX || $0 > 0) }
        var ys = p.series.flatMap { $0.points.map(\.y) }.filter { $0.isFinite && (!p.logY || $0 > 0) }
        if let r = p.reference { ys.append(r.value) }
        guard let xmin = xs.min(), let xmax = xs.max(), let ymaxData = ys.max() else {
            return "<text x=\"\(fmt(originX + panelWidth / 2))\" y=\"\(fmt(originY + panelHeight / 2))\" "
                + "text-anchor=\"middle\">\(escape(p.title)): no data</text>\n"
        }
        let yTicks = p.logY ? logTicks(min: ys.min()!, max: ymaxData) : linearTicks(max: ymaxData)
        let ylo = p.logY ? yTicks.first! : 0, yhi = yTicks.last!
        func tx(_ x: Double) -> Double {
            if xmax == xmin { return (x0 + x1) / 2 }
            return p.logX ? x0 + (log(x) - log(xmin)) / (log(xmax) - log(xmin)) * (x1 - x0)
                : x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)
        }
        func ty(_ y: Double) -> Double {
            p.logY ? y1 - (log(y) - log(ylo)) / (log(yhi) - log(ylo)) * (y1 - y0)
                : y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)
        }
        var s = "<g>\n<text x=\"\(fmt((x0 + x1) / 2))\" y=\"\(fmt(originY + 24))\" text-anchor=\"middle\" "
            + "font-weight=\"bold\">\(escape(p.title))</text>\n"
        s += "<rect x=\"\(fmt(x0))\" y=\"\(fmt(y0))\" width=\"\(fmt(x1 - x0))\" height=\"\(fmt(y1 - y0))\" "
            + "fill=\"none\" stroke=\"#888\"/>\n"
        for t in yTicks {
            let y = ty(t)
            s += "<line x1=\"\(fmt(x0))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x1))\" y2=\"\(fmt(y))\" stroke=\"#e5e5e5\"/>\n"
            s += "<text x=\"\(fmt(x0 - 6))\" y=\"\(fmt(y + 4))\" text-anchor=\"end\">\(tickLabel(t))</text>\n"
        }
        for x in Array(Set(xs)).sorted() {
            let px = tx(x)
            s += "<line x1=\"\(fmt(px))\" y1=\"\(fmt(y1))\" x2=\"\(fmt(px))\" y2=\"\(fmt(y1 + 4))\" stroke=\"#888\"/>\n"
            s += "<text x=\"\(fmt(px))\" y=\"\(fmt(y1 + 17))\" text-anchor=\"middle\">\(tickLabel(x))</text>\n"
        }
        s += "<text x=\"\(fmt((x0 + x1) / 2))\" y=\"\(fmt(y1 + 36))\" text-anchor=\"middle\">\(escape(p.xLabel))</text>\n"
        s += "<text transform=\"translate(\(fmt(originX + 16)) \(fmt((y0 + y1) / 2))) rotate(-90)\" "
            + "text-anchor=\"middle\">\(escape(p.yLabel))</text>\n"
        if let r = p.reference {
            let y = ty(r.value)
            s += "<line x1=\"\(fmt(x0))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x1))\" y2=\"\(fmt(y))\" stroke=\"#444\" "
                + "stroke-dasharray=\"2 3\"/>\n"
            s += "<text x=\"\(fmt(x1 - 4))\" y=\"\(fmt(y - 5))\" text-anchor=\"end\" fill=\"#444\">"
                + "\(escape(r.label))</text>\n"
        }
        for series in p.series {
            let pts = series.points.filter { $0.x.isFinite && $0.y.isFinite && (!p.logY || $0.y > 0) }
            guard !pts.isEmpty else { continue }
            let path = pts.map { "\(fmt(tx($0.x))),\(fmt(ty($0.y)))" }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"2.5\" points=\"\(path)\""
                + (series.dashed ? " stroke-dasharray=\"6 4\"" : "") + "><title>\(escape(series.name))</title></polyline>\n"
            for pt in pts {
                s += "<circle cx=\"\(fmt(tx(pt.x)))\" cy=\"\(fmt(ty(pt.y)))\" r=\"3\" fill=\"\(series.color)\">"
                    + "<title>\(escape(series.name)): \(tickLabel(pt.x)), \(String(format: "%.3g", pt.y))</title></circle>\n"
            }
        }
        return s + "</g>\n"
    }

    /// 0 and 4–6 round steps up to at least `max`.
    static func linearTicks(max: Double) -> [Double] {
        guard max > 0 else { return [0, 1] }
        let raw = max / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [Double] = []
        var t = 0.0
        while t < max + step * 0.999 {
            ticks.append(t)
            t += step
        }
        return ticks
    }

    /// Powers of ten around [min, max].
    static func logTicks(min: Double, max: Double) -> [Double] {
        let lo = floor(log10(Swift.max(min, 1e-12))), hi = ceil(log10(Swift.max(max, min * 10)))
        return stride(from: lo, through: Swift.max(hi, lo + 1), by: 1).map { pow(10, $0) }
    }

    static func tickLabel(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1, v == v.rounded() { return String(Int(v)) }
        return String(format: "%g", v)
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

extension SweepReport {
    /// One chart per head dim: GFLOP/s vs N (with the sgemm roofline) and peak extra memory
    /// vs N (log scale), one line per implementation and causal mode.
    public func charts() -> [(headDim: Int, svg: String)] {
        let colors: [BenchImplementation: String] = [.flash: "#d62728", .naive: "#1f77b4"]
        let headDims = Array(Set(cases.map(\.configuration.headDim))).sorted()
        return headDims.map { d in
            let rows = cases.filter { $0.configuration.headDim == d && $0.timing != nil }
            var groups: [String: (LineSeries, LineSeries)] = [:]
            var order: [String] = []
            for r in rows {
                let c = r.configuration
                var name = "\(r.implementation.rawValue)\(c.pass == .backward ? " backward" : ""), "
                    + (c.causal == .none ? "non-causal" : "causal \(c.causal.rawValue)")
                if Set(cases.map(\.configuration.threads)).count > 1 { name += ", \(c.threads) threads" }
                if Set(cases.map(\.configuration.queryHeads)).count > 1 { name += ", H\(c.queryHeads)" }
                if Set(cases.map(\.configuration.batch)).count > 1 { name += ", B\(c.batch)" }
                let color = c.pass == .backward
                    ? (r.implementation == .naive ? "#9467bd" : "#ff7f0e")
                    : (colors[r.implementation] ?? "#2ca02c")
                if groups[name] == nil {
                    order.append(name)
                    groups[name] = (LineSeries(name: name, points: [], color: color, dashed: c.causal != .none),
                                    LineSeries(name: name, points: [], color: color, dashed: c.causal != .none))
                }
                let x = Double(c.queryLength)
                groups[name]!.0.points.append((x, r.gflops ?? .nan))
                // Peaks under the measurement's resolution are drawn at its floor (0.01 MB).
                if let bytes = r.peakExtraBytes {
                    groups[name]!.1.points.append((x, Swift.max(Double(bytes) / 1e6, 0.01)))
                }
            }
            let speed = LinePanel(title: "Throughput", xLabel: "sequence length N (Lq = Lk)",
                                  yLabel: "GFLOP/s", logX: true, logY: false,
                                  series: order.map { groups[$0]!.0 },
                                  reference: (machine.roofline.gflops, String(format: "sgemm %.0f GFLOP/s", machine.roofline.gflops)))
            let memory = LinePanel(title: "Peak extra memory (VmHWM; < 0.01 drawn at 0.01)",
                                   xLabel: "sequence length N (Lq = Lk)",
                                   yLabel: "MB above the case's start (log scale)", logX: true, logY: true,
                                   series: order.map { groups[$0]!.1 })
            let c0 = rows.first?.configuration
            let passes = Set(rows.map(\.configuration.pass))
            let passName = passes.count > 1 ? "forward and backward"
                : (passes.first == .backward ? "backward" : "forward")
            let title = "Attention \(passName), D = \(d), B = \(c0?.batch ?? 1), H = \(c0?.queryHeads ?? 0), "
                + "\(machine.threads) threads, \(machine.cpuModel)"
            return (d, SVGChart.document(title: title, panels: [speed, memory]))
        }
    }
}

extension SVGChart {
    /// The tick rules, exposed for tests.
    public static func linearTicksForTesting(max: Double) -> [Double] { linearTicks(max: max) }
    public static func logTicksForTesting(min: Double, max: Double) -> [Double] {
        logTicks(min: min, max: max)
    }
}

extension SweepReport {
    /// Whether every case is decode-shaped, so the GFLOP/s-against-N charts would have one x.
    public var isDecodeOnly: Bool {
        !cases.isEmpty && cases.allSatisfy { $0.configuration.pass == .forward && $0.configuration.queryLength <= 16 }
    }

    /// One chart per head dim of the decode-shaped cases (forward, Lq ≤ 16): K+V GB/s against
    /// Lk (log scale) with the bandwidth roof as a horizontal line, and the time per call
    /// against Lk; one line per (Hq/Hkv, B, split) — and per implementation, thread count or
    /// Lq when the sweep has several. Empty when no case is decode-shaped.
    public func decodeCharts() -> [(headDim: Int, svg: String)] {
        let decode = cases.filter {
            $0.configuration.pass == .forward && $0.configuration.queryLength <= 16 && $0.timing != nil
        }
        func varies<T: Hashable>(_ key: (BenchConfiguration) -> T) -> Bool {
            Set(decode.map { key($0.configuration) }).count > 1
        }
        let manyImpls = Set(decode.map(\.implementation)).count > 1
        let manyThreads = varies(\.threads), manyLq = varies(\.queryLength)
        let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                       "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        let headDims = Array(Set(decode.map(\.configuration.headDim))).sorted()
        return headDims.map { d in
            let rows = decode.filter { $0.configuration.headDim == d }
            var groups: [String: (LineSeries, LineSeries)] = [:]
            var order: [String] = []
            var colorOf: [String: String] = [:]  // one color per line apart from the split
            for r in rows {
                let c = r.configuration
                var stem = "\(c.queryHeads)/\(c.keyValueHeads), B\(c.batch)"
                if manyImpls { stem = "\(r.implementation.rawValue) " + stem }
                if manyLq { stem += ", Lq \(c.queryLength)" }
                if manyThreads { stem += ", \(c.threads) threads" }
                let name = stem + ", split \(c.kvSplit)"
                if colorOf[stem] == nil { colorOf[stem] = palette[colorOf.count % palette.count] }
                if groups[name] == nil {
                    order.append(name)
                    let color = colorOf[stem]!, dashed = c.kvSplit != .automatic
                    groups[name] = (LineSeries(name: name, points: [], color: color, dashed: dashed),
                                    LineSeries(name: name, points: [], color: color, dashed: dashed))
                }
                let x = Double(c.keyLength)
                groups[name]!.0.points.append((x, r.keyValueGBps ?? .nan))
                groups[name]!.1.points.append((x, (r.timing?.median ?? .nan) * 1e3))
            }
            let roof = machine.bandwidthRoof
            let speed = LinePanel(title: "K+V read bandwidth", xLabel: "keys Lk (log scale)",
                                  yLabel: "GB/s (K+V bytes / median time)", logX: true, logY: false,
                                  series: order.map { groups[$0]!.0 },
                                  reference: roof.map {
                                      ($0.gbps, String(format: "bandwidth roof %.1f GB/s", $0.gbps))
                                  })
            let time = LinePanel(title: "Time per call", xLabel: "keys Lk (log scale)",
                                 yLabel: "median ms (log scale)", logX: true, logY: true,
                                 series: order.map { groups[$0]!.1 })
            let lq = Set(rows.map(\.configuration.queryLength)).sorted().map(String.init).joined(separator: ", ")
            let title = "Decode (Lq = \(lq)), D = \(d), \(machine.threads) threads, \(machine.cpuModel)"
            return (d, SVGChart.document(title: title, panels: [speed, time]))
        }
    }
}
