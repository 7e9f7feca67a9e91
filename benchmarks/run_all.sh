#!/usr/bin/env bash
# The benchmark grid in priority order; every step resumes (finished runs are skipped).
#   JOBS=2 THREADS=1 benchmarks/run_all.sh        # two recipes at a time, one thread each (a 2-core CPU)
#   JOBS=8 THREADS=1 benchmarks/run_all.sh        # a GPU: eight small recipes share it
set -euo pipefail
cd "$(dirname "$0")/.."
run() { python benchmarks/method_table.py --jobs "${JOBS:-2}" --threads "${THREADS:-1}" "$@"; }
run --setting rho100 --groups core baselines csa --seeds 0
run --setting ctx_rho100 --runs ce cb_resample gml_on_ce csa btm_on_csa --seeds 0
run --setting rho100 --groups core baselines csa fp32 --seeds 0 1 2
run --setting ctx_rho100 --runs ce cb_resample gml_on_ce csa btm_on_csa --seeds 0 1 2
run --setting rho100_hard --groups core baselines csa --seeds 0 1 2
run --setting rho100 --groups strong --seeds 0 1 2
# weight balancing: stage-1 weight decay chosen on seed 0's validation HM, then the pick on 3 seeds
run --setting rho100 --runs ce_wd2e3 ce_wd5e3 heads_on_ce heads_on_ce_wd2e3 heads_on_ce_wd5e3 --seeds 0
run --setting rho100 --runs ce_wd2e3 heads_on_ce_wd2e3 btm_on_ce_wd2e3 heads_on_ce --seeds 0 1 2
run --setting rho10 --groups core baselines --seeds 0 1 2
run --setting rho100 --groups ceiling --seeds 0 1 2
