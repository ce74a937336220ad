import CFlashAttention
import FlashAttention
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The element types the `.npy` reader understands (little-endian, C order).
public enum NpyDType: String, Sendable, Hashable, CaseIterable {
    /// IEEE binary32.
    case float32 = "<f4"
    /// IEEE binary64.
    case float64 = "<f8"
    /// IEEE binary16.
    case float16 = "<f2"
    /// Unsigned 16-bit integers; also how bfloat16 tensors are stored (their bit patterns:
    /// NumPy has no bfloat16, so a file says it holds bf16 elsewhere — see ``NpyArray/bfloat16Floats``).
    case uint16 = "<u2"
    /// Unsigned bytes (masks).
    case uint8 = "|u1"
    /// Booleans, one byte each (masks).
    case bool = "|b1"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: 4
        case .float64: 8
        case .float16, .uint16: 2
        case .uint8, .bool: 1
        }
    }

    /// The descriptor as NumPy may spell it (`<f4`, `f4`, `=f4` on little-endian, …).
    init?(descriptor d: String) {
        switch d {
        case "<f4", "=f4", "f4": self = .float32
        case "<f8", "=f8", "f8": self = .float64
        case "<f2", "=f2", "f2": self = .float16
        case "<u2", "=u2", "u2": self = .uint16
        case "|u1", "<u1", "=u1", "u1": self = .uint8
        case "|b1", "<b1", "=b1", "b1", "?": self = .bool
        default: return nil
        }
    }
}

/// Why a `.npy` file could not be read or written. Every case names the file.
public enum NpyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file could not be opened, read or written (`errno`'s text).
    case io(file: String, reason: String)
    /// The file does not start with the `\x93NUMPY` magic.
    case notNpy(file: String)
    /// A format version other than 1.0, 2.0 or 3.0.
    case unsupportedVersion(file: String, major: Int, minor: Int)
    /// The file ends inside its header.
    case truncatedHeader(file: String)
    /// The header dictionary cannot be parsed.
    case malformedHeader(file: String, reason: String)
    /// `fortran_order` is True: only C order is supported.
    case fortranOrder(file: String)
    /// A big-endian dtype such as `>f4`.
    case bigEndian(file: String, descriptor: String)
    /// A dtype other than float32, float64, float16, uint16, uint8 or bool.
    case unsupportedDType(file: String, descriptor: String)
    /// The data after the header is not shape-product × element-size bytes.
    case dataLengthMismatch(file: String, shape: [Int], expectedBytes: Int, actualBytes: Int)

    /// A sentence starting with the file name.
    public var description: String {
        switch self {
        case let .io(file, reason): return "\(file): \(reason)"
        case let .notNpy(file): return "\(file): not a .npy file (no \\x93NUMPY magic)"
        case let .unsupportedVersion(file, major, minor):
            return "\(file): .npy format version \(major).\(minor) is not supported (1.0, 2.0, 3.0 are)"
        case let .truncatedHeader(file): return "\(file): the file ends inside its header"
        case let .malformedHeader(file, reason): return "\(file): malformed header: \(reason)"
        case let .fortranOrder(file):
            return "\(file): fortran_order is True; only C-order arrays are supported "
                + "(save with np.ascontiguousarray)"
        case let .bigEndian(file, d):
            return "\(file): big-endian dtype '\(d)' is not supported (use .astype('<f4'))"
        case let .unsupportedDType(file, d):
            return "\(file): dtype '\(d)' is not supported (float32, float64, float16, uint16, uint8, bool are)"
        case let .dataLengthMismatch(file, shape, expected, actual):
            return "\(file): shape \(shape) needs \(expected) bytes of data but the file has \(actual)"
        }
    }
}

/// A NumPy `.npy` array: shape, element type and the raw little-endian C-order bytes.
///
/// Reads format versions 1.0, 2.0 and 3.0 with float32, float64, float16, uint8 and bool
/// elements; writes float32 (and float64) arrays that `numpy.load` reads back.
///
/// ```swift
/// let q = try NpyArray(contentsOf: "case/q.npy")
/// print(q.shape, q.dtype)              // [1, 8, 128, 64] float32
/// let values: [Float] = q.floats       // converted from any supported dtype
/// try NpyArray(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]).write(to: "out.npy")
/// ```
public struct NpyArray: Sendable, Hashable {
    /// The extents, outermost first (`[]` for a 0-d array).
    public var shape: [Int]
    /// The element type.
    public var dtype: NpyDType
    /// Element bytes, little-endian, C order.
    public var bytes: [UInt8]

    /// Elements: the product of the shape (1 for a 0-d array).
    public var count: Int { shape.reduce(1, *) }

    /// A float32 array.
    public init(shape: [Int], floats: [Float]) {
        precondition(shape.reduce(1, *) == floats.count, "shape \(shape) does not hold \(floats.count) floats")
        self.shape = shape
        self.dtype = .float32
        self.bytes = floats.withUnsafeBytes { Array($0) }.littleEndianFloat32
    }

    /// A float64 array.
    public init(shape: [Int], doubles: [Double]) {
        precondition(shape.reduce(1, *) == doubles.count, "shape \(shape) does not hold \(doubles.count) doubles")
        self.shape = shape
        self.dtype = .float64
        self.bytes = doubles.withUnsafeBytes { Array($0) }
    }

    /// An array of `values` stored as `type`: float32 (`<f4`), float16 (`<f2`) or bfloat16
    /// (their bit patterns as `<u2`), each value rounded to nearest even.
    public init(shape: [Int], floats: [Float], storing type: AttentionElementType) {
        precondition(shape.reduce(1, *) == floats.count, "shape \(shape) does not hold \(floats.count) values")
        self.shape = shape
        switch type {
        case .float32:
            dtype = .float32
            bytes = floats.withUnsafeBytes { Array($0) }.littleEndianFloat32
        case .float16, .bfloat16:
            dtype = type == .float16 ? .float16 : .uint16
            var out = [UInt8]()
            out.reserveCapacity(2 * floats.count)
            for x in floats {
                let bits = type == .float16 ? fa_float_to_f16(x) : fa_float_to_bf16(x)
                out += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            }
            bytes = out
        }
    }

    /// Parses the bytes of a `.npy` file; `name` is used in errors.
    public init(npyBytes data: [UInt8], name: String = "<memory>") throws(NpyError) {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard data.count >= 6, Array(data[0 ..< 6]) == magic else {
            if data.count < 6, data == Array(magic.prefix(data.count)) { throw .truncatedHeader(file: name) }
            throw .notNpy(file: name)
        }
        guard data.count >= 8 else { throw .truncatedHeader(file: name) }
        let major = Int(data[6]), minor = Int(data[7])
        let lengthBytes: Int
        switch (major, minor) {
        case (1, 0): lengthBytes = 2
        case (2, 0), (3, 0): lengthBytes = 4
        default: throw .unsupportedVersion(file: name, major: major, minor: minor)
        }
        guard data.count >= 8 + lengthBytes else { throw .truncatedHeader(file: name) }
        var headerLength = 0
        for i in 0 ..< lengthBytes { headerLength |= Int(data[8 + i]) << (8 * i) }
        let headerStart = 8 + lengthBytes
        guard data.count >= headerStart + headerLength else { throw .truncatedHeader(file: name) }
        let header = String(decoding: data[headerStart ..< headerStart + headerLength], as: UTF8.self)
        let parsed = try NpyHeader.parse(header, file: name)
        guard !parsed.fortranOrder else { throw .fortranOrder(file: name) }
        guard let dtype = NpyDType(descriptor: parsed.descr) else {
            if parsed.descr.hasPrefix(">") { throw .bigEndian(file: name, descriptor: parsed.descr) }
            throw .unsupportedDType(file: name, descriptor: parsed.descr)
        }
        let dataStart = headerStart + headerLength
        var expected = dtype.size
        for extent in parsed.shape {
            let (product, overflow) = expected.multipliedReportingOverflow(by: extent)
            guard !overflow else {
                throw .malformedHeader(file: name, reason: "shape \(parsed.shape) overflows")
            }
            expected = product
        }
        guard data.count - dataStart == expected else {
            throw .dataLengthMismatch(file: name, shape: parsed.shape, expectedBytes: expected,
                                      actualBytes: data.count - dataStart)
        }
        shape = parsed.shape
        self.dtype = dtype
        bytes = Array(data[dataStart...])
    }

    /// Reads a `.npy` file.
    public init(contentsOf path: String) throws(NpyError) {
        try self.init(npyBytes: try readFile(path), name: path)
    }

    /// The elements as float32: float64 rounded to nearest, float16 widened, uint16, uint8 and
    /// bool as their values (0/1 for bool).
    public var floats: [Float] {
        let n = count
        return bytes.withUnsafeBytes { raw in
            switch dtype {
            case .float32:
                return (0 ..< n).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
            case .float64:
                return (0 ..< n).map { Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian)) }
            case .float16:
                return (0 ..< n).map { Float(float16Bits: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian) }
            case .uint16:
                return (0 ..< n).map { Float(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian) }
            case .uint8:
                return (0 ..< n).map { Float(raw[$0]) }
            case .bool:
                return (0 ..< n).map { raw[$0] != 0 ? 1 : 0 }
            }
        }
    }

    /// A `<u2` array's elements read as bfloat16 bit patterns, as float32 (exactly); nil for
    /// any other dtype.
    public var bfloat16Floats: [Float]? {
        guard dtype == .uint16 else { return nil }
        let n = count
        return bytes.withUnsafeBytes { raw in
            (0 ..< n).map { fa_bf16_to_float(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian) }
        }
    }

    /// The elements as float64 (exact for every supported dtype).
    public var doubles: [Double] {
        if dtype == .float64 {
            let n = count
            return bytes.withUnsafeBytes { raw in
                (0 ..< n).map { Double(bitPattern: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian) }
            }
        }
        return floats.map(Double.init)
    }

    /// The file's bytes: format 1.0 (2.0 if the header needs it), header padded so the data
    /// starts on a 64-byte boundary, as NumPy writes it.
    public var npyBytes: [UInt8] {
        let shapeText = shape.isEmpty ? "()"
            : shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        let dict = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        func build(lengthBytes: Int) -> [UInt8] {
            let prefix = 8 + lengthBytes
            var header = Array(dict.utf8)
            let total = (prefix + header.count + 1 + 63) / 64 * 64
            header += [UInt8](repeating: 0x20, count: total - prefix - header.count - 1) + [0x0A]
            var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, lengthBytes == 2 ? 1 : 2, 0]
            for i in 0 ..< lengthBytes { out.append(UInt8((header.count >> (8 * i)) & 0xFF)) }
            return out + header + bytes
        }
        return dict.utf8.count + 80 < 65_535 ? build(lengthBytes: 2) : build(lengthBytes: 4)
    }

    /// Writes the array as a `.npy` file.
    public func write(to path: String) throws(NpyError) {
        try writeFile(path, npyBytes)
    }
}

extension Float {
    /// An IEEE half-precision value widened to float32.
    init(float16Bits bits: UInt16) {
        let sign = UInt32(bits >> 15) << 31
        let exponent = Int((bits >> 10) & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0x1F {  // inf / NaN
            self = Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        } else if exponent == 0 {  // zero / subnormal: mantissa · 2⁻²⁴
            let magnitude = Float(mantissa) * 0x1p-24
            self = sign != 0 ? -magnitude : magnitude
        } else {
            self = Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
        }
    }
}

extension Array where Element == UInt8 {
    /// Float bytes in host order → little-endian (a no-op on every platform Swift runs on today).
    var littleEndianFloat32: [UInt8] {
        #if _endian(little)
        return self
        #else
        var out = self
        for i in stride(from: 0, to: count, by: 4) { out[i ..< i + 4].reverse() }
        return out
        #endif
    }
}

/// The three keys of a `.npy` header dictionary.
struct NpyHeader {
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]

    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (any key order,
    /// single or double quotes, optional trailing comma and padding).
    static func parse(_ text: String, file: String) throws(NpyError) -> NpyHeader {
        // Padding: spaces, tabs, NULs and line ends, "\r\n" (one Character) included.
        let padding: Set<Unicode.Scalar> = [" ", "\n", "\t", "\r", "\0"]
        func isPadding(_ c: Character) -> Bool { c.unicodeScalars.allSatisfy(padding.contains) }
        var s = Substring(text)
        while let c = s.first, isPadding(c) { s = s.dropFirst() }
        while let c = s.last, isPadding(c) { s = s.dropLast() }
        func fail(_ reason: String) -> NpyError { .malformedHeader(file: file, reason: reason) }
        guard s.first == "{", s.last == "}" else { throw fail("the header is not a {...} dictionary") }
        s = s.dropFirst().dropLast()
        var descr: String?, fortran: Bool?, shape: [Int]?
        while true {
            s = s.drop { $0.isWhitespace || $0 == "," }  // "\r\n" is one Character
            if s.isEmpty { break }
            guard let quote = s.first, quote == "'" || quote == "\"" else { throw fail("expected a quoted key") }
            s = s.dropFirst()
            guard let end = s.firstIndex(of: quote) else { throw fail("unterminated key") }
            let key = String(s[..<end])
            s = s[s.index(after: end)...].drop { $0.isWhitespace }
            guard s.first == ":" else { throw fail("expected ':' after '\(key)'") }
            s = s.dropFirst().drop { $0.isWhitespace }
            switch key {
            case "descr":
                guard let q = s.first, q == "'" || q == "\"" else { throw fail("descr is not a string") }
                s = s.dropFirst()
                guard let e = s.firstIndex(of: q) else { throw fail("unterminated descr") }
                descr = String(s[..<e])
                s = s[s.index(after: e)...]
            case "fortran_order":
                if s.hasPrefix("False") { fortran = false; s = s.dropFirst(5) }
                else if s.hasPrefix("True") { fortran = true; s = s.dropFirst(4) }
                else { throw fail("fortran_order is not True or False") }
            case "shape":
                guard s.first == "(" else { throw fail("shape is not a tuple") }
                guard let e = s.firstIndex(of: ")") else { throw fail("unterminated shape") }
                let inner = s[s.index(after: s.startIndex) ..< e]
                var dims: [Int] = []
                for part in inner.split(separator: ",") {
                    let t = part.trimmingCharacters(in: " L")
                    if t.isEmpty { continue }
                    guard let v = Int(t), v >= 0 else { throw fail("shape entry '\(t)' is not a size") }
                    dims.append(v)
                }
                shape = dims
                s = s[s.index(after: e)...]
            default:
                throw fail("unknown key '\(key)'")
            }
        }
        guard let descr else { throw fail("no 'descr' key") }
        guard let fortran else { throw fail("no 'fortran_order' key") }
        guard let shape else { throw fail("no 'shape' key") }
        return NpyHeader(descr: descr, fortranOrder: fortran, shape: shape)
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var sub = Substring(self)
        while let f = sub.first, chars.contains(f) { sub = sub.dropFirst() }
        while let l = sub.last, chars.contains(l) { sub = sub.dropLast() }
        return String(sub)
    }
}

/// The whole file, or an `.io` error naming it.
func readFile(_ path: String) throws(NpyError) -> [UInt8] {
    guard let f = fopen(path, "rb") else {
        throw .io(file: path, reason: String(cString: strerror(errno)))
    }
    defer { fclose(f) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n > 0 { out += chunk[0 ..< n] }
        if n < chunk.count {
            if ferror(f) != 0 { throw .io(file: path, reason: "read error") }
            break
        }
    }
    return out
}

/// Writes `bytes` to `path`, or throws an `.io` error naming it.
func writeFile(_ path: String, _ bytes: [UInt8]) throws(NpyError) {
    guard let f = fopen(path, "wb") else {
        throw .io(file: path, reason: String(cString: strerror(errno)))
    }
    let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    let closed = fclose(f)
    guard written == bytes.count, closed == 0 else {
        throw .io(file: path, reason: "short write")
    }
}
