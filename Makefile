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

.PHONY: deps mpi-deps mpi-test mpi-bench arm64-deps test-arm64 torch build test unit-test sanitize-test thread-test docs fuzz fuzz-long consumer-test bench bench-backward clean

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

# Every suite in release (the -O2, vectorised C that users get) and in release without the
# OpenMP trait (the single-threaded build a dependent gets with `traits: []`); sanitize-test runs
# them a third time. The debug build (assertions, C at -O0) compiles everything and runs the
# suites about arguments, files, caches and concurrency (DEBUG_SUITES): the numerical grids
# there take twelve minutes of CI's forty-five and check nothing the release runs do not.
# `swift test` runs all of them in debug.
DEBUG_SUITES := ValidationTests|HostileArgumentTests|NpyTests|KVCacheTests|ConcurrencyStressTests|DeterminismTests|WorkspaceTests|LogSumExpAccuracyTests|MergeTests|HalfConversionTests|KernelTests
unit-test: deps torch
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --filter "$(DEBUG_SUITES)"
	$(SWIFT) test -c release
	$(SWIFT) test -c release --disable-default-traits --scratch-path .build-no-openmp

# Every test again under AddressSanitizer (out-of-bounds reads and writes in the C kernels and
# the Swift code's unsafe pointers) and, in the C target, UndefinedBehaviorSanitizer (signed
# overflow, shifts, misaligned or null accesses), fatal on the first report. Release build: the
# optimised C users run, and the suite in a few minutes instead of twenty. (swiftc on Linux has
# no -sanitize=undefined; Swift traps on overflow by itself.) Leak checking is off: worker
# threads keep their cached workspaces until they exit. A refused allocation returns NULL, as
# without ASan (HostileArgumentTests asks for a 32 TiB KVCache pool and expects an error).
# Built with the trait MPI, so that the same build also runs ring attention's check under
# mpirun (1 and 3 ranks: the ring's buffers, offsets and transfers, and empty slices).
SANITIZE_ENV := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize-test: deps mpi-deps
	$(SANITIZE_ENV) $(SWIFT) test -c release --traits OpenMP,MPI --sanitize=address \
	    -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined --scratch-path .build-asan
	for np in 1 3; do $(SANITIZE_ENV) $(MPI_ENV) $(MPIRUN) -np $$np .build-asan/release/ring-attention check || exit 1; done

# libFuzzer over the C API (Tests/Fuzz/fuzz_attention.c) under ASan + UBSan: FUZZ_RUNS
# executions from the seed corpus, time-boxed at FUZZ_SECONDS, and a failure unless at least
# FUZZ_MIN_RUNS ran with no finding. The descriptor logic (frame, dispatch, reference) carries
# coverage instrumentation; the SIMD kernels are sanitized only (coverage there takes minutes
# to compile and says nothing about descriptors). `make fuzz-long` is the long run (10⁷).
CLANG ?= clang
FUZZ_DIR := .build-fuzz
FUZZ_RUNS ?= 120000
FUZZ_MIN_RUNS ?= 100000
FUZZ_SECONDS ?= 240
FUZZ_SOURCES := $(wildcard CSupport/CFlashAttention/*/*.c) Tests/Fuzz/fuzz_attention.c
FUZZ_OBJECTS := $(patsubst %.c,$(FUZZ_DIR)/%.o,$(FUZZ_SOURCES))
FUZZ_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -fopenmp=libiomp5 -ICSupport/CFlashAttention/include -I/usr/include/x86_64-linux-gnu/openblas-pthread

# Coverage per file: comparison tracing (which steers the fuzzer through validation) where
# descriptors are checked; edge counters only in the loops that compute (tracing every
# comparison there would take most of each execution); none in the SIMD kernels.
FUZZ_COMPUTE := forward.c backward.c decode.c split.c merge.c naive.c
fuzz_coverage = $(if $(findstring /kernels/,$(1)),,$(if $(filter $(FUZZ_COMPUTE),$(notdir $(1))),-fsanitize-coverage=inline-8bit-counters$(,)pc-table,-fsanitize=fuzzer-no-link))
, := ,

$(FUZZ_DIR)/%.o: %.c $(wildcard CSupport/CFlashAttention/*/*.h) CSupport/CFlashAttention/include/flash_attention.h
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) $(call fuzz_coverage,$<) -c $< -o $@

$(FUZZ_DIR)/fuzz_attention: $(FUZZ_OBJECTS)
	$(CLANG) -fuse-ld=lld -fsanitize=fuzzer,address,undefined -fopenmp=libiomp5 $^ \
	  -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas -lm -o $@

fuzz: deps
	$(MAKE) -j2 $(FUZZ_DIR)/fuzz_attention
	@mkdir -p $(FUZZ_DIR)/corpus
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_DIR)/fuzz_attention -runs=$(FUZZ_RUNS) -artifact_prefix=$(FUZZ_DIR)/ \
	  -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
	  $(FUZZ_DIR)/corpus Tests/Fuzz/corpus 2>&1 | tee $(FUZZ_DIR)/last-run.log | grep -v "^#" ; \
	  status=$${PIPESTATUS[0]}; [ $$status = 0 ] || exit $$status
	@runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/last-run.log); \
	  echo "fuzz: $$runs executions, no finding"; \
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
	    --sanitize=thread --filter "$(TSAN_TESTS)" --scratch-path .build-tsan; \
	else \
	  echo "ThreadSanitizer without OpenMP (no libarcher.so found)"; \
	  TSAN_OPTIONS="$$opts" $(SWIFT) test -c release --sanitize=thread --disable-default-traits \
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
	$(SWIFT) build -c release --traits OpenMP,MPI --scratch-path .build-mpi --product ring-attention
	for np in 1 2 3 4; do $(MPI_ENV) $(MPIRUN) -np $$np .build-mpi/release/ring-attention check || exit 1; done

# The ring's benchmark: a 16k-token causal forward and backward on 1, 2 and 4 ranks of one
# thread each (MPI_BENCH_ARGS adds options: --length, --heads, --head-dim, --no-causal, …).
MPI_BENCH_ARGS ?=
mpi-bench: deps mpi-deps
	$(SWIFT) build -c release --traits OpenMP,MPI --scratch-path .build-mpi --product ring-attention
	$(MPI_ENV) $(MPIRUN) -np 4 .build-mpi/release/ring-attention bench --ranks 1,2,4 --backward $(MPI_BENCH_ARGS)

# ARM64, without ARM64 hardware. First the C targets compiled by clang for aarch64-linux-gnu
# with the package's flags and -Wall -Wextra -Werror: the x86 kernel files compile to nothing
# there, nothing else may need x86. Then the C kernel target and the fuzz harness
# (Tests/Fuzz/fuzz_attention.c: every entry point against its float64 reference) built for
# aarch64 — by the cross gcc, whose libgomp the OpenMP pragmas use; sgemm by the definition in
# Tests/Arm64 for the naive reference — and run under qemu-aarch64 with FA_ISA=neon and
# FA_ISA=portable, on 1 and 3 threads, over the seed corpus and 20,000 random inputs
# (Tests/Arm64/replay_corpus.c; the harness also forces each ISA per call).
ARM64_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
ARM64_DIR := .build-arm64
ARM64_SYSROOT := /usr/aarch64-linux-gnu
ARM64_INCLUDES := -ICSupport/CFlashAttention/include -ICSupport/CRingAttention/include \
  -I/usr/include/x86_64-linux-gnu/openblas-pthread
arm64-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(ARM64_PACKAGES)"
test-arm64: deps arm64-deps
	@mkdir -p $(ARM64_DIR)
	@for f in CSupport/CFlashAttention/*/*.c CSupport/CRingAttention/*.c Benchmarks/CStreamRoof/*.c; do \
	  $(CLANG) --target=aarch64-linux-gnu --sysroot=$(ARM64_SYSROOT) -O2 -fopenmp -Wall -Wextra -Werror \
	    $(ARM64_INCLUDES) -IBenchmarks/CStreamRoof/include -c $$f -o $(ARM64_DIR)/check.o || exit 1; \
	done; echo "test-arm64: the C targets compile for aarch64 with no warning"
	aarch64-linux-gnu-gcc -O2 -fopenmp -w $(ARM64_INCLUDES) CSupport/CFlashAttention/*/*.c \
	  Tests/Fuzz/fuzz_attention.c Tests/Arm64/replay_corpus.c Tests/Arm64/sgemm_reference.c -lm \
	  -o $(ARM64_DIR)/replay_corpus
	for isa in neon portable; do for t in 1 3; do echo "FA_ISA=$$isa, $$t thread(s):"; \
	  FA_ISA=$$isa OMP_NUM_THREADS=$$t qemu-aarch64 -L $(ARM64_SYSROOT) $(ARM64_DIR)/replay_corpus \
	  Tests/Fuzz/corpus random:20000:$$t || exit 1; done; done

# unit-test and consumer-test run first, before anything installs Open MPI: the core package
# builds and tests without it.
test: unit-test consumer-test sanitize-test thread-test fuzz docs mpi-test test-arm64

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
	rm -rf .build .build-no-openmp .build-asan .build-tsan .build-tsan-no-openmp .build-mpi $(ARM64_DIR) $(FUZZ_DIR)
