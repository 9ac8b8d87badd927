# Two commands do everything on a fresh clone:
#   make report   set up .venv, run the five lessons through papermill, write figures/ and build/report.md
#   make test     set up .venv, run the unit tests and every notebook (pytest --nbval-lax)
#
# TORCH_SPEC picks the PyTorch build. The default pins the CPU build that CI
# uses; on a GPU machine choose yours, e.g.
#   make report PROFILE=paper TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE    ?= lesson
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
REPORT_ARGS ?=
STUDY_ARGS ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install report study exercises test clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# The lesson profile's run also stores each executed lesson back into notebooks/ (their committed outputs).
report: install
	$(BIN)/python -m helpers report --profile $(PROFILE) $(if $(filter lesson,$(PROFILE)),--store) $(REPORT_ARGS)

# A longer study (not part of the report): can this model learn story QA (its 3500-step pretraining, then the
# echoed way of finetuning of --finetunings: 25 minutes at one thread on the 2-core Intel Xeon of 7 December 2026,
# measuring included, with other runs beside it), and which pretraining recipes make it copy from its context (the
# arms: about an hour more; the repeats alone: about 40 minutes more; a copier, then ten arms of stories and
# finetuning from it or from scratch, five pretrainings among them: about an hour more on 2 idle cores in a fast
# hour, added up from its parts, and up to three times that in a slow one), does copying survive stories run after
# run (two copiers, the first of them the one --copier made, and sixteen pretrainings: 75 minutes for the copiers
# and the first eight, 42 for the other eight, on the slower 2-core AMD EPYC of December 2026, run as two
# one-thread processes with --copier-seed 0 and --copier-seed 1, which a call without --copier-seed then
# assembles), and which of the two lengths, pretraining or finetuning, moves the answers (the table of --lengths:
# 78 minutes from nothing on that CPU as two one-thread processes split by --pretrain-steps, 31 of them for the
# two 3000-step finetunings), and which way of writing the answers, each a 3000-step finetuning of the study's
# pretrained model (--finetunings: on the Intel Xeon 10 minutes each with measuring as two one-thread processes
# sharing the 2 cores, 16 to 17 as three or four, the 6000-step one 28; --finetuning NAME splits them across
# processes, and a call with some names keeps the table's other rows of the same pretraining)?
# STUDY_ARGS (e.g. --set finetune.max_steps=2000) changes the first part and the tables built on it.
study: install
	$(BIN)/python -m helpers study $(STUDY_ARGS)
	$(BIN)/python -m helpers study --arms
	$(BIN)/python -m helpers study --repeats
	$(BIN)/python -m helpers study --copier
	$(BIN)/python -m helpers study --survival
	$(BIN)/python -m helpers study --lengths $(STUDY_ARGS)
	$(BIN)/python -m helpers study --finetunings $(STUDY_ARGS)

# Student notebooks (solutions blanked, hidden tests removed) into notebooks/student/, autograders into
# build/exercises/ (otter-grader; notebooks/EXERCISES.md says how to grade a returned notebook).
exercises: install
	$(BIN)/python -m helpers exercises

# Notebooks run in the lesson profile; their runs and figures go under build/
# so that testing never rewrites the committed figures. Two workers share the cores: one runs the lessons
# that make and read the lesson runs, in order; the other the test files, lesson 1, and last the solutions
# of lessons 2, 3 and 4, which read the runs of lessons 3 and 4 (conftest.py).
test: install
	HELPERS_RUNS=$(CURDIR)/build/test-runs HELPERS_FIGURES=$(CURDIR)/build/test-figures \
	  $(BIN)/python -m pytest --nbval-lax -n $(TEST_WORKERS) tests notebooks $(PYTEST_ARGS)

clean:
	rm -rf build runs
