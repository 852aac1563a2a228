#!/usr/bin/env bash
# `make scale-demo`: the scale-out stack on this machine, one experiment through it, then teardown.
#
# Stack (docs/scale-out.md): PostgreSQL (Airflow metadata, MLflow runs and registry, Optuna trials,
# prediction log), Redis (Celery broker), `mlflow server` (artifacts on a shared path, proxied),
# Airflow api-server + scheduler + dag-processor + two Celery workers (CeleryExecutor), abx's private
# Docker engine running the endpoint replicas as containers. The abx side is configuration only:
# profiles/scale-out.yaml merged over params.yaml into $RUN/params.yaml (ABX_PARAMS).
# ab_experiment is triggered through the REST API as the UI does: a bootstrap run (first champion),
# then an experiment; each waited for. Everything started here is stopped at the end (by pid), and
# the run's databases are dropped (SCALE_KEEP=1 keeps them and $RUN).
#
# Knobs: SCALE_TRIALS (3), SCALE_FAMILIES (["logreg", "extra_trees"]), SCALE_TIMEOUT_S (2400),
# SCALE_WORKERS (2 Celery workers; 1 for the comparison in benchmarks/results/scale_out-*.txt),
# SCALE_CONCURRENCY (2 task slots per worker), SCALE_AS_DEMO=1 (the experiment `make demo` runs).
# Airflow pools abx_training (train tasks) and abx_canary (deploy_canary, canary) are created
# here and named to the DAG by ABX_POOL_TRAINING / ABX_POOL_CANARY.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$ROOT/.venv/bin:$PATH"
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
export ABX_CANARY_POKE_S="${ABX_CANARY_POKE_S:-2}"  # the canary sensor looks every 2 s (production: 30 s)
STAMP="$(date -u +%Y%m%dT%H%M%S)"
RUN="$ROOT/.abx/scale/$STAMP"
PG="postgresql+psycopg://postgres@127.0.0.1:5432"
DB_AF="abx_scale_af_$STAMP" DB_ML="abx_scale_ml_$STAMP" DB_ABX="abx_scale_$STAMP"
DB_AF="${DB_AF,,}" DB_ML="${DB_ML,,}" DB_ABX="${DB_ABX,,}"
TIMEOUT="${SCALE_TIMEOUT_S:-2400}"
mkdir -p "$RUN/logs"
PIDS=()
t_start=$(date +%s)

teardown() {
  set +e
  echo "scale-demo: teardown"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do  # each was started in its own session: its group is its own children
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null
  done
  python - "$RUN/state" <<'EOF'  # a crashed run's replicas: found by label, this state dir only
import sys
from pathlib import Path
from pipeline_components.deploy.docker import DockerBackend, L_STATE
from pipeline_components.deploy.engine import MANAGED, docker_client
c = docker_client()
for ct in c.containers.list(all=True, filters={"label": [f"{MANAGED}=abx",
                                                         f"{L_STATE}={Path(sys.argv[1]).resolve()}"]}):
    print(f"scale-demo: removing leftover container {ct.name}")
    ct.remove(force=True)
EOF
  if [ -z "${SCALE_KEEP:-}" ]; then
    for db in "$DB_AF" "$DB_ML" "$DB_ABX"; do
      psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    done
  fi
}
trap teardown EXIT

echo "scale-demo: services (PostgreSQL, Redis, Docker engine) and the endpoint image"
bash scripts/services.sh
eval "export $(bash scripts/dockerd.sh)"
abx image build >"$RUN/logs/image.log" 2>&1 || { cat "$RUN/logs/image.log"; exit 1; }
for db in "$DB_AF" "$DB_ML" "$DB_ABX"; do psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"; done
free_port() { python -c "from pipeline_components.deploy.local import free_port; print(free_port())"; }
APORT=$(free_port) MPORT=$(free_port) LOG1=$(free_port) LOG2=$(free_port)

start() {  # $1 = log name, rest = command; remembers the pid for teardown
  local name=$1; shift
  setsid "$@" >"$RUN/logs/$name.log" 2>&1 &
  PIDS+=("$!")
}

echo "scale-demo: mlflow server on :$MPORT (PostgreSQL $DB_ML, artifacts in $RUN/artifacts)"
start mlflow mlflow server --backend-store-uri "$PG/$DB_ML" --artifacts-destination "$RUN/artifacts" \
  --serve-artifacts --host 127.0.0.1 --port "$MPORT" --workers 1

python - "$RUN" "$MPORT" "$PG/$DB_ABX" <<'EOF'
import sys
import yaml
from pipeline_components.config import apply_overrides, config_from_mapping, read_params
run, mport, db = sys.argv[1], sys.argv[2], sys.argv[3]
profile = read_params("profiles/scale-out.yaml")
raw = apply_overrides(read_params("params.yaml"), profile, "profiles/scale-out.yaml")
raw = apply_overrides(raw, {  # this run's own folder, databases and ports
    "experiment.state_dir": f"{run}/state", "data.raw_path": f"{run}/data/raw/users.parquet",
    "validation.report_path": f"{run}/data/validation/result.json",
    "features.out_dir": f"{run}/data/features", "report.out_dir": f"{run}/reports",
    "tracking.tracking_uri": f"http://127.0.0.1:{mport}", "training.storage": db,
    "serving.store_url": db.replace("+psycopg", "")}, "scale-demo")
config_from_mapping(raw, source="scale-out params")  # validated before anything runs
open(f"{run}/params.yaml", "w").write(yaml.safe_dump(raw, sort_keys=False))
EOF
export ABX_PARAMS="$RUN/params.yaml"

export AIRFLOW_HOME="$RUN/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$PG/$DB_AF"
# Airflow's async engine would default to asyncpg; psycopg 3 does async itself
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC="postgresql+psycopg_async://postgres@127.0.0.1:5432/$DB_AF"
export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:6379/11"
export AIRFLOW__CELERY__RESULT_BACKEND="db+$PG/$DB_AF"
export AIRFLOW__CELERY__WORKER_CONCURRENCY="${SCALE_CONCURRENCY:-2}"  # task slots per worker
export AIRFLOW__API__PORT="$APORT" AIRFLOW__API__WORKERS=1
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$APORT/execution/"
export AIRFLOW__API_AUTH__JWT_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
export ABX_POOL_TRAINING=abx_training ABX_POOL_CANARY=abx_canary
# No nightly run of its own: an unpaused DAG with a cron slot passing during the demo (02:00) would
# queue the triggered experiment behind a full default run (max_active_runs=1).
export ABX_SCHEDULE=off
mkdir -p "$AIRFLOW_HOME"
echo "scale-demo: airflow db migrate (PostgreSQL $DB_AF)"
airflow db migrate >"$RUN/logs/migrate.log" 2>&1
# Pools: training and the canary never starve each other of worker slots (docs/scale-out.md)
airflow pools set abx_training 2 "abx train tasks (one per model family)" >>"$RUN/logs/migrate.log" 2>&1
airflow pools set abx_canary 2 "abx deploy_canary and the canary sensor" >>"$RUN/logs/migrate.log" 2>&1
WORKERS="${SCALE_WORKERS:-2}"
echo "scale-demo: api-server :$APORT, scheduler, dag-processor, $WORKERS Celery worker(s) (Redis db 11)"
start api airflow api-server --port "$APORT"
start scheduler airflow scheduler
start dag-processor airflow dag-processor
AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$LOG1 start worker1 airflow celery worker -H "w1@%h"
if [ "$WORKERS" -ge 2 ]; then
  AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$LOG2 start worker2 airflow celery worker -H "w2@%h"
fi

API="http://127.0.0.1:$APORT"
PW="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
FAMILIES="${SCALE_FAMILIES:-[\"logreg\", \"extra_trees\"]}"
TRIALS="${SCALE_TRIALS:-3}"
boot="scale-boot-$STAMP" exp="scale-$STAMP"
python scripts/airflow_rest.py "$API" "$PW" ab_experiment "$(cat <<EOF
{"experiment_id": "$boot", "families": ["logreg"], "n_trials": 1,
 "overrides": {"training.search_spaces": {"logreg": {
   "C": {"type": "categorical", "choices": [0.0001]},
   "class_weight": {"type": "categorical", "choices": ["balanced"]}}}}}
EOF
)" "$TIMEOUT" "$RUN/boot-timings.json"
rc=0
if [ -n "${SCALE_AS_DEMO:-}" ]; then  # the experiment `make demo` runs: 3 families x 5 trials,
  EXP_CONF="{\"experiment_id\": \"$exp\", \"families\": [\"logreg\", \"extra_trees\", \"hist_gbdt\"], \"n_trials\": 5}"
else                                  # default canary ramp; else a short one-step canary
  EXP_CONF="{\"experiment_id\": \"$exp\", \"families\": $FAMILIES, \"n_trials\": $TRIALS, \"canary_steps\": [0.5],
 \"min_samples\": 540, \"rate_per_s\": 500, \"overrides\": {\"training.cv_folds\": 2}}"
fi
python scripts/airflow_rest.py "$API" "$PW" ab_experiment "$EXP_CONF" "$TIMEOUT" "$RUN/timings.json" || rc=$?

python - "$RUN/state/experiments/$exp/run" "$t_start" <<'EOF'
import json, sys, time
from pathlib import Path
run = Path(sys.argv[1])
rep = json.loads((run / "report.json").read_text()) if (run / "report.json").is_file() else {}
dep = json.loads((run / "deployment.json").read_text()) if (run / "deployment.json").is_file() else {}
print("\n================ abx scale-out demo summary ================")
print(f"decision   : {rep.get('action', 'unknown (see the logs)')}; "
      f"champion after: v{rep.get('champion_after', '?')}")
print(f"replicas   : {len(dep.get('urls', []))} endpoint replicas {dep.get('urls', [])} "
      f"(started by this run: {dep.get('started_endpoint')})")
print(f"report     : {rep.get('html', '-')}")
print(f"total time : {time.time() - float(sys.argv[2]):.0f} s")
EOF
echo "scale-demo: logs in $RUN/logs"
exit "$rc"
