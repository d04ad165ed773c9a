# Set-up and the two entry points. `make demo` and `make test` each create the environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
STEPS ?= 20
RATIO ?= 0.5

.PHONY: demo test test-slow test-mobile lint clean

# Toolchains of the phone code (Kotlin, Android API, Swift root, cross compiler), kept between runs.
MOBILE_CACHE ?= $(HOME)/.cache/lazydit-mobile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Export the default model's LazyDiT bundle for phones (ExecuTorch, Core ML, ONNX), check its
# latency on desktop onnxruntime against the no-skip bundle, and write samples.
demo: $(STAMP)
	$(BIN)/lazydit plan --policy lazydit --steps $(STEPS) --ratio $(RATIO) --out $(OUT)/plan.json
	$(BIN)/lazydit export --plan $(OUT)/plan.json --out $(OUT)/bundle-lazy --force
	$(BIN)/lazydit export --steps $(STEPS) --formats onnx --out $(OUT)/bundle-full --force
	$(BIN)/lazydit bench --bundle $(OUT)/bundle-lazy --baseline $(OUT)/bundle-full --backend onnxruntime \
		--threads 2 --warmup 3 --runs 20 --json $(OUT)/bench.json --plot $(OUT)/bench.png
	$(BIN)/lazydit sample --bundle $(OUT)/bundle-lazy --backend onnxruntime --per-class 8 --out $(OUT)/samples
	@echo "bundle: $(OUT)/bundle-lazy  latency: $(OUT)/bench.json  samples: $(OUT)/samples/grid.png"

# The layer contracts and the formatter first: pytest's summary stays the last line printed.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff format --check --quiet lazydit export runtime device tests benchmarks
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# The phone code compiled and run here: the Android app (Kotlin, -Werror) and its JUnit tests,
# LazyDiTKit's XCTest suite on Linux, the native C++ runner on x86-64 and emulated ARM64, the
# bad-bundle corpus through every runtime. Installs its toolchains first (Debian packages, npm).
test-mobile: $(STAMP)
	LAZYDIT_MOBILE_CACHE=$(MOBILE_CACHE) mobile/toolchains.sh all
	LAZYDIT_MOBILE_CACHE=$(MOBILE_CACHE) $(BIN)/pytest -q -m mobile

lint: $(STAMP)
	$(BIN)/ruff check lazydit export runtime device tests

clean:
	rm -rf $(OUT) .pytest_cache
