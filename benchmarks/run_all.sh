#!/usr/bin/env bash
# The benchmark grid in priority order (each step resumes: finished runs are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/method_table.py --groups core --seeds 0
python benchmarks/method_table.py --groups ceiling --seeds 0
python benchmarks/method_table.py --groups core --seeds 1 2
python benchmarks/method_table.py --groups baselines --seeds 0
python benchmarks/method_table.py --groups ceiling --seeds 1 2
python benchmarks/method_table.py --only-table --seeds 0 1 2
