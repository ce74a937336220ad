import CFlashAttention

/// Exact, memory-efficient attention on the CPU.
///
/// Computes, for every batch entry `b` and query head `h` (with key/value head
/// `g = h / (queryHeads / keyValueHeads)`):
///
///     output[b, h] = softmax(scale · query[b, h] · key[b, g]ᵀ + causal mask) · value[b, g]
///
/// The `.flash` implementation never materialises the `Lq × Lk` score matrix: it walks
/// key/value blocks with an online softmax (FlashAttention-2) on OpenMP threads, with a
/// per-thread workspace whose size ``workspaceBytes(shape:options:queryType:keyValueType:)`` reports. The `.naive`
/// implementation materialises the scores with OpenBLAS and is the baseline.
///
/// Every entry point validates all of its arguments first and throws ``AttentionError``
/// naming the offending one; nothing is written then. Calls share no state, so any number
/// of tasks may call concurrently.
///
/// ```swift
/// let shape = AttentionShape(queryHeads: 8, queryLength: 128, headDim: 64)
/// let q = [Float](repeating: 0.1, count: shape.queryCount)
/// let k = [Float](repeating: 0.2, count: shape.keyCount)
/// let v = [Float](repeating: 0.3, count: shape.valueCount)
/// let out = try FlashAttention.forward(query: q, key: k, value: v, shape: shape,
///                                      options: AttentionOptions(causal: .bottomRight))
/// ```
public enum FlashAttention {
    /// The library version, `"major.minor.patch"`.
    public static var version: String { String(cString: fa_version()) }

    /// The micro-kernel set the `.flash` implementation uses on this machine
    /// (`"portable"`, `"avx2"`, `"avx512"`, `"avx512bf16"`, `"neon"` or `"neonbf16"`;
    /// `"avx512amx"` only where `FA_ISA` asks for it).
    ///
    /// ```swift
    /// print("kernels: \(FlashAttention.kernelName)")
    /// ```
    public static var kernelName: String { String(cString: fa_kernel_name()) }

    /// The kernel ISAs this CPU can run, `.portable` first (`.automatic` not included).
    ///
    /// ```swift
    /// for kernel in FlashAttention.supportedKernels { print(kernel) }   // portable, avx2, …
    /// ```
    public static var supportedKernels: [KernelISA] {
        [.portable, .avx2, .avx512, .avx512bf16, .avx512amx, .neon, .neonbf16].filter { fa_isa_supported($0.cValue) != 0 }
    }

    /// The CPU features the kernels may use, as the operating system reports them: on x86
    /// `avx2`, `fma`, `f16c`, `avx512f`, `avx512vl`, `avx512bw`, `avx512dq`, `avx512bf16`,
    /// `amx-bf16` (cpuid, and the OS saving the tile state); on ARM64 `neon`, `fp16`, `dotprod`, `bf16`, `i8mm`, `sve` (Linux's hardware
    /// capabilities; sysctl on Apple platforms). ``supportedKernels`` says which kernels run.
    ///
    /// ```swift
    /// print(FlashAttention.cpuFeatures.joined(separator: " "))   // "avx2 fma f16c"
    /// ```
    public static var cpuFeatures: [String] {
        String(cString: fa_cpu_features()).split(separator: " ").map(String.init)
    }

    /// What the `.flash` implementation would run for a problem: the resolved ISA, its tile
    /// sizes, and the cache sizes they were chosen from.
    ///
    /// ```swift
    /// let info = try FlashAttention.kernelInfo(shape: shape)
    /// print(info.kernel, info.blockQ, info.blockK, info.l2Bytes)
    /// ```
    public static func kernelInfo(shape: AttentionShape,
                                  options: AttentionOptions = AttentionOptions())
        throws(AttentionError) -> KernelInfo
    {
        try shape.validate()
        let strides = AttentionTensorStrides.packed(.bhld, shape: shape)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        _ = try requiredElements(.query, shape: shape, strides: strides, options: options)
        var info = fa_kernel_info()
        guard fa_kernel_info_for(&problem, &info) == FA_OK else {
            throw .unsupportedKernel(options.kernel)
        }
        return KernelInfo(kernel: KernelISA(info.isa), vectorWidth: Int(info.vector_width),
                          blockQ: Int(info.block_q), blockK: Int(info.block_k),
                          l1dBytes: Int(info.l1d_bytes), l2Bytes: Int(info.l2_bytes),
                          l3Bytes: Int(info.l3_bytes))
    }

    /// The thread count a call uses when `AttentionOptions.threadCount` is `nil`
    /// (OpenMP's default, normally the number of cores; 1 without the `OpenMP` trait).
    ///
    /// ```swift
    /// let threads = FlashAttention.defaultThreadCount
    /// ```
    public static var defaultThreadCount: Int { Int(fa_default_threads()) }

    /// Whether the library was built with OpenMP (the package trait `OpenMP`, on by default).
    /// Without it every call runs on its caller's thread and `threadCount` has no effect.
    ///
    /// ```swift
    /// if !FlashAttention.isOpenMPEnabled { print("single-threaded build") }
    /// ```
    public static var isOpenMPEnabled: Bool { fa_openmp_enabled() != 0 }

    /// What runs a call's threads: OpenMP (Linux with the `OpenMP` trait), Grand Central
    /// Dispatch (Apple platforms, whose toolchain has no OpenMP) or nothing (every call on its
    /// caller's thread). The work is partitioned the same way on each, and results are the
    /// same bits whatever runs them.
    ///
    /// ```swift
    /// print(FlashAttention.threadRuntime)  // .openMP on Linux by default
    /// ```
    public static var threadRuntime: ThreadRuntime {
        ThreadRuntime(rawValue: String(cString: fa_threads_runtime())) ?? .serial
    }

    /// The runtimes ``threadRuntime`` reports.
    public enum ThreadRuntime: String, Sendable {
        /// An OpenMP parallel region per call.
        case openMP = "openmp"
        /// `dispatch_apply` on a global concurrent queue per call.
        case dispatch
        /// The caller's thread alone: `AttentionOptions.threadCount` has no effect.
        case serial
    }

    // MARK: Arrays

    /// Attention over `Float` arrays: the all-`Float` form of the generic array forward below,
    /// and what array literals call (a literal would not pick a generic element type).
    ///
    /// ```swift
    /// let out = try FlashAttention.forward(query: [0, 1], key: [0, 0, 0, 1], value: [1, 0, 0, 1],
    ///                                      shape: AttentionShape(queryHeads: 1, queryLength: 1,
    ///                                                            keyLength: 2, headDim: 2))
    /// ```
    public static func forward(query: [Float], key: [Float], value: [Float],
                               shape: AttentionShape,
                               options: AttentionOptions = AttentionOptions())
        throws(AttentionError) -> [Float]
    {
        try forwardArrays(query: query, key: key, value: value, shape: shape, options: options,
                          wantsLogSumExp: false).output
    }

    /// Attention over densely packed arrays in `options.layout` (`[B, H, L, D]` by default).
    ///
    /// Each array must hold exactly its shape's element count (``AttentionShape/queryCount``, …).
    /// The query (and the returned output) may be `Float`, `Float16` or ``BFloat16``, the keys
    /// and values likewise (see ``AttentionElement``).
    ///
    /// ```swift
    /// let out = try FlashAttention.forward(query: q, key: k, value: v, shape: shape)
    /// ```
    /// - Returns: The output, `[B, Hq, Lq, Dv]` in `options.layout`.
    public static func forward<Element: AttentionElement, Cache: AttentionElement>(
        query: [Element], key: [Cache], value: [Cache], shape: AttentionShape,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) -> [Element] {
        try forwardArrays(query: query, key: key, value: value, shape: shape, options: options,
                          wantsLogSumExp: false).output
    }

    /// The all-`Float` form of the log-sum-exp forward: what `Float` arrays and array literals
    /// call.
    public static func forwardWithLogSumExp(query: [Float], key: [Float], value: [Float],
                                            shape: AttentionShape,
                                            options: AttentionOptions = AttentionOptions())
        throws(AttentionError) -> (output: [Float], logSumExp: [Float])
    {
        let result = try forwardArrays(query: query, key: key, value: value, shape: shape,
                                       options: options, wantsLogSumExp: true)
        return (result.output, result.logSumExp)
    }

    /// Attention over densely packed arrays, returning the log-sum-exp of each query row too.
    ///
    /// `logSumExp[b, h, i]` is the natural log of `Σ_j exp(scale · q_i · k_j)` over the keys row
    /// `i` sees: `−∞` for a row that sees none (its output row is 0). It is what a backward pass
    /// or a merge of partial results (split keys) needs.
    ///
    /// ```swift
    /// let (out, lse) = try FlashAttention.forwardWithLogSumExp(query: q, key: k, value: v,
    ///                                                          shape: shape)
    /// ```
    /// - Returns: The output in `options.layout` and the log-sum-exp as a dense `[B, Hq, Lq]`.
    public static func forwardWithLogSumExp<Element: AttentionElement, Cache: AttentionElement>(
        query: [Element], key: [Cache], value: [Cache], shape: AttentionShape,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) -> (output: [Element], logSumExp: [Float]) {
        let result = try forwardArrays(query: query, key: key, value: value, shape: shape,
                                       options: options, wantsLogSumExp: true)
        return (result.output, result.logSumExp)
    }

    // MARK: Caller-owned memory

    /// Attention over caller-owned memory, without copies.
    ///
    /// Each buffer must hold at least the elements its shape and strides address. The outputs
    /// must not share memory with the inputs or with each other.
    ///
    /// The query and output are stored as `Element`, the keys and values as `Cache`: `Float`,
    /// `Float16` or ``BFloat16`` each (all half, or `Float` over a half K/V cache). Arithmetic
    /// is `Float` whatever the storage; a half output is rounded to nearest even once.
    ///
    /// ```swift
    /// let strides = AttentionTensorStrides.packed(.blhd, shape: shape)
    /// try q.withUnsafeBufferPointer { q in
    ///     try k.withUnsafeBufferPointer { k in
    ///         try v.withUnsafeBufferPointer { v in
    ///             try out.withUnsafeMutableBufferPointer { o in
    ///                 try FlashAttention.forward(query: q, key: k, value: v, output: o,
    ///                                            shape: shape, strides: strides)
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    /// - Parameters:
    ///   - query: `[B, Hq, Lq, Dqk]` (a packed side: `[Tq, Hq, Dqk]`), laid out by `strides`.
    ///   - key: `[B, Hkv, Lk, Dqk]`.
    ///   - value: `[B, Hkv, Lk, Dv]`.
    ///   - output: Receives `[B, Hq, Lq, Dv]`.
    ///   - logSumExp: Optional `[B, Hq, Lq]` output: each row's natural log of its sum of
    ///     exponentials (−∞ for a row that sees no key), as `forwardWithLogSumExp` returns it.
    ///   - shape: The extents of every tensor.
    ///   - strides: The strides of every tensor; `nil` means densely packed in `options.layout`.
    ///   - options: Masks, modifiers, lengths, threads and kernel.
    public static func forward<Element: AttentionElement, Cache: AttentionElement>(
        query: UnsafeBufferPointer<Element>,
        key: UnsafeBufferPointer<Cache>,
        value: UnsafeBufferPointer<Cache>,
        output: UnsafeMutableBufferPointer<Element>,
        logSumExp: UnsafeMutableBufferPointer<Float>? = nil,
        shape: AttentionShape,
        strides: AttentionTensorStrides? = nil,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) {
        try shape.validate()
        let strides = strides ?? .packed(options.layout, shape: shape)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        try checkBuffer(.query, count: query.count, shape: shape, strides: strides, options: options)
        try checkBuffer(.key, count: key.count, shape: shape, strides: strides, options: options)
        try checkBuffer(.value, count: value.count, shape: shape, strides: strides, options: options)
        try checkBuffer(.output, count: output.count, shape: shape, strides: strides, options: options)
        if let logSumExp {
            try checkBuffer(.logSumExp, count: logSumExp.count, shape: shape, strides: strides, options: options)
            problem.lse = logSumExp.baseAddress
        }
        problem.bind(query: query, key: key, value: value, output: UnsafeRawPointer(output.baseAddress))
        try withScoreModifiers(options, &problem) { (p) throws(AttentionError) in
            try run(&p, implementation: options.implementation, strides: strides)
        }
    }

    /// Attention over spans: the safe zero-copy path.
    ///
    /// ```swift
    /// var out = [Float](repeating: 0, count: shape.outputCount)
    /// var span = out.mutableSpan
    /// try FlashAttention.forward(query: q.span, key: k.span, value: v.span, output: &span,
    ///                            shape: shape)
    /// ```
    public static func forward<Element: AttentionElement, Cache: AttentionElement>(
        query: Span<Element>, key: Span<Cache>, value: Span<Cache>,
        output: inout MutableSpan<Element>,
        shape: AttentionShape,
        strides: AttentionTensorStrides? = nil,
        options: AttentionOptions = AttentionOptions()
    ) throws(AttentionError) {
        try query.withUnsafeBufferPointer { (q) throws(AttentionError) in
            try key.withUnsafeBufferPointer { (k) throws(AttentionError) in
                try value.withUnsafeBufferPointer { (v) throws(AttentionError) in
                    try output.withUnsafeMutableBufferPointer { (o) throws(AttentionError) in
                        try forward(query: q, key: k, value: v, output: o, logSumExp: nil,
                                    shape: shape, strides: strides, options: options)
                    }
                }
            }
        }
    }

    // MARK: Memory

    /// Bytes of workspace the `.flash` implementation allocates for one call (once, before its
    /// loops). It grows with threads × tile size × head dims and never with `Lq × Lk`.
    ///
    /// ```swift
    /// let bytes = try FlashAttention.workspaceBytes(shape: shape)   // ~O(threads · 64 · D)
    /// ```
    ///
    /// Half-precision storage (`queryType` for the query and output, `keyValueType` for the
    /// keys and values) adds the per-thread tiles they are widened into.
    public static func workspaceBytes(shape: AttentionShape,
                                      options: AttentionOptions = AttentionOptions(),
                                      queryType: AttentionElementType = .float32,
                                      keyValueType: AttentionElementType = .float32)
        throws(AttentionError) -> Int
    {
        try shape.validate()
        let strides = AttentionTensorStrides.packed(.bhld, shape: shape)
        var problem = try makeProblem(shape: shape, strides: strides, options: options)
        (problem.q_dtype, problem.o_dtype) = (queryType.cType, queryType.cType)
        (problem.k_dtype, problem.v_dtype) = (keyValueType.cType, keyValueType.cType)
        _ = try requiredElements(.query, shape: shape, strides: strides, options: options)  // checks every extent
        var bytes = 0
        let status = fa_workspace_bytes(&problem, &bytes)
        guard status == FA_OK else {
            throw .sizeOverflow(argument: "workspace")
        }
        return bytes
    }

    // MARK: Private

    private static func forwardArrays<Element: AttentionElement, Cache: AttentionElement>(
        query: [Element], key: [Cache], value: [Cache], shape: AttentionShape,
        options: AttentionOptions, wantsLogSumExp: Bool
    ) throws(AttentionError) -> (output: [Element], logSumExp: [Float]) {
        try shape.validate()
        let strides = AttentionTensorStrides.packed(options.layout, shape: shape)
        _ = try makeProblem(shape: shape, strides: strides, options: options)
        for role in [TensorRole.query, .key, .value] {
            let count = role == .query ? query.count : role == .key ? key.count : value.count
            let required = try requiredElements(role, shape: shape, strides: strides, options: options)
            guard count == required else {
                throw .wrongCount(argument: role.name, expected: required, count: count)
            }
        }
        let outputCount = try requiredElements(.output, shape: shape, strides: strides, options: options)
        let lseCount = wantsLogSumExp
            ? try requiredElements(.logSumExp, shape: shape, strides: strides, options: options) : 0
        var output = [Element](unsafeUninitializedCapacity: outputCount) { buffer, count in
            // Every element is written by the call (zero bits are 0 in every element type).
            UnsafeMutableRawBufferPointer(buffer).initializeMemory(as: UInt8.self, repeating: 0)
            count = outputCount
        }
        var logSumExp = [Float](repeating: 0, count: lseCount)
        try query.withUnsafeBufferPointer { (q) throws(AttentionError) in
            try key.withUnsafeBufferPointer { (k) throws(AttentionError) in
                try value.withUnsafeBufferPointer { (v) throws(AttentionError) in
                    try output.withUnsafeMutableBufferPointer { (o) throws(AttentionError) in
                        try logSumExp.withUnsafeMutableBufferPointer { (l) throws(AttentionError) in
                            try forward(query: q, key: k, value: v, output: o,
                                        logSumExp: wantsLogSumExp ? l : nil,
                                        shape: shape, strides: strides, options: options)
                        }
                    }
                }
            }
        }
        return (output, logSumExp)
    }
}

extension AttentionShape {
    /// Bytes of workspace the `.flash` implementation needs with every available thread; see
    /// ``FlashAttention/workspaceBytes(shape:options:queryType:keyValueType:)``.
    ///
    /// ```swift
    /// let bytes = try AttentionShape(queryHeads: 8, queryLength: 8192, headDim: 64).workspaceBytes
    /// ```
    public var workspaceBytes: Int {
        get throws(AttentionError) { try FlashAttention.workspaceBytes(shape: self) }
    }
}

/// The kernels and tiles the `.flash` implementation uses for a problem
/// (see ``FlashAttention/kernelInfo(shape:options:)``).
public struct KernelInfo: Sendable, Hashable {
    /// The resolved ISA (never `.automatic`).
    public var kernel: KernelISA
    /// Floats per vector register.
    public var vectorWidth: Int
    /// Query rows per block.
    public var blockQ: Int
    /// Keys per block.
    public var blockK: Int
    /// Per-core L1 data cache, in bytes (0 when unknown).
    public var l1dBytes: Int
    /// Per-core L2 cache, in bytes (0 when unknown): the query block is sized from it.
    public var l2Bytes: Int
    /// L3 cache as the system reports it, in bytes (0 when unknown).
    public var l3Bytes: Int
}
