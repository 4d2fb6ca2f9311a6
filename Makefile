# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No hub at run time: everything comes from this repo or from PyPI packages installed by `setup`.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PYTEST := $(BIN)/python -m pytest
# pytest exits 5 when a marker selects no test; that is not a failure of the suite.
define run_pytest
	$(PYTEST) $(1) || { rc=$$?; [ $$rc -eq 5 ] && echo "no tests selected by: $(1)" || exit $$rc; }
endef

.PHONY: setup llama-cpp demo study test test-fast test-slow mutation bench clean
setup: $(STAMP)

$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: anything that asks for an unpinned torch later is then already satisfied.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-data.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	# llama.cpp's GGUF converter (inference/export_gguf.py), from the llama-cpp-python sdist into ~/.cache/langadapt.
	$(BIN)/python -c "from langadapt.gguf_export import find_converter, fetch_converter; find_converter() or fetch_converter()"
	touch $@

# llama-cpp-python, for the test that runs a GGUF export with llama.cpp. PyPI has only its sdist, so it is compiled
# once, llama.cpp's libraries alone (no tools, server, tests or examples; generic x86-64, so a shared wheelhouse
# works on every node), into $(WHEELHOUSE); later setups install that wheel. Measured: 4 min on 2 cores.
WHEELHOUSE ?= $(HOME)/.cache/langadapt/wheels
LLAMA_CPP_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF
llama-cpp: $(VENV)/.llama-cpp

$(VENV)/.llama-cpp: $(STAMP) langadapt/gguf_export.py  # the pinned LLAMA_CPP_PYTHON_VERSION
	v=$$($(BIN)/python -c "from langadapt.gguf_export import LLAMA_CPP_PYTHON_VERSION as v; print(v)") && \
	if ! ls $(WHEELHOUSE)/llama_cpp_python-$$v-*.whl >/dev/null 2>&1; then \
		echo "compiling llama-cpp-python $$v into $(WHEELHOUSE) (once; a few minutes)"; \
		CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
			$(BIN)/pip wheel --quiet --no-deps --no-binary llama-cpp-python -w $(WHEELHOUSE) llama-cpp-python==$$v; \
	fi && \
	$(BIN)/pip install --quiet --only-binary llama-cpp-python --find-links $(WHEELHOUSE) llama-cpp-python==$$v
	touch $@

demo: setup
	$(BIN)/python demo/run_demo.py $(DEMO_ARGS)

# The adaptation study (configs/studies/adaptation.yaml): its arms in turn, then outputs/study/study.md.
study: setup
	$(BIN)/python demo/run_study.py --local $(STUDY_ARGS)

# The whole suite, fast tests first; this is what .ci/run calls. The Slurm and shellcheck tests are part of it: a
# machine where they cannot be installed fails (LANGADAPT_REQUIRE_SLURM=1) instead of skipping them silently;
# `make test LANGADAPT_REQUIRE_SLURM=0` runs the rest and lists those skips (-rs).
# The same holds for llama.cpp (LANGADAPT_REQUIRE_LLAMA_CPP=1; `make llama-cpp` installs it).
LANGADAPT_REQUIRE_SLURM ?= 1
LANGADAPT_REQUIRE_LLAMA_CPP ?= 1
test: export LANGADAPT_REQUIRE_SLURM := $(LANGADAPT_REQUIRE_SLURM)
test: export LANGADAPT_REQUIRE_LLAMA_CPP := $(LANGADAPT_REQUIRE_LLAMA_CPP)
test: setup llama-cpp
	$(call run_pytest,-m "not slow" -q -rs)
	$(call run_pytest,-m "slow" -q -rs)

test-fast: setup
	$(call run_pytest,-m "not slow" -q)

test-slow: setup llama-cpp
	$(call run_pytest,-m "slow" -q)

# Breaks the scripts' wiring on purpose in a scratch copy and checks the targeted tests fail (tests/mutation_check.py).
mutation: setup
	$(BIN)/python tests/mutation_check.py

# Every benchmark prints its numbers next to a baseline measured in the same run and writes a JSON to outputs/bench.
bench: setup
	$(BIN)/python bench/tokenizer.py --output_dir outputs/bench
	$(BIN)/python bench/hf_normalizer.py --output_dir outputs/bench
	$(BIN)/python bench/pretrain.py --output_dir outputs/bench
	OMP_NUM_THREADS=1 $(BIN)/python bench/inference.py --output_dir outputs/bench
	$(BIN)/python bench/gpu_scale.py --shape tiny --output_dir outputs/bench/gpu_scale

clean:
	rm -rf $(VENV) outputs .pytest_cache
