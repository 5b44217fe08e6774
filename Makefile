# Two commands: `make demo` (set up + train/test on the demo data) and
# `make test`. `make install` is idempotent: it reruns only when
# requirements.txt or setup.cfg change.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# mmcv's ops: CPU here; `make install FORCE_CUDA=1` on a GPU host (with a
# CUDA build of torch and nvcc on PATH).
FORCE_CUDA ?= 0
MAX_JOBS ?= $(shell nproc)
# A pin is written once, in requirements.txt; these pick lines out of it.
BUILD_REQS = $(shell grep -E '^(torch|setuptools|wheel|ninja)\b' requirements.txt)
MMCV_REQ = $(shell grep -E '^mmcv\b' requirements.txt)

DEMO_CONFIG := configs/demo/faster_rcnn_r2_50_fpn_demo.py
DEMO_DATA := data/demo
DEMO_WORK_DIR := work_dirs/demo
# The demo test's predictions, kept for mmdet's analysis tools
# (docs/useful_tools.md): RESULTS.pkl (--out) and RESULTS.bbox.json (COCO's).
DEMO_RESULTS := $(DEMO_WORK_DIR)/results

.PHONY: install demo test lint gpu-check clean

install: $(STAMP)

$(STAMP): requirements.txt setup.cfg
	@echo "==> [1/4] virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] build requirements: $(BUILD_REQS)"
	$(PIP) install $(foreach r,$(BUILD_REQS),'$(r)')
	@echo "==> [3/4] $(MMCV_REQ) with its compiled ops (FORCE_CUDA=$(FORCE_CUDA))."
	@echo "    The first build takes most of the install (docs/get_started.md#timings); pip caches the wheel."
	MMCV_WITH_OPS=1 FORCE_CUDA=$(FORCE_CUDA) MAX_JOBS=$(MAX_JOBS) \
		$(PIP) install --no-build-isolation \
		$(if $(filter 1,$(FORCE_CUDA)),--no-cache-dir) "$(MMCV_REQ)"
	@echo "==> [4/4] the rest of requirements.txt and this project (editable)"
	$(PIP) install -r requirements.txt
	$(PIP) install --no-build-isolation --no-deps -e .
	@touch $(STAMP)
	@echo "==> installed; activate with: . $(VENV)/bin/activate"

demo: install
	@echo "==> demo data in $(DEMO_DATA)"
	$(PY) tools/misc/generate_demo_data.py --out $(DEMO_DATA)
	@echo "==> training $(DEMO_CONFIG) on the CPU: 400 iterations (docs/get_started.md#timings)"
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	@echo "==> testing the last checkpoint"
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_WORK_DIR)/last_checkpoint)" \
		--work-dir $(DEMO_WORK_DIR) --out $(DEMO_RESULTS).pkl \
		--cfg-options test_evaluator.outfile_prefix=$(DEMO_RESULTS)

# --durations: the slowest tests, in every run's output (CI's included).
# TEST_WORKERS test processes (pytest-xdist), each with its share of the
# cores (at least one thread); --dist loadgroup keeps tests that share a
# costly fixture in one (tests/conftest.py). Three on 2 cores: while one
# waits on the processes it started (launchers, Slurm jobs), the other two
# keep both cores busy (docs/development.md). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25

# The CUDA checks (tools/gpu_check.sh), on a GPU machine with nvcc: mmcv's
# CUDA ops, the `cuda` tests, an --amp demo run, the speed benchmarks.
gpu-check:
	PYTHON=$(if $(wildcard $(PY)),$(PY),$(PYTHON)) tools/gpu_check.sh

lint: install
	$(PY) -m flake8 projects tools tests configs demo
	$(PY) -m isort --check-only --diff projects tools tests configs demo
	$(PY) -m yapf --diff --recursive projects tools tests configs demo

clean:
	rm -rf $(DEMO_WORK_DIR) $(DEMO_DATA)
