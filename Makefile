# make test   — install what is missing, run every test: unit tests (debug, release, no OpenMP),
#               the by-version consumer check, then (installing Open MPI) ASan + UBSan, TSan,
#               the fuzzer, the DocC build, ring attention under mpirun, and the C target
#               built for ARM64 and run under qemu
# make bench  — install what is missing, run the benchmark's default sweep in release mode,
#               writing Benchmarks/results/ (the README's table and charts)
SHELL := /bin/bash
SWIFT ?= swift
PACKAGES := libopenblas-dev libomp-dev
BENCH_ARGS ?=
# This CPU's features: sanitizer builds leave uninstrumented the kernels it can never run.
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
UNINSTRUMENTED := $(if $(filter avx512f,$(CPU_FLAGS)),,-Xcc -DFA_UNINSTRUMENTED_AVX512)

.PHONY: debug-test release-test deps mpi-deps mpi-test mpi-bench arm64-deps test-arm64 test-dispatch test-amx-emulated torch build test unit-test sanitize-test thread-test docs fuzz fuzz-long consumer-test bench bench-backward clean

# System libraries: OpenBLAS (the naive reference and the roofline) and LLVM's OpenMP runtime.
deps:
	@missing=""; \
	for p in $(PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "Missing:$$missing. Install OpenBLAS and LLVM's OpenMP runtime with your package manager."; exit 1; \
	  elif [ "$$(id -u)" = "0" ]; then \
	    echo "Installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing:$$missing. Run:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Open MPI, for ring attention (FlashAttentionMPI with the trait MPI) alone: the core package
# never needs it. `make test` installs it after unit-test and consumer-test, which so prove the
# package builds and tests without it.
MPI_PACKAGES := libopenmpi-dev openmpi-bin
mpi-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(MPI_PACKAGES)"
MPIRUN = mpirun $$([ "$$(id -u)" = 0 ] && echo --allow-run-as-root) --oversubscribe --timeout 300
MPI_ENV := OMP_NUM_THREADS=1 KMP_BLOCKTIME=0

# PyTorch for python3, optional: PyTorchAccuracyTests compare our errors with its float32 CPU
# attention and are skipped without it. Installed from a local CPU wheel (/opt/wheels on these
# machines) when there is one; never a failure.
torch:
	@python3 -c "import torch" 2>/dev/null || { \
	  wheel=$$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -n 1); \
	  if [ -n "$$wheel" ]; then \
	    echo "Installing PyTorch from $$wheel (for PyTorchAccuracyTests)"; \
	    python3 -m pip install -q "$$wheel" || echo "PyTorch could not be installed: PyTorchAccuracyTests will be skipped"; \
	  else echo "No PyTorch wheel at hand: PyTorchAccuracyTests will be skipped"; fi; }

build: deps
	$(SWIFT) build

# Every suite in release (the -O2, vectorised C that users get), with the traits OpenMP and MPI
# (Open MPI installed first: RingAttentionTests then sees a working ring, and mpi-test runs
# the ring's check from this same build). debug-test builds everything in debug without the
# OpenMP trait — the single-threaded library a dependent gets with `traits: []`, before Open
# MPI is on the machine, so proving that the package builds and tests without either — and
# runs the suites about arguments, files, caches, concurrency and determinism there
# (DEBUG_SUITES; assertions on, C at -O0): the numerical grids take a quarter of an hour in
# debug and check nothing the release run does not. sanitize-test runs every suite a second
# time. `swift test` runs all of them in debug.
DEBUG_SUITES := ValidationTests|HostileArgumentTests|NpyTests|KVCacheTests|ConcurrencyStressTests|DeterminismTests|WorkspaceTests|LogSumExpAccuracyTests|MergeTests|HalfConversionTests|KernelTests|RingSliceTests
debug-test: deps
	$(SWIFT) build --build-tests --disable-default-traits --scratch-path .build-no-openmp
	$(SWIFT) test --skip-build --disable-default-traits --scratch-path .build-no-openmp --filter "$(DEBUG_SUITES)"
release-test: deps torch mpi-deps
	$(SWIFT) test -c release --traits OpenMP,MPI
unit-test: debug-test release-test

# Every test again under AddressSanitizer (out-of-bounds reads and writes in the C kernels and
# the Swift code's unsafe pointers) and, in the C target, UndefinedBehaviorSanitizer (signed
# overflow, shifts, misaligned or null accesses), fatal on the first report. Release build: the
# optimised C users run, and the suite in a few minutes instead of twenty. (swiftc on Linux has
# no -sanitize=undefined; Swift traps on overflow by itself.) Leak checking is off: worker
# threads keep their cached workspaces until they exit. A refused allocation returns NULL, as
# without ASan (HostileArgumentTests asks for a 32 TiB KVCache pool and expects an error).
# Built with the trait MPI, so that the same build also runs ring attention's check under
# mpirun (1 and 3 ranks: the ring's buffers, offsets and transfers, and empty slices). The
# quarantine (ASan's default size, stated) holds freed blocks resident: the concurrency stress
# test's bound on resident growth allows for it (FA_TEST_ASAN_QUARANTINE_MIB).
SANITIZE_ENV := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=256 \
  FA_TEST_ASAN_QUARANTINE_MIB=256 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize-test: deps mpi-deps
	$(SANITIZE_ENV) $(SWIFT) test -c release --traits OpenMP,MPI --sanitize=address \
	    -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined $(UNINSTRUMENTED) --scratch-path .build-asan
	for np in 1 3; do $(SANITIZE_ENV) $(MPI_ENV) $(MPIRUN) -np $$np .build-asan/release/ring-attention check || exit 1; done

# libFuzzer over the C API (Tests/Fuzz/fuzz_attention.c) under ASan + UBSan: FUZZ_RUNS
# executions from the seed corpus in FUZZ_WORKERS processes at once (one per core, sharing
# the corpus folder), time-boxed at FUZZ_SECONDS, and a failure unless at least FUZZ_MIN_RUNS
# ran in all with no finding. The descriptor logic (frame, dispatch, reference) carries
# coverage instrumentation; the SIMD kernels are sanitized only (coverage there takes minutes
# to compile and says nothing about descriptors) — and a kernel file for an ISA this CPU lacks
# (AVX-512, AVX-512 BF16 per /proc/cpuinfo) is compiled plain: it never runs here, and its
# sanitizer build took the most of the build. `make fuzz-long` is the long run (10⁷).
CLANG ?= clang
FUZZ_DIR := .build-fuzz
FUZZ_RUNS ?= 120000
FUZZ_MIN_RUNS ?= 100000
FUZZ_SECONDS ?= 240
FUZZ_WORKERS ?= 2
FUZZ_SOURCES := $(wildcard CSupport/CFlashAttention/*/*.c) Tests/Fuzz/fuzz_attention.c
FUZZ_OBJECTS := $(patsubst %.c,$(FUZZ_DIR)/%.o,$(FUZZ_SOURCES))
FUZZ_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -fopenmp=libiomp5 -ICSupport/CFlashAttention/include -I/usr/include/x86_64-linux-gnu/openblas-pthread
FUZZ_NEVER_RUN := $(if $(filter avx512f,$(CPU_FLAGS)),,avx512.c avx512_bf16.c avx512_amx.c) \
  $(if $(filter avx512_bf16,$(CPU_FLAGS)),,avx512_bf16.c avx512_amx.c) \
  $(if $(filter amx_bf16,$(CPU_FLAGS)),,avx512_amx.c)

# Coverage per file: comparison tracing (which steers the fuzzer through validation) where
# descriptors are checked; edge counters only in the loops that compute (tracing every
# comparison there would take most of each execution); none in the SIMD kernels.
FUZZ_COMPUTE := forward.c backward.c decode.c split.c merge.c naive.c
fuzz_coverage = $(if $(findstring /kernels/,$(1)),,$(if $(filter $(FUZZ_COMPUTE),$(notdir $(1))),-fsanitize-coverage=inline-8bit-counters$(,)pc-table,-fsanitize=fuzzer-no-link))
fuzz_cflags = $(if $(filter $(FUZZ_NEVER_RUN),$(notdir $(1))),-O1 -fopenmp=libiomp5 -ICSupport/CFlashAttention/include,$(FUZZ_CFLAGS) $(call fuzz_coverage,$(1)))
, := ,

$(FUZZ_DIR)/%.o: %.c $(wildcard CSupport/CFlashAttention/*/*.h) CSupport/CFlashAttention/include/flash_attention.h
	@mkdir -p $(dir $@)
	$(CLANG) $(call fuzz_cflags,$<) -c $< -o $@

$(FUZZ_DIR)/fuzz_attention: $(FUZZ_OBJECTS)
	$(CLANG) -fuse-ld=lld -fsanitize=fuzzer,address,undefined -fopenmp=libiomp5 $^ \
	  -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas -lm -o $@

fuzz: deps
	$(MAKE) -j2 $(FUZZ_DIR)/fuzz_attention
	@mkdir -p $(FUZZ_DIR)/corpus
	@pids=""; for w in $$(seq 1 $(FUZZ_WORKERS)); do \
	  ASAN_OPTIONS=detect_leaks=0 $(FUZZ_DIR)/fuzz_attention -runs=$$(( $(FUZZ_RUNS) / $(FUZZ_WORKERS) )) \
	    -artifact_prefix=$(FUZZ_DIR)/ -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
	    $(FUZZ_DIR)/corpus Tests/Fuzz/corpus > $(FUZZ_DIR)/worker-$$w.log 2>&1 & pids="$$pids $$!"; \
	done; status=0; for p in $$pids; do wait $$p || status=$$?; done; \
	for w in $$(seq 1 $(FUZZ_WORKERS)); do echo "--- fuzz worker $$w"; grep -v "^#" $(FUZZ_DIR)/worker-$$w.log; done; \
	[ $$status = 0 ] || exit $$status
	@runs=$$(cat $(FUZZ_DIR)/worker-*.log | sed -n 's/^stat::number_of_executed_units: *//p' | awk '{ s += $$1 } END { print s + 0 }'); \
	  echo "fuzz: $$runs executions in $(FUZZ_WORKERS) processes, no finding"; \
	  [ "$$runs" -ge $(FUZZ_MIN_RUNS) ] || { echo "fuzz: fewer than $(FUZZ_MIN_RUNS) executions"; exit 1; }

fuzz-long: deps
	$(MAKE) fuzz FUZZ_RUNS=10000000 FUZZ_MIN_RUNS=10000000 FUZZ_SECONDS=100000

# ThreadSanitizer over the concurrent suites (many Swift tasks calling forward, decode, backward
# and the KVCache at once, each call on 1–3 OpenMP threads). LLVM's libomp is not instrumented:
# its Archer tool (libarcher.so, from Debian's libomp-dev) tells TSan about its barriers and
# tasks, and TSan ignores the runtime's own accesses. Where Archer is missing, the suites run
# in the build without the OpenMP trait (every call on its task's thread), which still checks
# what the library shares between calls: per-thread workspaces, the ISA choice, cache sizes,
# KVCache's lock. Worker threads outlive the tests: thread-leak reports are off.
TSAN_TESTS := ConcurrencyStressTests|DeterminismTests|KVCacheTests
thread-test: deps
	@archer=$$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | head -n 1); \
	opts="halt_on_error=1 report_thread_leaks=0 ignore_noninstrumented_modules=1"; \
	if [ -n "$$archer" ]; then \
	  echo "ThreadSanitizer with OpenMP, Archer: $$archer"; \
	  TSAN_OPTIONS="$$opts" OMP_TOOL_LIBRARIES="$$archer" $(SWIFT) test -c release \
	    --sanitize=thread $(UNINSTRUMENTED) --filter "$(TSAN_TESTS)" --scratch-path .build-tsan; \
	else \
	  echo "ThreadSanitizer without OpenMP (no libarcher.so found)"; \
	  TSAN_OPTIONS="$$opts" $(SWIFT) test -c release --sanitize=thread $(UNINSTRUMENTED) --disable-default-traits \
	    --filter "$(TSAN_TESTS)" --scratch-path .build-tsan-no-openmp; \
	fi

# The DocC site of the FlashAttention module (articles in Sources/FlashAttention/FlashAttention.docc),
# through the Swift-DocC plugin; any warning (an unresolved link, a malformed page) fails it.
docs: deps
	$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation \
	  --target FlashAttention --warnings-as-errors --output-path .build/docs

consumer-test: deps
	bash .ci/consumer-test

# Ring attention under mpirun on 1, 2, 3 and 4 ranks (oversubscribed on small machines), one
# OpenMP thread per rank unless a case asks for more: every rank's rows of the forward and
# backward against the float64 reference and single-process attention, bitwise determinism
# across thread counts, collective errors, a split communicator (sanitize-test runs it under
# ASan + UBSan). mpirun's --timeout turns a hang (a rank left waiting) into a failure.
mpi-test: deps mpi-deps
	$(SWIFT) build -c release --traits OpenMP,MPI --product ring-attention
	for np in 1 2 3 4; do $(MPI_ENV) $(MPIRUN) -np $$np .build/release/ring-attention check || exit 1; done

# The ring's benchmark: a 16k-token causal forward and backward on 1, 2 and 4 ranks of one
# thread each (MPI_BENCH_ARGS adds options: --length, --heads, --head-dim, --no-causal, …).
MPI_BENCH_ARGS ?=
mpi-bench: deps mpi-deps
	$(SWIFT) build -c release --traits OpenMP,MPI --product ring-attention
	$(MPI_ENV) $(MPIRUN) -np 4 .build/release/ring-attention bench --ranks 1,2,4 --backward $(MPI_BENCH_ARGS)

# ARM64, without ARM64 hardware. First the C targets compiled by clang for aarch64-linux-gnu
# with the package's flags and -Wall -Wextra -Werror: the x86 kernel files compile to nothing
# there, nothing else may need x86 — and the reverse, the NEON file compiled for x86-64 defines
# nothing (checked with nm on the objects). Then the C kernel target and two drivers built for
# aarch64 by the cross gcc (whose libgomp the OpenMP pragmas use; sgemm by the definition in
# Tests/Arm64 for the naive reference) and run under qemu-aarch64 for FA_ISA=neon, neonbf16 (qemu's
# newest CPU has FEAT_BF16; a Cortex-A57 must refuse it) and portable:
# Tests/Arm64/kernel_grid.c, every kernel path over a grid of odd shapes and head dims 1–256
# against a float64 reference, bitwise across 1, 2 and 3 threads, on qemu's newest CPU and on
# a Cortex-A57 (ARMv8.0: an instruction beyond the baseline would trap there), the two with
# the same output digest; and the fuzz harness
# (Tests/Fuzz/fuzz_attention.c) over the seed corpus and 20,000 random inputs on 1 and 3
# threads (Tests/Arm64/replay_corpus.c; the harness also forces each ISA per call).
ARM64_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
ARM64_DIR := .build-arm64
ARM64_SYSROOT := /usr/aarch64-linux-gnu
ARM64_INCLUDES := -ICSupport/CFlashAttention/include -ICSupport/CRingAttention/include \
  -I/usr/include/x86_64-linux-gnu/openblas-pthread
ARM64_CFLAGS := -O2 -fopenmp -Wall -Wextra -Werror $(ARM64_INCLUDES) -IBenchmarks/CStreamRoof/include
X86_ONLY_KERNELS := avx2 avx512 avx512_bf16 avx512_amx amx_emulated
ARM_ONLY_KERNELS := neon neon_bf16
QEMU_ARM64 := qemu-aarch64 -L $(ARM64_SYSROOT)
arm64-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(ARM64_PACKAGES)"
test-arm64: deps arm64-deps
	@mkdir -p $(ARM64_DIR)/obj
	@for f in CSupport/CFlashAttention/*/*.c CSupport/CRingAttention/*.c Benchmarks/CStreamRoof/*.c; do \
	  $(CLANG) --target=aarch64-linux-gnu --sysroot=$(ARM64_SYSROOT) $(ARM64_CFLAGS) \
	    -c $$f -o $(ARM64_DIR)/obj/$$(basename $$f .c).o || exit 1; \
	done; echo "test-arm64: the C targets compile for aarch64 with no warning"
	@for k in $(X86_ONLY_KERNELS); do \
	  [ -z "$$(nm --defined-only $(ARM64_DIR)/obj/$$k.o | grep -v ' \$$')" ] || { echo "test-arm64: kernels/$$k.c defines symbols on aarch64"; exit 1; }; \
	done
	@for k in $(ARM_ONLY_KERNELS); do \
	  nm --defined-only $(ARM64_DIR)/obj/$$k.o | grep -q "fa_kernels_$$k$$" || { echo "test-arm64: $$k.c defines no table on aarch64"; exit 1; }; \
	  $(CLANG) --target=x86_64-linux-gnu $(ARM64_CFLAGS) -c CSupport/CFlashAttention/kernels/$$k.c -o $(ARM64_DIR)/$$k-x86.o || exit 1; \
	  [ -z "$$(nm --defined-only $(ARM64_DIR)/$$k-x86.o | grep -v ' \$$')" ] || { echo "test-arm64: kernels/$$k.c defines symbols on x86-64"; exit 1; }; \
	done
	@echo "test-arm64: the x86 kernels compile to nothing on aarch64, the NEON kernels to nothing on x86-64"
	aarch64-linux-gnu-gcc -O2 -fopenmp -w $(ARM64_INCLUDES) CSupport/CFlashAttention/*/*.c \
	  Tests/Arm64/kernel_grid.c Tests/Arm64/sgemm_reference.c -lm -o $(ARM64_DIR)/kernel_grid
	@for isa in neon portable; do \
	  m=$$($(QEMU_ARM64) $(ARM64_DIR)/kernel_grid $$isa 1 2 3) || { echo "$$m"; exit 1; }; echo "$$m"; \
	  b=$$($(QEMU_ARM64) -cpu cortex-a57 $(ARM64_DIR)/kernel_grid $$isa 1 3) || { echo "$$b"; exit 1; }; echo "$$b"; \
	  [ "$${m##* }" = "$${b##* }" ] || { echo "test-arm64: $$isa differs between ARMv8.0 and the newest CPU"; exit 1; }; \
	done; echo "test-arm64: the same bits on qemu's newest CPU (bf16, i8mm, sve) and on a Cortex-A57 (ARMv8.0)"
	$(QEMU_ARM64) $(ARM64_DIR)/kernel_grid neonbf16 1 2 3
	@if $(QEMU_ARM64) -cpu cortex-a57 $(ARM64_DIR)/kernel_grid neonbf16 1 > /dev/null 2>&1; then \
	  echo "test-arm64: neonbf16 ran on a CPU without FEAT_BF16"; exit 1; fi; \
	echo "test-arm64: neonbf16 is refused on a Cortex-A57 (no FEAT_BF16)"
	aarch64-linux-gnu-gcc -O2 -fopenmp -w $(ARM64_INCLUDES) CSupport/CFlashAttention/*/*.c \
	  Tests/Fuzz/fuzz_attention.c Tests/Arm64/replay_corpus.c Tests/Arm64/sgemm_reference.c -lm \
	  -o $(ARM64_DIR)/replay_corpus
	for isa in neon neonbf16 portable; do for t in 1 3; do echo "FA_ISA=$$isa, $$t thread(s):"; \
	  FA_ISA=$$isa OMP_NUM_THREADS=$$t $(QEMU_ARM64) $(ARM64_DIR)/replay_corpus \
	  Tests/Fuzz/corpus random:20000:$$t || exit 1; done; done

# AMX tiles without an AMX CPU: the C kernel target built with FA_AMX_EMULATE, where
# kernels/amx_tiles.h runs the tile instructions on thread-local arrays as the instruction set
# reference defines them and FA_ISA_AVX512_AMX names amx_emulated.c's table (amx_tile_kernels.h
# around the portable kernels), so the AMX kernels' own code — tiling, tails, P's transposed
# tiles, the band's skipped tiles — runs here: the kernel grid (float64 reference, the same
# bits on 1, 2 and 3 threads; again with AddressSanitizer over the AMX kernels' file — every
# other file instrumented too cost minutes of compile time — where an emulated tile load or
# store is a memcpy of each row, so a tile reaching past its buffer is an error here before
# it is a fault on a Xeon) and the fuzz inputs replayed with FA_ISA=avx512amx (the harness's
# float64 oracle over fuzzed descriptors). The C files are compiled once into objects that
# the three share. Where the CPU has AMX, the Swift suites run the real tiles.
AMX_EMU_DIR := .build-amx-emulated
AMX_EMU_SOURCES := $(wildcard CSupport/CFlashAttention/*/*.c) Tests/Arm64/kernel_grid.c Tests/Arm64/sgemm_reference.c
test-amx-emulated: deps
	@rm -rf $(AMX_EMU_DIR)/objects && mkdir -p $(AMX_EMU_DIR)/objects
	cd $(AMX_EMU_DIR)/objects && gcc -O2 -fopenmp -Wall -Wextra -Werror -DFA_AMX_EMULATE \
	  -I$(CURDIR)/CSupport/CFlashAttention/include -c $(addprefix $(CURDIR)/,$(AMX_EMU_SOURCES))
	gcc -fopenmp $(AMX_EMU_DIR)/objects/*.o -lm -o $(AMX_EMU_DIR)/kernel_grid
	$(AMX_EMU_DIR)/kernel_grid avx512amx 1 2 3
	gcc -O1 -fsanitize=address -fno-omit-frame-pointer -fopenmp -w -DFA_AMX_EMULATE \
	  -ICSupport/CFlashAttention/include -c CSupport/CFlashAttention/kernels/amx_emulated.c \
	  -o $(AMX_EMU_DIR)/amx_emulated_asan.o
	gcc -fopenmp -fsanitize=address $$(ls $(AMX_EMU_DIR)/objects/*.o | grep -v '/amx_emulated\.o$$') \
	  $(AMX_EMU_DIR)/amx_emulated_asan.o -lm -o $(AMX_EMU_DIR)/kernel_grid_asan
	ASAN_OPTIONS=detect_leaks=0 $(AMX_EMU_DIR)/kernel_grid_asan avx512amx 1 3
	gcc -O2 -fopenmp -w -DFA_AMX_EMULATE -ICSupport/CFlashAttention/include \
	  $$(ls $(AMX_EMU_DIR)/objects/*.o | grep -v '/kernel_grid\.o$$') \
	  Tests/Fuzz/fuzz_attention.c Tests/Arm64/replay_corpus.c -lm -o $(AMX_EMU_DIR)/replay_corpus
	for t in 1 3; do echo "FA_ISA=avx512amx (emulated), $$t thread(s):"; \
	  FA_ISA=avx512amx OMP_NUM_THREADS=$$t $(AMX_EMU_DIR)/replay_corpus Tests/Fuzz/corpus random:20000:$$t \
	  || exit 1; done

# Grand Central Dispatch, the thread runtime of Apple platforms (frame/threads.c), proved on
# Linux with the libdispatch that ships with the Swift toolchain: the C kernel target built
# with FA_THREADS_DISPATCH (no OpenMP) and Tests/Arm64/kernel_grid.c run natively for the
# CPU's best ISA and the portable one — the float64 reference, the same bits on 1, 2 and 3
# dispatch_apply threads — and the same grid built with OpenMP (same flags otherwise): the
# digests of every output must be equal, the same bits whichever runtime runs the threads.
SWIFT_LIB := $(shell dirname $$(dirname $$(readlink -f $$(command -v $(SWIFT)) 2>/dev/null) 2>/dev/null) 2>/dev/null)/lib/swift
DISPATCH_DIR := .build-dispatch
GRID_SOURCES := CSupport/CFlashAttention/*/*.c Tests/Arm64/kernel_grid.c Tests/Arm64/sgemm_reference.c
test-dispatch: deps
	@mkdir -p $(DISPATCH_DIR)/dispatch $(DISPATCH_DIR)/openmp
	ls $(GRID_SOURCES) | xargs -P 2 -I {} sh -c '$(CLANG) -O1 -w -DFA_THREADS_DISPATCH -I$(SWIFT_LIB) \
	  $(ARM64_INCLUDES) -c {} -o $(DISPATCH_DIR)/dispatch/$$(basename {} .c).o' || exit 1
	$(CLANG) $(DISPATCH_DIR)/dispatch/*.o -L$(SWIFT_LIB)/linux -Wl,-rpath,$(SWIFT_LIB)/linux -ldispatch \
	  -lBlocksRuntime -lm -o $(DISPATCH_DIR)/kernel_grid
	ls $(GRID_SOURCES) | xargs -P 2 -I {} sh -c '$(CLANG) -O1 -w -fopenmp=libiomp5 $(ARM64_INCLUDES) \
	  -c {} -o $(DISPATCH_DIR)/openmp/$$(basename {} .c).o' || exit 1
	$(CLANG) -fopenmp=libiomp5 $(DISPATCH_DIR)/openmp/*.o -lm -o $(DISPATCH_DIR)/kernel_grid_openmp
	@for isa in best portable; do \
	  d=$$($(DISPATCH_DIR)/kernel_grid $$isa 1 2 3) || { echo "$$d"; exit 1; }; echo "$$d"; \
	  o=$$($(DISPATCH_DIR)/kernel_grid_openmp $$isa 1 2 3) || { echo "$$o"; exit 1; }; echo "$$o"; \
	  [ "$${d##* }" = "$${o##* }" ] || { echo "test-dispatch: GCD and OpenMP give different bits"; exit 1; }; \
	done; echo "test-dispatch: GCD and OpenMP threads give the same bits"

# debug-test and consumer-test run first, before anything installs Open MPI: the core package
# builds and tests without it (and without OpenMP).
test: debug-test consumer-test release-test sanitize-test thread-test fuzz docs mpi-test test-dispatch test-arm64 test-amx-emulated

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for this command alone: some machines set
# them to pin an older OpenBLAS kernel, which would understate the sgemm roofline. The
# benchmark prints the OpenBLAS core it then runs and checks the roofline product's result.
bench: deps
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	  $(SWIFT) run -c release attention-bench --output Benchmarks/results $(BENCH_ARGS)

# The backward sweep (same grid, --pass backward) into Benchmarks/results/backward/.
bench-backward: deps
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	  $(SWIFT) run -c release attention-bench --pass backward --output Benchmarks/results/backward $(BENCH_ARGS)

clean:
	rm -rf .build .build-no-openmp .build-asan .build-tsan .build-tsan-no-openmp .build-mpi $(ARM64_DIR) $(DISPATCH_DIR) $(FUZZ_DIR) $(AMX_EMU_DIR)
