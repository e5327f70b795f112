#!/usr/bin/env bash
# Issue #30's short curves at 64 px on the grey pool, which chose the stage's settings (study.yml, pretraining):
#   methods: SimCLR against VICReg from random weights (the long budget goes to the better one);
#   continuing ImageNet weights (TL+SSL): the old recipe against a warmed-up head with batch-norm statistics kept.
# Each writes results/quick/ssl/trials/NAME.curve.csv (committed; the checkpoints are not). Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/venv.sh)
export HF_HUB_OFFLINE=1 MEDIMG_OFFLINE=1
export MEDIMG_DATA_DIR=${MEDIMG_DATA_DIR:-$(cd .. && pwd)/shared/data}
out=results/quick/ssl/trials
common=(--datasets pneumoniamnist iq_othnccd_lung_ct --arch mobilenetv2_100 --size 64 --batch-size 128
        --temperature 0.2 --grey-as replicate --intensity-jitter 0 --accelerator cpu --precision 32-true
        --curve-targets breastmnist pneumoniamnist:1000 busi_256 iq_othnccd_lung_ct --imagenet-reference tflite
        --reference-seeds 3 --resume)
trial() { name=$1; shift; echo "== $name"; "$venv/bin/medimg" pretrain-ssl "${common[@]}" "$@" --out "$out/$name.safetensors"; }
trial simclr-random-200 --method simclr --init random --steps 200 --curve-every 100
trial vicreg-random-200 --method vicreg --init random --steps 200 --curve-every 100
trial simclr-imagenet-plain-200 --method simclr --init imagenet --steps 200 --curve-every 100
trial simclr-imagenet-micle-200 --method simclr --init imagenet --steps 200 --curve-every 100 \
      --head-warmup-steps 100 --backbone-bn frozen --backbone-lr-scale 0.1
