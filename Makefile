# ferkit: `make demo` runs the whole pipeline on synthetic faces; `make test` runs the checks.
# Both create .venv on first use. torch is installed first, pinned to the CPU build that this
# machine keeps on disk (an unpinned torch pulls a multi-GB CUDA build); pyproject.toml keeps a
# range that users elsewhere can meet.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DEMO := demo_output
FERKIT := $(BIN)/ferkit

.PHONY: venv demo test lint browser benchmarks train-fer2013 train-fer2013-small train-ferplus \
	train-ferplus-small clean

$(BIN)/ferkit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/ferkit

venv: $(BIN)/ferkit

demo: venv
	rm -rf $(DEMO)
	$(FERKIT) synth --out $(DEMO)/faces.csv --n 3500 --seed 0 --png-dir $(DEMO)/faces --png-count 4
	$(FERKIT) explore $(DEMO)/faces.csv --out $(DEMO)/explore
	$(FERKIT) train $(DEMO)/faces.csv --out $(DEMO)/run --split usage --epochs 8 4 --batch-size 64
	$(FERKIT) evaluate $(DEMO)/faces.csv --model $(DEMO)/run --split PrivateTest --out $(DEMO)/evaluate
	$(FERKIT) predict $(DEMO)/faces --model $(DEMO)/run --detector none
	$(FERKIT) cv $(DEMO)/faces.csv --out $(DEMO)/cv --folds 3 --epochs 3 1 --batch-size 32 --no-progress \
		--model-arg channels=[16,32,32] --model-arg block_dropouts=[0.1,0.1,0.1] --model-arg dense_dropouts=[0.2,0.1]
	@echo
	@echo "Demo outputs in $(DEMO)/:"
	@echo "  faces.csv (synthetic FER2013-format data), faces/*.png (face crops for predict)"
	@echo "  explore/label_distribution.png, explore/samples.png"
	@echo "  run/ (config.json, best/last .safetensors + .json, history.{json,csv,png}, metrics.json, confusion_matrix.png,"
	@echo "        calibration.json, reliability_diagram.png)"
	@echo "  evaluate/metrics.json, evaluate/confusion_matrix.png, reliability_diagram.png, risk_coverage.png"
	@echo "  cv/cv_summary.json, cv/cv_folds.png"

lint: venv
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks

# Debian's Chromium for the browser tests of `ferkit serve` (skipped where it cannot be had).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		>/dev/null 2>&1 || echo "note: could not install chromium; browser tests will be skipped"; }

test: lint browser
	$(BIN)/python -m pytest -q

benchmarks: venv
	$(BIN)/python benchmarks/load_csv.py
	$(BIN)/python benchmarks/train_throughput.py

# Retrain the bundled models from ../shared/data with their recipes (recipes/*.json: the config
# fields each sets, with a description), print their PublicTest accuracy and package them into
# src/ferkit/pretrained. Re-running resumes an interrupted training. Options after --config
# override the recipe, e.g. `ferkit train DATA --out RUN --config recipes/fer2013-default.json
# --epochs 40`.
FER2013 ?= ../shared/data/fer2013-train-publictest.csv.gz
FER2013_RUN ?= runs/fer2013_default
FER2013_RECIPE := --config recipes/fer2013-default.json
FER2013_SMALL_RUN ?= runs/fer2013_small
FER2013_SMALL_RECIPE := --config recipes/fer2013-small.json

train-fer2013: venv
	$(FERKIT) train $(FER2013) --out $(FER2013_RUN) $(FER2013_RECIPE) --no-progress \
		$$(test -f $(FER2013_RUN)/last/state.json && echo --resume)
	$(BIN)/python benchmarks/bundle_model.py $(FER2013_RUN) --name fer2013 \
		--command "ferkit train FER2013 --out $(FER2013_RUN) $(FER2013_RECIPE)"

train-fer2013-small: venv
	$(FERKIT) train $(FER2013) --out $(FER2013_SMALL_RUN) $(FER2013_SMALL_RECIPE) --no-progress \
		$$(test -f $(FER2013_SMALL_RUN)/last/state.json && echo --resume)
	$(BIN)/python benchmarks/bundle_model.py $(FER2013_SMALL_RUN) --name fer2013-small \
		--command "ferkit train FER2013 --out $(FER2013_SMALL_RUN) $(FER2013_SMALL_RECIPE)"

# FER+ (the default models): fine-tuned from the FER2013 models above on FER+'s vote
# distributions; FERPLUS is the folder holding FER2013Train/ and FER2013Valid/. Calibrate after
# bundling: ferkit calibrate ferplus $(FERPLUS) --split PublicTest.
FERPLUS ?= ../shared/data/ferplus
FERPLUS_RUN ?= runs/ferplus
FERPLUS_SMALL_RUN ?= runs/ferplus_small

train-ferplus: venv
	$(FERKIT) train $(FERPLUS) --out $(FERPLUS_RUN) --config recipes/ferplus.json --no-progress \
		$$(test -f $(FERPLUS_RUN)/last/state.json && echo --resume)
	$(BIN)/python benchmarks/bundle_model.py $(FERPLUS_RUN) --name ferplus \
		--command "ferkit train FERPLUS --out $(FERPLUS_RUN) --config recipes/ferplus.json"
	$(FERKIT) calibrate ferplus $(FERPLUS) --split PublicTest

train-ferplus-small: venv
	$(FERKIT) train $(FERPLUS) --out $(FERPLUS_SMALL_RUN) --config recipes/ferplus-small.json \
		--no-progress $$(test -f $(FERPLUS_SMALL_RUN)/last/state.json && echo --resume)
	$(BIN)/python benchmarks/bundle_model.py $(FERPLUS_SMALL_RUN) --name ferplus-small \
		--command "ferkit train FERPLUS --out $(FERPLUS_SMALL_RUN) --config recipes/ferplus-small.json"
	$(FERKIT) calibrate ferplus-small $(FERPLUS) --split PublicTest

clean:
	rm -rf $(DEMO) build dist src/*.egg-info .pytest_cache .ruff_cache
