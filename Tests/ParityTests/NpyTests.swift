import AttentionTools
import FlashAttention
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A `.npy` file's bytes with a hand-written header, for the malformed-file tests.
func npyBytes(version: (UInt8, UInt8) = (1, 0), header: String, data: [UInt8]) -> [UInt8] {
    var h = Array(header.utf8)
    let prefix = version.0 == 1 ? 10 : 12
    let total = (prefix + h.count + 1 + 63) / 64 * 64
    h += [UInt8](repeating: 0x20, count: total - prefix - h.count - 1) + [0x0A]
    var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version.0, version.1]
    let n = h.count
    out += version.0 == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)]
                          : [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
    return out + h + data
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in (0 ..< MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v.littleEndian >> (8 * $0)) } }
}

@Suite(".npy reading and writing")
struct NpyTests {
    @Test("float32 round trip through a file, shapes of rank 0 to 4")
    func roundTrip() throws {
        let dir = String(cString: mkdtemp(strdup("/tmp/npy-XXXXXX")))
        for shape in [[], [0], [5], [2, 3], [1, 2, 3, 4]] {
            let n = shape.reduce(1, *)
            let values = (0 ..< n).map { Float($0) * 0.5 - 1 }
            let path = dir + "/a.npy"
            try NpyArray(shape: shape, floats: values).write(to: path)
            let back = try NpyArray(contentsOf: path)
            #expect(back.shape == shape && back.dtype == .float32)
            #expect(back.floats == values)
            // The data starts on a 64-byte boundary, as NumPy writes it.
            #expect((back.npyBytes.count - n * 4) % 64 == 0)
        }
    }

    @Test("every dtype and format version converts to float")
    func dtypes() throws {
        let f64: [Double] = [1.5, -2.25, 1e-3]
        let a = try NpyArray(npyBytes: npyBytes(header: "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                                                data: littleEndianBytes(f64.map(\.bitPattern))))
        #expect(a.floats == f64.map(Float.init))
        #expect(a.doubles == f64)
        // float16: 1.0 (0x3C00), -2.0 (0xC000), 65504 (0x7BFF), smallest subnormal (0x0001), inf, NaN
        let h = try NpyArray(npyBytes: npyBytes(version: (2, 0),
                                                header: "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }",
                                                data: littleEndianBytes([UInt16(0x3C00), 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x7E00])))
        let hf = h.floats
        #expect(hf[0] == 1 && hf[1] == -2 && hf[2] == 65504 && hf[3] == 0x1p-24 && hf[4] == .infinity)
        #expect(hf[5].isNaN)
        let u = try NpyArray(npyBytes: npyBytes(version: (3, 0),
                                                header: "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (4,)}",
                                                data: [0, 1, 7, 255]))
        #expect(u.floats == [0, 1, 7, 255])
        let b = try NpyArray(npyBytes: npyBytes(header: "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                                data: [1, 0, 1]))
        #expect(b.dtype == .bool && b.floats == [1, 0, 1])
    }

    @Test("headers with \\r\\n between and after their entries parse")
    func carriageReturns() throws {
        let two: [UInt8] = littleEndianBytes([Float(1).bitPattern, Float(2).bitPattern])
        let a = try NpyArray(npyBytes: npyBytes(
            header: "{'descr': '<f4',\r\n 'fortran_order': False,\r\n 'shape': (2,),\r\n}\r\n", data: two))
        #expect(a.shape == [2] && a.floats == [1, 2])
    }

    @Test("malformed files give an error naming the file and the problem")
    func malformed() {
        let good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
        let two: [UInt8] = littleEndianBytes([Float(1).bitPattern, Float(2).bitPattern])
        let cases: [([UInt8], NpyError)] = [
            (Array("hello world".utf8), .notNpy(file: "x.npy")),
            ([0x93, 0x4E, 0x55], .truncatedHeader(file: "x.npy")),
            (Array(npyBytes(header: good, data: two).prefix(30)), .truncatedHeader(file: "x.npy")),
            (npyBytes(version: (4, 0), header: good, data: two), .unsupportedVersion(file: "x.npy", major: 4, minor: 0)),
            (npyBytes(header: "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data: two),
             .fortranOrder(file: "x.npy")),
            (npyBytes(header: "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data: two),
             .bigEndian(file: "x.npy", descriptor: ">f4")),
            (npyBytes(header: "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", data: two),
             .unsupportedDType(file: "x.npy", descriptor: "<i4")),
            (npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data: two),
             .dataLengthMismatch(file: "x.npy", shape: [3], expectedBytes: 12, actualBytes: 8)),
            (npyBytes(header: good, data: two + [0]),
             .dataLengthMismatch(file: "x.npy", shape: [2], expectedBytes: 8, actualBytes: 9)),
            (npyBytes(header: "{'descr': '<f4', 'shape': (2,), }", data: two),
             .malformedHeader(file: "x.npy", reason: "no 'fortran_order' key")),
            (npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", data: two),
             .malformedHeader(file: "x.npy", reason: "shape entry '-1' is not a size")),
            (npyBytes(header: "['not', 'a', 'dict']", data: two),
             .malformedHeader(file: "x.npy", reason: "the header is not a {...} dictionary")),
            // Shapes whose product overflows, extents past Int, a non-ASCII header, a header
            // length (format 2: 32 bits) past the end of the file.
            (npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", data: two),
             .malformedHeader(file: "x.npy", reason: "shape [4294967296, 4294967296] overflows")),
            (npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", data: two),
             .malformedHeader(file: "x.npy", reason: "shape entry '99999999999999999999' is not a size")),
            (npyBytes(header: "{'descr': '<f4é', 'fortran_order': False, 'shape': (2,), }", data: two),
             .unsupportedDType(file: "x.npy", descriptor: "<f4é")),
            ([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0, 0xFF, 0xFF, 0xFF, 0x7F] + Array("{'descr'".utf8),
             .truncatedHeader(file: "x.npy")),
        ]
        for (bytes, expected) in cases {
            #expect(throws: expected) { try NpyArray(npyBytes: bytes, name: "x.npy") }
            #expect(expected.description.hasPrefix("x.npy: "))
        }
        #expect(throws: NpyError.self) { try NpyArray(contentsOf: "/nonexistent/q.npy") }
    }
}

