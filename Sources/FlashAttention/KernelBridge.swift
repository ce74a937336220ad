import CFlashAttention

// The one place that builds C descriptors and turns C diagnostics into AttentionError.

/// The tensors of a call, in the C library's argument order.
enum TensorRole: CaseIterable {
    case query, key, value, output, logSumExp
    case outputGradient, queryGradient, keyGradient, valueGradient

    var name: String {
        switch self {
        case .query: "query"
        case .key: "key"
        case .value: "value"
        case .output: "output"
        case .logSumExp: "logSumExp"
        case .outputGradient: "outputGradient"
        case .queryGradient: "queryGradient"
        case .keyGradient: "keyGradient"
        case .valueGradient: "valueGradient"
        }
    }

    var argument: fa_argument {
        switch self {
        case .query: FA_ARG_Q
        case .key: FA_ARG_K
        case .value: FA_ARG_V
        case .output: FA_ARG_O
        case .logSumExp: FA_ARG_LSE
        case .outputGradient: FA_ARG_DOUT
        case .queryGradient: FA_ARG_DQ
        case .keyGradient: FA_ARG_DK
        case .valueGradient: FA_ARG_DV
        }
    }

    /// K, V and their gradients: the tensors indexed by key.
    var isKeySide: Bool {
        self == .key || self == .value || self == .keyGradient || self == .valueGradient
    }

    init?(_ argument: fa_argument) {
        guard let role = Self.allCases.first(where: { $0.argument == argument }) else { return nil }
        self = role
    }

    func strides(in all: AttentionTensorStrides,
                 _ gradients: AttentionGradientStrides? = nil) -> AttentionStrides {
        switch self {
        case .query: all.query
        case .key: all.key
        case .value: all.value
        case .output: all.output
        case .logSumExp: all.logSumExp
        case .outputGradient: gradients?.output ?? all.output
        case .queryGradient: gradients?.query ?? all.query
        case .keyGradient: gradients?.key ?? all.key
        case .valueGradient: gradients?.value ?? all.value
        }
    }
}

extension AttentionShape {
    var cShape: fa_shape {
        fa_shape(batch: Int64(batch), q_heads: Int64(queryHeads), kv_heads: Int64(keyValueHeads),
                 q_len: Int64(queryLength), kv_len: Int64(keyLength),
                 head_dim_qk: Int64(headDim), head_dim_v: Int64(valueHeadDim))
    }
}

extension AttentionStrides {
    package var cStrides: fa_strides {
        fa_strides(batch: Int64(batch), head: Int64(head), seq: Int64(sequence))
    }
}

extension KernelISA {
    var cValue: fa_isa {
        switch self {
        case .automatic: FA_ISA_AUTO
        case .portable: FA_ISA_PORTABLE
        case .avx2: FA_ISA_AVX2
        case .avx512: FA_ISA_AVX512
        case .avx512bf16: FA_ISA_AVX512_BF16
        case .avx512amx: FA_ISA_AVX512_AMX
        case .neon: FA_ISA_NEON
        case .neonbf16: FA_ISA_NEON_BF16
        }
    }

    init(_ isa: fa_isa) {
        self = Self.allCases.first { $0.cValue == isa } ?? .automatic
    }
}

extension CausalMask {
    var cValue: fa_causal {
        switch self {
        case .none: FA_CAUSAL_NONE
        case .bottomRight: FA_CAUSAL_BOTTOM_RIGHT
        case .topLeft: FA_CAUSAL_TOP_LEFT
        }
    }
}

extension fa_problem {
    /// Points the problem at its forward tensors (the output as its address) and sets their
    /// element types: the query's and output's `E`, the keys' and values' `C`.
    mutating func bind<E: AttentionElement, C: AttentionElement>(
        query: UnsafeBufferPointer<E>, key: UnsafeBufferPointer<C>, value: UnsafeBufferPointer<C>,
        output: UnsafeRawPointer?
    ) {
        q = UnsafeRawPointer(query.baseAddress)
        k = UnsafeRawPointer(key.baseAddress)
        v = UnsafeRawPointer(value.baseAddress)
        o = UnsafeMutableRawPointer(mutating: output)
        q_dtype = E.attentionElementType.cType
        o_dtype = E.attentionElementType.cType
        k_dtype = C.attentionElementType.cType
        v_dtype = C.attentionElementType.cType
    }

    /// Points the problem at the backward's log-sum-exp, output gradient and gradients.
    mutating func bindGradients<E: AttentionElement, C: AttentionElement>(
        logSumExp: UnsafeBufferPointer<Float>, outputGradient: UnsafeBufferPointer<E>,
        queryGradient: UnsafeMutableBufferPointer<E>, keyGradient: UnsafeMutableBufferPointer<C>,
        valueGradient: UnsafeMutableBufferPointer<C>, strides gradients: AttentionGradientStrides
    ) {
        lse = UnsafeMutablePointer(mutating: logSumExp.baseAddress)
        dout = UnsafeRawPointer(outputGradient.baseAddress)
        dout_strides = gradients.output.cStrides
        dq = UnsafeMutableRawPointer(queryGradient.baseAddress)
        dq_strides = gradients.query.cStrides
        dk = UnsafeMutableRawPointer(keyGradient.baseAddress)
        dk_strides = gradients.key.cStrides
        dv = UnsafeMutableRawPointer(valueGradient.baseAddress)
        dv_strides = gradients.value.cStrides
    }
}

/// A C problem with everything but the pointers, after the checks Swift can do on its own.
/// The caller has run `shape.validate()` (every entry point does, first: its strides and
/// counts multiply the extents), so it is not repeated here.
package func makeProblem(shape: AttentionShape, strides: AttentionTensorStrides,
                         options: AttentionOptions) throws(AttentionError) -> fa_problem {
    var p = fa_problem()
    fa_problem_init(&p)
    p.shape = shape.cShape
    p.q_strides = strides.query.cStrides
    p.k_strides = strides.key.cStrides
    p.v_strides = strides.value.cStrides
    p.o_strides = strides.output.cStrides
    p.lse_strides = strides.logSumExp.cStrides
    if let scale = options.scale {
        guard scale.isFinite else { throw .invalidScale(scale) }
        p.scale = scale
    }
    p.causal = options.causal.cValue
    guard options.keySplitSize >= 0 else { throw .invalidKeySplitSize(options.keySplitSize) }
    p.kv_split_size = Int64(options.keySplitSize)
    if let window = options.window {
        for side in [window.left, window.right] {
            if let side, side < 0 || side > Int(Int32.max) {
                throw .invalidWindow(left: window.left, right: window.right)
            }
        }
        p.window_left = Int64(window.left ?? -1)
        p.window_right = Int64(window.right ?? -1)
    }
    if let positions = options.positions {
        let limit = 1 << 40  // FA_MAX_POSITION
        for (name, at) in [("options.positions.queryStart", positions.queryStart),
                           ("options.positions.keyStart", positions.keyStart)] where at < -limit || at > limit {
            throw .invalidExtent(argument: name, value: at)
        }
        p.positions.enabled = 1
        p.positions.q_start = Int64(positions.queryStart)
        p.positions.kv_start = Int64(positions.keyStart)
    }
    if let softcap = options.softcap {
        guard softcap.isFinite, softcap > 0 else { throw .invalidSoftcap(softcap) }
        p.softcap = softcap
    }
    if let slopes = options.alibiSlopes {
        guard slopes.count == shape.queryHeads else {
            throw .invalidALiBiSlopes(reason: "\(slopes.count) slopes for \(shape.queryHeads) query heads")
        }
        if let bad = slopes.firstIndex(where: { !$0.isFinite }) {
            throw .invalidALiBiSlopes(reason: "slope \(bad) is \(slopes[bad])")
        }
    }
    for (name, lengths, extent) in [("options.queryLengths", options.queryLengths, shape.queryLength),
                                    ("options.keyLengths", options.keyLengths, shape.keyLength)] {
        guard let lengths else { continue }
        guard lengths.count == shape.batch else {
            throw .invalidLengths(argument: name, reason: "\(lengths.count) lengths for batch \(shape.batch)")
        }
        if let bad = lengths.firstIndex(where: { $0 < 0 || $0 > extent }) {
            throw .invalidLengths(argument: name,
                                  reason: "entry \(bad) is \(lengths[bad]); it must be between 0 and \(extent)")
        }
    }
    for (name, offsets, lengths, extent) in [
        ("options.querySequenceOffsets", options.querySequenceOffsets, options.queryLengths, shape.queryLength),
        ("options.keySequenceOffsets", options.keySequenceOffsets, options.keyLengths, shape.keyLength),
    ] {
        guard let offsets else { continue }
        guard lengths == nil else {
            throw .invalidSequenceOffsets(argument: name, reason: "a side is either packed (offsets) or padded (lengths), not both")
        }
        guard offsets.count == shape.batch + 1 else {
            throw .invalidSequenceOffsets(argument: name, reason: "\(offsets.count) offsets for \(shape.batch) sequences; it needs batch + 1")
        }
        guard offsets[0] == 0 else {
            throw .invalidSequenceOffsets(argument: name, reason: "the first offset is \(offsets[0]); it must be 0")
        }
        if let bad = offsets.indices.dropFirst().first(where: { offsets[$0] < offsets[$0 - 1] }) {
            throw .invalidSequenceOffsets(argument: name, reason: "offset \(bad) is \(offsets[bad]), below offset \(bad - 1) (\(offsets[bad - 1]))")
        }
        guard offsets[shape.batch] <= extent else {
            throw .invalidSequenceOffsets(argument: name, reason: "the last offset is \(offsets[shape.batch]), past the packed extent \(extent)")
        }
    }
    // Masks are indexed by local positions: on a packed side, up to the longest sequence.
    var maskShape = shape
    if let o = options.querySequenceOffsets, o.count == shape.batch + 1 {
        maskShape.queryLength = max(1, zip(o.dropFirst(), o).map { $0 - $1 }.max() ?? 1)
    }
    if let o = options.keySequenceOffsets, o.count == shape.batch + 1 {
        maskShape.keyLength = max(1, zip(o.dropFirst(), o).map { $0 - $1 }.max() ?? 1)
    }
    if let mask = options.mask {
        guard let required = mask.requiredCount(maskShape) else {
            throw .invalidMask(reason: "strides \(mask.strides) are negative or overflow")
        }
        guard mask.count >= required else {
            throw .invalidMask(reason: "it holds \(mask.count) elements; its strides need \(required)")
        }
        let st = mask.strides
        p.mask.batch = Int64(st.batch)
        p.mask.head = Int64(st.head)
        p.mask.query = Int64(st.query)
        p.mask.key = Int64(st.key)
    }
    if let bm = options.blockMask {
        guard let required = bm.requiredCount(maskShape) else {
            throw .invalidMask(reason: "block mask: granularity \(bm.blockQuery) × \(bm.blockKey) or strides \(bm.strides) invalid")
        }
        guard bm.kept.count >= required else {
            throw .invalidMask(reason: "block mask holds \(bm.kept.count) blocks; its strides need \(required)")
        }
        p.block_mask.block_q = Int64(bm.blockQuery)
        p.block_mask.block_k = Int64(bm.blockKey)
        p.block_mask.batch = Int64(bm.strides.batch)
        p.block_mask.head = Int64(bm.strides.head)
        p.block_mask.qblock = Int64(bm.strides.query)
        p.block_mask.kblock = Int64(bm.strides.key)
    }
    guard fa_isa_supported(options.kernel.cValue) != 0 else {
        throw .unsupportedKernel(options.kernel)
    }
    p.isa = options.kernel.cValue
    if let threads = options.threadCount {
        guard threads >= 1, threads <= Int(Int32.max) else { throw .invalidThreadCount(threads) }
        p.num_threads = Int32(threads)
    }
    return p
}

/// Elements the buffer of `role` must hold; throws for bad extents or strides. A side of
/// packed sequences has no batch dimension.
func requiredElements(_ role: TensorRole, shape: AttentionShape, strides: AttentionTensorStrides,
                      options: AttentionOptions,
                      gradients: AttentionGradientStrides? = nil) throws(AttentionError) -> Int {
    var cShape = shape.cShape
    if role.isKeySide ? options.keySequenceOffsets != nil : options.querySequenceOffsets != nil {
        cShape.batch = 1
    }
    var elements: Int64 = 0
    var diag = fa_diagnostic()
    let status = fa_tensor_elements(&cShape, role.argument,
                                    role.strides(in: strides, gradients).cStrides, &elements, &diag)
    guard status == FA_OK else { throw AttentionError(diag, strides: strides, gradients: gradients) }
    return Int(elements)
}

/// Throws unless a buffer of `count` elements is large enough for `role`.
func checkBuffer(_ role: TensorRole, count: Int, shape: AttentionShape,
                 strides: AttentionTensorStrides, options: AttentionOptions,
                 gradients: AttentionGradientStrides? = nil) throws(AttentionError) {
    let required = try requiredElements(role, shape: shape, strides: strides, options: options,
                                        gradients: gradients)
    guard count >= required else {
        throw .bufferTooSmall(argument: role.name, required: required, count: count)
    }
}

/// Runs `body` with the problem's per-call arrays (ALiBi slopes, per-batch lengths) pointing
/// at the options' values for the duration of the call.
package func withScoreModifiers(_ options: AttentionOptions, _ problem: inout fa_problem,
                                _ body: (inout fa_problem) throws(AttentionError) -> Void) throws(AttentionError) {
    let qLengths = options.queryLengths.map { $0.map { Int32($0) } } ?? []
    let kvLengths = options.keyLengths.map { $0.map { Int32($0) } } ?? []
    let qOffsets = options.querySequenceOffsets.map { $0.map { Int32($0) } } ?? []
    let kvOffsets = options.keySequenceOffsets.map { $0.map { Int32($0) } } ?? []
    let slopes = options.alibiSlopes ?? []
    let blocks = options.blockMask?.kept ?? []
    try qOffsets.withUnsafeBufferPointer { (qo) throws(AttentionError) in
    try kvOffsets.withUnsafeBufferPointer { (ko) throws(AttentionError) in
    try blocks.withUnsafeBufferPointer { (bk) throws(AttentionError) in
    problem.block_mask.data = options.blockMask == nil ? nil : bk.baseAddress
    problem.cu_seqlens_q = options.querySequenceOffsets == nil ? nil : qo.baseAddress
    problem.cu_seqlens_k = options.keySequenceOffsets == nil ? nil : ko.baseAddress
    defer {
        problem.block_mask.data = nil
        problem.cu_seqlens_q = nil
        problem.cu_seqlens_k = nil
    }
    try slopes.withUnsafeBufferPointer { (s) throws(AttentionError) in
        try qLengths.withUnsafeBufferPointer { (ql) throws(AttentionError) in
            try kvLengths.withUnsafeBufferPointer { (kl) throws(AttentionError) in
                problem.alibi_slopes = options.alibiSlopes == nil ? nil : s.baseAddress
                problem.q_lengths = options.queryLengths == nil ? nil : ql.baseAddress
                problem.kv_lengths = options.keyLengths == nil ? nil : kl.baseAddress
                defer {
                    problem.alibi_slopes = nil
                    problem.q_lengths = nil
                    problem.kv_lengths = nil
                    problem.mask.data = nil
                    problem.mask.kind = FA_MASK_NONE
                }
                switch options.mask?.values {
                case nil:
                    try body(&problem)
                case let .boolean(values)?:
                    try values.withUnsafeBufferPointer { (m) throws(AttentionError) in
                        problem.mask.kind = FA_MASK_BOOL
                        problem.mask.data = UnsafeRawPointer(m.baseAddress)
                        try body(&problem)
                    }
                case let .additive(values)?:
                    try values.withUnsafeBufferPointer { (m) throws(AttentionError) in
                        problem.mask.kind = FA_MASK_ADDITIVE
                        problem.mask.data = UnsafeRawPointer(m.baseAddress)
                        try body(&problem)
                    }
                }
            }
        }
    }
    }
    }
    }
}

/// Validates the complete descriptor in C, then runs the chosen kernel.
func run(_ problem: inout fa_problem, implementation: AttentionImplementation,
         strides: AttentionTensorStrides) throws(AttentionError) {
    var diag = fa_diagnostic()
    guard fa_check(&problem, &diag) == FA_OK else { throw AttentionError(diag, strides: strides) }
    let status = switch implementation {
    case .flash: fa_forward(&problem)
    case .naive: fa_naive_forward(&problem)
    }
    guard status == FA_OK else {
        diag.status = status
        diag.argument = implementation == .flash ? FA_ARG_WORKSPACE : FA_ARG_PROBLEM
        throw AttentionError(diag, strides: strides)
    }
}

/// The backward counterpart of `run`.
func runBackward(_ problem: inout fa_problem, implementation: AttentionImplementation,
                 strides: AttentionTensorStrides,
                 gradients: AttentionGradientStrides) throws(AttentionError) {
    var diag = fa_diagnostic()
    guard fa_check_backward(&problem, &diag) == FA_OK else {
        throw AttentionError(diag, strides: strides, gradients: gradients)
    }
    let status = switch implementation {
    case .flash: fa_backward(&problem)
    case .naive: fa_naive_backward(&problem)
    }
    guard status == FA_OK else {
        diag.status = status
        diag.argument = implementation == .flash ? FA_ARG_WORKSPACE : FA_ARG_PROBLEM
        throw AttentionError(diag, strides: strides, gradients: gradients)
    }
}

extension AttentionError {
    /// The typed error for a C diagnostic, with the argument named as in Swift.
    package init(_ diag: fa_diagnostic, strides: AttentionTensorStrides,
                 gradients: AttentionGradientStrides? = nil) {
        let v0 = Int(diag.values.0), v1 = Int(diag.values.1)
        let message = withUnsafeBytes(of: diag.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let name = Self.swiftName(diag.argument)
        switch diag.status {
        case FA_ERR_INVALID_EXTENT:
            self = .invalidExtent(argument: name, value: v0)
        case FA_ERR_HEAD_GROUPING:
            self = .headCountMismatch(queryHeads: v0, keyValueHeads: v1)
        case FA_ERR_INVALID_STRIDE:
            let role = TensorRole(diag.argument) ?? .query
            self = .invalidStrides(argument: name, strides: role.strides(in: strides, gradients),
                                   reason: message)
        case FA_ERR_OVERLAP:
            self = .overlappingBuffers(argument: name,
                                       other: Self.swiftName(fa_argument(UInt32(v0))))
        case FA_ERR_SIZE_OVERFLOW:
            self = .sizeOverflow(argument: name)
        case FA_ERR_OUT_OF_MEMORY:
            self = .outOfMemory(argument: diag.argument == FA_ARG_WORKSPACE
                                ? "flash workspace" : "naive score matrix")
        case FA_ERR_NULL_POINTER where diag.argument == FA_ARG_LSE:
            self = .missingLogSumExp
        case FA_ERR_INVALID_SOFTCAP:  // values[0]: the caller's float, as bits
            self = .invalidSoftcap(Float(bitPattern: UInt32(truncatingIfNeeded: diag.values.0)))
        case FA_ERR_INVALID_SCALE:
            self = .invalidScale(Float(bitPattern: UInt32(truncatingIfNeeded: diag.values.0)))
        case FA_ERR_INVALID_ALIBI:
            self = .invalidALiBiSlopes(reason: message)
        case FA_ERR_INVALID_MASK, FA_ERR_INVALID_BLOCK_MASK:
            self = .invalidMask(reason: message)
        case FA_ERR_INVALID_LENGTH:
            self = .invalidLengths(argument: name, reason: message)
        case FA_ERR_INVALID_OFFSETS:
            self = .invalidSequenceOffsets(argument: name, reason: message)
        case FA_ERR_INVALID_SPLIT:
            self = .invalidKeySplitSize(Int(v0))
        case FA_ERR_INVALID_WINDOW:
            self = .invalidWindow(left: v0 < 0 ? nil : v0, right: v1 < 0 ? nil : v1)
        case FA_ERR_UNSUPPORTED_ISA:
            self = .unsupportedKernel(KernelISA(fa_isa(UInt32(v0))))
        case FA_ERR_NULL_POINTER:
            self = .missingBuffer(argument: name)
        case FA_ERR_INVALID_DTYPE:
            self = .unsupportedElementType(argument: name, reason: message)
        case FA_ERR_INVALID_PAGES:
            self = .invalidPages(argument: name, reason: message)
        default:
            self = .kernelFailure(status: Int(diag.status.rawValue),
                                  message: message.isEmpty
                                    ? String(cString: fa_status_message(diag.status)) : message)
        }
    }

    static func swiftName(_ argument: fa_argument) -> String {
        switch argument {
        case FA_ARG_BATCH: "shape.batch"
        case FA_ARG_Q_HEADS: "shape.queryHeads"
        case FA_ARG_KV_HEADS: "shape.keyValueHeads"
        case FA_ARG_Q_LEN: "shape.queryLength"
        case FA_ARG_KV_LEN: "shape.keyLength"
        case FA_ARG_HEAD_DIM_QK: "shape.headDim"
        case FA_ARG_HEAD_DIM_V: "shape.valueHeadDim"
        case FA_ARG_SCALE: "options.scale"
        case FA_ARG_CAUSAL: "options.causal"
        case FA_ARG_NUM_THREADS: "options.threadCount"
        case FA_ARG_WORKSPACE: "workspace"
        case FA_ARG_ISA: "options.kernel"
        case FA_ARG_WINDOW: "options.window"
        case FA_ARG_Q_LENGTHS: "options.queryLengths"
        case FA_ARG_KV_LENGTHS: "options.keyLengths"
        case FA_ARG_CU_SEQLENS_Q: "options.querySequenceOffsets"
        case FA_ARG_CU_SEQLENS_K: "options.keySequenceOffsets"
        case FA_ARG_SOFTCAP: "options.softcap"
        case FA_ARG_ALIBI: "options.alibiSlopes"
        case FA_ARG_MASK: "options.mask"
        case FA_ARG_BLOCK_MASK: "options.blockMask"
        case FA_ARG_KV_SPLIT_SIZE: "options.keySplitSize"
        case FA_ARG_KV_PAGES: "pages"
        case FA_ARG_KV_INDPTR: "pages.table.indptr"
        case FA_ARG_KV_INDICES: "pages.table.indices"
        case FA_ARG_KV_LAST_PAGE_LEN: "pages.table.lastPageLengths"
        case FA_ARG_BLOCK_TABLE: "pages.table"
        case FA_ARG_SEQ_LENS: "pages.table.sequenceLengths"
        case FA_ARG_POSITIONS: "options.positions"
        default: TensorRole(argument)?.name ?? "problem"
        }
    }
}
