# Two entry points for a new user (README): `make study` and `make test`.
# Each builds or reuses the shared venv (scripts/venv.sh) first, so neither needs a manual setup.
SHELL := /bin/bash
MEDIMG_DATA_DIR ?= $(abspath ../shared/data)
export MEDIMG_DATA_DIR
# this checkout's medimg first, for every process and kernel: the shared venv's editable install names only the
# checkout that last ran scripts/venv.sh, which is another one when two clones share the venv
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
.PHONY: study test test-long book venv bench pretrain publish

venv:
	@scripts/venv.sh >/dev/null

study:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/medimg" study --profile quick

# the quick profile's next self-supervised checkpoints (issue #30: hours on a CPU; resumable: run it again after an
# interruption, here or in another checkout, which goes on from the state carried beside each checkpoint)
STAGE ?= pretraining_next
pretrain:
	@venv=$$(scripts/venv.sh) && HF_HUB_OFFLINE=1 "$$venv/bin/medimg" pretrain-ssl --profile quick --stage $(STAGE) --resume

book:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/jupyter-book" build --warningiserror --keep-going .

# the book built from the committed chapters (nothing is trained or executed) onto the gh-pages branch of REMOTE
# (a git remote's name or URL; default origin), with ghp-import; .github/workflows/publish.yml does the same on GitHub
REMOTE ?= origin
publish:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/jupyter-book" build --warningiserror --keep-going . \
	  && "$$venv/bin/ghp-import" --no-jekyll --force --push --remote "$(REMOTE)" --branch gh-pages \
	     --message "the book from $$(git rev-parse --short HEAD)" _build/html

# actionlint on the workflows, then the tests, nbval on the notebook templates at their small defaults, the book
# build and the browser check
test:
	@scripts/system-packages.sh && scripts/actionlint.sh && venv=$$(scripts/venv.sh) && HF_HUB_OFFLINE=1 MEDIMG_OFFLINE=1 \
	  "$$venv/bin/python" -m pytest tests notebooks -m "not long" --durations=15 --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg

# the checks marked long (pyproject.toml): real BreastMNIST runs of every arm, DDP kill-and-resume, the smoke study
# through submitit-local against --jobs 1, a user's folder joining the smoke study (several minutes)
test-long:
	@venv=$$(scripts/venv.sh) && HF_HUB_OFFLINE=1 MEDIMG_OFFLINE=1 "$$venv/bin/python" -m pytest tests -m long --durations=10

bench:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/python" benchmarks/bench_cache.py
