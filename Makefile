# Two entry points for a new user (README): `make study` and `make test`.
# Each builds or reuses the shared venv (scripts/venv.sh) first, so neither needs a manual setup.
SHELL := /bin/bash
MEDIMG_DATA_DIR ?= $(abspath ../shared/data)
export MEDIMG_DATA_DIR
# The quick profile's datasets: the study prepares (decodes, caches, splits) each of them.
STUDY_DATASETS := breastmnist pneumoniamnist busi_256 iq_othnccd_lung_ct retinamnist ham10000_224 \
                  eye_diseases_fundus_400 bccd_wbc_640 ham10000_224_large

.PHONY: study test book venv bench

venv:
	@scripts/venv.sh >/dev/null

study:
	@venv=$$(scripts/venv.sh) && \
	for d in $(STUDY_DATASETS); do "$$venv/bin/medimg" describe $$d || exit 1; done && \
	$(MAKE) --no-print-directory book

book:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/jupyter-book" build --warningiserror --keep-going . 

test:
	@venv=$$(scripts/venv.sh) && HF_HUB_OFFLINE=1 MEDIMG_OFFLINE=1 "$$venv/bin/python" -m pytest

bench:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/python" benchmarks/bench_cache.py
