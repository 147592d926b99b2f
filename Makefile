# The two commands of the README (`make demo`, `make test`) do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
N ?= 10000
FUZZ_CASES ?= 5000

.PHONY: install demo demo-v2 test lint typecheck unit fuzz bench bench-train clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# configilm's BENv2_utils are the reference the tests compare against; the package pins
	# numpy<2, so it comes without its declared dependencies (what that module imports is in [test])
	$(BIN)/pip install --quiet --no-deps configilm==0.7.1
	touch $(STAMP)

demo: install
	$(BIN)/python -m ingest.testing.demo demo demo.zarr

demo-v2: install
	$(BIN)/python -m ingest.testing.demo --reben-v2 demo-v2 demo-v2.zarr

lint: install
	$(BIN)/ruff check ingest tests benchmarks
	$(BIN)/ruff format --check ingest tests benchmarks
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

# The fuzz suite at full size (`make test` runs it with FUZZ_CASES' small default); FUZZ_SEED=N
# for other cases.
fuzz: install
	FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest tests/fuzz -q

bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_ingest.py --patches $(N)
	$(BIN)/python benchmarks/bench_v2.py --patches $(N)
	$(BIN)/python benchmarks/bench_partners.py --patches $(N)
	$(BIN)/python benchmarks/bench_reader.py --patches $(N)
	$(BIN)/python benchmarks/bench_shards.py
	$(BIN)/python benchmarks/bench_codecs.py
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_first_batch.py --patches $(N)
	$(BIN)/python benchmarks/bench_cluster.py

bench-train: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf demo demo-v2 bench-out .pytest_cache .mypy_cache .ruff_cache
