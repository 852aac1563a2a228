#!/usr/bin/env bash
# `make demo`: run the ab_experiment Airflow DAG end to end in ONE process (`airflow dags test`)
# on embedded defaults: SQLite Airflow metadata under .abx/airflow, MLflow + prediction log under
# .abx, the endpoint as a local process. Prints progress ([abx] lines) and a final summary.
#
# First demo ever: there is no champion yet, so a quick, deliberately naive baseline (logistic
# regression with heavy regularisation and balanced class weights) is bootstrapped as champion
# first; then the real experiment trains the candidate families, canaries the winner against that
# champion and promotes or rolls it back. Every later `make demo` is one new experiment (fresh id,
# fresh seed = new data, like a nightly run) against whatever champion the previous one left.
#
# Knobs (environment): DEMO_TRIALS (default 5 trials per family), DEMO_FAMILIES (JSON list).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$ROOT/.venv/bin:$PATH"
export AIRFLOW_HOME="$ROOT/.abx/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
export ABX_CANARY_POKE_S="${ABX_CANARY_POKE_S:-2}"  # the canary sensor looks every 2 s (default 30)
TRIALS="${DEMO_TRIALS:-5}"
FAMILIES="${DEMO_FAMILIES:-[\"logreg\", \"extra_trees\", \"hist_gbdt\"]}"
LOGDIR="$ROOT/.abx/demo"
mkdir -p "$AIRFLOW_HOME" "$LOGDIR"
t_start=$(date +%s.%N)

if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  echo "demo: airflow db migrate (first time only) ..."
  airflow db migrate >"$LOGDIR/migrate.log" 2>&1
fi

champion() {
  python - <<'EOF' 2>/dev/null
from pipeline_components.config import load_config
from pipeline_components.registry import get_alias_version
print(get_alias_version(load_config("params.yaml"), "champion") or "")
EOF
}

run_dag() {  # $1 = experiment id, $2 = run conf JSON
  local log="$LOGDIR/$1.log"
  echo "demo: airflow dags test ab_experiment (experiment $1; full log: $log)"
  local t0; t0=$(date +%s.%N)
  set +e
  airflow dags test ab_experiment -c "$2" >"$log" 2>&1 &
  local pid=$!
  tail -n +1 -f "$log" --pid="$pid" 2>/dev/null \
    | grep --line-buffered -oE "\[abx\] [a-z_]+ \([0-9.]+ s\): .{0,140}|DagRun Finished: .*state=[a-z_]+" \
    | sed -u -E 's/^DagRun Finished: .*(state=[a-z_]+).*/  dag run finished: \1/; s/^/  /'
  wait "$pid"; local rc=$?
  set -e
  local wall body
  wall=$(python -c "print(round($(date +%s.%N) - $t0, 1))")
  body=$(grep -oE "\[abx\] [a-z_]+ \([0-9.]+ s\)" "$log" | grep -oE "[0-9.]+ s" \
         | awk '{s += $1} END {printf "%.1f", s}')
  echo "  wall time ${wall} s; sum of task bodies ${body} s;" \
       "Airflow overhead x$(python -c "print(round($wall / max($body, 1e-9), 2))")" \
       "(whole 'airflow dags test' process / task bodies)"
  echo "$1 wall=$wall body=$body" >>"$LOGDIR/timings.txt"
  return $rc
}

# .abx survives between demos: bring its stores to this abx's schema (a no-op when they are;
# the app itself refuses an older store rather than migrating it behind the operator's back).
abx db upgrade >/dev/null && echo "demo: abx db upgrade (stores at this abx's schema revision)"

before="$(champion)"
stamp=$(date -u +%Y%m%dT%H%M%S)
n_prev=$(ls "$ROOT/.abx/experiments" 2>/dev/null | grep -c '^demo-' || true)
seed=$((42 + n_prev))
if [ -z "$before" ]; then
  echo "demo: no champion yet -> bootstrapping a naive baseline champion first"
  run_dag "demo-baseline-$stamp" "$(cat <<EOF
{"experiment_id": "demo-baseline-$stamp", "families": ["logreg"], "n_trials": 1,
 "overrides": {"experiment.seed": $seed, "training.search_spaces": {"logreg": {
   "C": {"type": "categorical", "choices": [0.0001]},
   "class_weight": {"type": "categorical", "choices": ["balanced"]}}}}}
EOF
)"
  before="$(champion)"
fi

# The long-lived endpoint serves the champion before, during and after the experiment; the DAG
# attaches to it (challenger at weight 0, then the ramp), traffic comes from `abx simulate --url`
# processes (outside clients), and the endpoint is stopped only here, at the very end.
echo "demo: abx endpoint up (serves the champion; the experiment attaches to it)"
abx endpoint up --set endpoint.port=0 >"$LOGDIR/endpoint.json"
trap 'abx endpoint down >/dev/null 2>&1 || true' EXIT
echo "  endpoint $(python -c "import json; print(json.load(open('$LOGDIR/endpoint.json'))['replicas'][0]['url'])")"

exp="demo-$stamp"
rc=0
run_dag "$exp" "{\"experiment_id\": \"$exp\", \"families\": $FAMILIES, \"n_trials\": $TRIALS,
  \"overrides\": {\"experiment.seed\": $seed, \"serving.port\": 0}}" || rc=$?

python - "$exp" "$before" "$t_start" <<'EOF'
import json, sys, time
from pathlib import Path
exp, before, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
run = Path(".abx/experiments") / exp / "run"
rep = json.loads((run / "report.json").read_text()) if (run / "report.json").is_file() else {}
print("\n==================== abx demo summary ====================")
print(f"experiment : {exp}")
print(f"champion   : v{before or '-'} (before) -> v{rep.get('champion_after', '?')} (after)")
print(f"decision   : {rep.get('action', 'unknown (see the log)')}")
for r in rep.get("reasons", []):
    flag = " [blocking]" if r.get("blocking") else ""
    print(f"  - {r.get('code')}{flag}: {r.get('message')}")
print(f"report     : {rep.get('html', '-')}")
print(f"summary    : {rep.get('markdown', '-')}")
print(f"total time : {time.time() - t0:.1f} s")
EOF
echo "endpoint   : $(abx endpoint status | python -c "import json,sys; s=json.load(sys.stdin); print({n: 'v' + v['model_version'] for n, v in s['variants'].items()}, 'experiment', s['experiment_id'])")"
abx endpoint down >/dev/null && echo "demo: endpoint stopped"
if [ "$rc" -ne 0 ]; then
  echo "demo: the DAG run failed (exit $rc); see $LOGDIR/$exp.log" >&2
  exit "$rc"
fi
