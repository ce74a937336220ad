# make test   — install what is missing, run every test (unit tests + the by-version consumer check)
# make bench  — install what is missing, run the benchmark's default sweep in release mode,
#               writing Benchmarks/results/ (the README's table and charts)
SWIFT ?= swift
PACKAGES := libopenblas-dev libomp-dev
BENCH_ARGS ?=

.PHONY: deps build test unit-test sanitize-test consumer-test bench bench-backward clean

# System libraries: OpenBLAS (the naive reference and the roofline) and LLVM's OpenMP runtime.
deps:
	@missing=""; \
	for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
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

build: deps
	$(SWIFT) build

# Debug (assertions, C at -O0), release (the -O2, vectorised C that users get), and release
# without the OpenMP trait (the single-threaded build a dependent gets with `traits: []`).
unit-test: deps
	$(SWIFT) test
	$(SWIFT) test -c release
	$(SWIFT) test -c release --disable-default-traits --scratch-path .build-no-openmp

# Every test again under AddressSanitizer (out-of-bounds reads and writes in the C kernels).
# Leak checking is off: worker threads keep their cached workspaces until they exit.
sanitize-test: deps
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --sanitize=address --scratch-path .build-asan

consumer-test: deps
	bash .ci/consumer-test

test: unit-test sanitize-test consumer-test

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
	rm -rf .build .build-no-openmp .build-asan
