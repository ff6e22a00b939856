#!/usr/bin/env bash
# End-to-end test of Downpour under Docker Compose: build the image, run the default job with
# one server and three workers, `docker kill` one worker mid-training, later `docker kill` the
# server and start it again (all with a fresh token; a call without it is refused), then
# check that the job finishes with the expected test accuracy, that the server resumed from its checkpoint, and that the weights it wrote to OUTPUT_DIR
# score the reported accuracy; then runs a second `compose up` on the finished job's
# checkpoint volume, which must end by itself with every container exited 0. Then a second
# project trains a CSV dataset given through JOB_FILE and checks its outputs the same way.
# Nothing of either project may be left.
#
#   tests/compose/e2e.sh
#
# Prints `SKIPPED: ...` and exits 0 when Docker is not usable here. Works with the Compose
# plugin (`docker compose`) or the standalone `docker-compose`.
#
# Environment:
#   E2E_TIMEOUT=300     seconds from `compose up` to the job's end before the test fails
#   E2E_SKIP_BUILD=1    reuse the existing image instead of running docker/build-image.sh
#   E2E_SECOND_UP_TIMEOUT=120  seconds the second `compose up` (on the finished volume) may take
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
project=downpour-e2e-$$
main_project=$project
csv_project=downpour-e2e-csv-$$
workers=3
scratch=$(mktemp -d)
# Bind mounts the server writes its outputs into (it runs as uid 65534).
output_dir=$scratch/output
install -d -m 0777 "$output_dir" "$scratch/csv-output"
min_accuracy=0.96
timeout_s=${E2E_TIMEOUT:-300}
image=${DOWNPOUR_IMAGE:-downpour:latest}
compose_command=()
# The job's token: the server requires it on every call, the workers and the health check send it.
token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

log() { echo "compose e2e: $*" >&2; }

fail() {
    log "FAILED: $*"
    exit 1
}

# --- Docker and Compose -------------------------------------------------------------------

skip_unless_docker_is_usable() {
    if ! command -v docker >/dev/null; then
        echo "SKIPPED: docker is not available (no docker binary on PATH)"
        exit 0
    fi
    local info
    if ! info=$(docker info 2>&1); then
        echo "SKIPPED: docker is not available (docker info failed: $(tail -n 1 <<<"$info"))"
        exit 0
    fi
    if docker compose version >/dev/null 2>&1; then
        compose_command=(docker compose)
    elif command -v docker-compose >/dev/null; then
        compose_command=(docker-compose)
    else
        echo "SKIPPED: docker is not available (neither \`docker compose\` nor \`docker-compose\` is installed)"
        exit 0
    fi
}

# The first run's job: the default one, longer, with quick failure detection.
job_env=(WORKERS=$workers EPOCHS=${E2E_EPOCHS:-400} HEARTBEAT_TIMEOUT=3 CHECKPOINT_EVERY=100)

compose() {
    env "${job_env[@]}" DOWNPOUR_TOKEN="$token" DOWNPOUR_IMAGE="$image" OUTPUT_DIR="$output_dir" \
        "${compose_command[@]}" --project-name "$project" --file "$repo/compose.yaml" "$@"
}

# Containers of the project, by Compose's label; `service` narrows to one service.
project_containers() {
    local service=${1:-}
    local filters=(--filter "label=com.docker.compose.project=$project")
    if [[ -n $service ]]; then
        filters+=(--filter "label=com.docker.compose.service=$service")
    fi
    docker ps --all --quiet "${filters[@]}"
}

container_state() {
    docker inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1"
}

# --- Steps ------------------------------------------------------------------------------------

host_binary=${CARGO_TARGET_DIR:-$repo/target}/release/downpour

build_image() {
    if [[ ${E2E_SKIP_BUILD:-} == 1 ]]; then
        log "reusing $image"
        docker image inspect "$image" >/dev/null || fail "no image $image to reuse"
        return
    fi
    log "building $image"
    DOWNPOUR_IMAGE=$image "$repo/docker/build-image.sh"
}

start_cluster() {
    log "starting project $project: 1 server, $workers workers (${compose_command[*]})"
    compose up --detach --scale "worker=$workers"
}

# A call without the token, from inside the project's network, must be refused as unauthenticated.
check_a_call_without_the_token_is_refused() {
    local network=${project}_default out
    if out=$(docker run --rm --network "$network" --env RUST_LOG=warn "$image" \
        health --server server:50051 --timeout 10 2>&1); then
        fail "a health check without the token was answered: $out"
    fi
    grep -qi unauthenticated <<<"$out" || fail "a call without the token failed, but not as unauthenticated: $out"
    log "a call without the token was refused: $(tail -n 1 <<<"$out")"
}

# Waits until the server container has exited (it exits once the job has finished and every
# worker has left). Fails $timeout_s seconds after the start, or as soon as a worker fails.
wait_for_job_end() {
    local server status code deadline=$((started_at + timeout_s))
    server=$(project_containers server)
    [[ -n $server ]] || fail "no server container"
    while true; do
        read -r status code < <(container_state "$server")
        if [[ $status == exited || $status == dead ]]; then
            log "server exited with status $code after $((SECONDS - started_at)) s"
            return
        fi
        fail_if_a_worker_failed
        if ((SECONDS >= deadline)); then
            show_logs
            fail "the job did not finish within $timeout_s s"
        fi
        sleep 2
    done
}

fail_if_a_worker_failed() {
    local worker status code
    for worker in $(project_containers worker); do
        [[ $worker == "$killed_worker"* ]] && continue
        read -r status code < <(container_state "$worker")
        if [[ $status == exited && $code != 0 ]]; then
            show_logs
            fail "worker $(container_name "$worker") exited with status $code"
        fi
    done
}

check_exit_statuses() {
    local container status code count=0
    for container in $(project_containers); do
        read -r status code < <(container_state "$container")
        if [[ $container == "$killed_worker"* && $status == exited ]]; then
            log "$(container_name "$container") (killed on purpose) exited with status $code"
            count=$((count + 1))
            continue
        fi
        if [[ $status != exited || $code != 0 ]]; then
            show_logs
            fail "$(container_name "$container") is $status with status $code, expected exited with 0"
        fi
        count=$((count + 1))
    done
    ((count == workers + 1)) || fail "expected $((workers + 1)) containers, found $count"
    log "all $count containers exited with status 0"
}

# The server logs every evaluation; the final one carries `is_final=true`.
check_final_accuracy() {
    local server accuracy
    server=$(project_containers server)
    accuracy=$(docker logs "$server" 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' |
        grep ' evaluation ' | grep 'is_final=true' |
        grep -o 'test_accuracy=[0-9.eE+-]*' | tail -n 1 | cut -d= -f2)
    [[ -n $accuracy ]] || {
        show_logs
        fail "no final evaluation in the server's log"
    }
    if awk -v a="$accuracy" -v m="$min_accuracy" 'BEGIN { exit !(a >= m) }'; then
        log "final test accuracy $accuracy (>= $min_accuracy)"
    else
        fail "final test accuracy $accuracy is below $min_accuracy"
    fi
}

# The server's log without colour codes.
server_log() {
    docker logs "$(project_containers server)" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
}

# Waits until the server's log has at least $1 lines matching $2.
wait_for_log() {
    local count=$1 pattern=$2 deadline=$((SECONDS + timeout_s))
    until (($(server_log | grep -c -- "$pattern" || true) >= count)); do
        ((SECONDS < deadline)) || {
            show_logs
            fail "timed out waiting for $count x '$pattern' in the server's log"
        }
        sleep 1
    done
}

killed_worker=none

# Kills one worker once training is under way; the others must finish without it.
kill_a_worker() {
    wait_for_log 1 'checkpoint written'
    killed_worker=$(project_containers worker | head -n 1)
    log "docker kill $(container_name "$killed_worker") mid-training"
    docker kill "$killed_worker" >/dev/null
    wait_for_log 1 'declared dead'
    log "the server declared it dead; training goes on"
}

# Kills the server after a few more checkpoints, starts it again, and checks that it
# resumed from the checkpoint volume.
restart_the_server() {
    local server
    server=$(project_containers server)
    wait_for_log 3 'checkpoint written'
    log "docker kill the server, then docker start it"
    docker kill "$server" >/dev/null
    docker start "$server" >/dev/null
    wait_for_log 1 'resumed from checkpoint'
    log "the server $(server_log | grep -o 'resumed from checkpoint path=[^ ]* version=[0-9]*' | tail -n 1)"
}

# The job must have finished on the restarted server: its final evaluation comes after the
# resume in the server's log. (A surviving worker that was computing while the server was
# down simply reaches the restarted server with its next call; one that was waiting in a
# call reconnects and logs "back in the job". Either way it must have exited with 0.)
check_finished_after_the_restart() {
    local resumed final back=0 worker
    resumed=$(server_log | grep -n 'resumed from checkpoint' | tail -n 1 | cut -d: -f1)
    final=$(server_log | grep -n ' evaluation ' | grep 'is_final=true' | tail -n 1 | cut -d: -f1)
    [[ -n $resumed && -n $final ]] || fail "no resume or no final evaluation in the server's log"
    ((final > resumed)) || fail "the final evaluation came before the server's restart"
    for worker in $(project_containers worker); do
        [[ $worker == "$killed_worker"* ]] && continue
        if grep -q 'back in the job' <<<"$(docker logs "$worker" 2>&1)"; then
            back=$((back + 1))
        fi
    done
    log "training finished on the restarted server ($back surviving worker(s) reconnected after a failed call)"
}

# The finished job's outputs: weights, report, metrics and job file in OUTPUT_DIR, and the
# weights score, with `downpour evaluate` on this machine, exactly what the report says.
# Extra arguments go to `downpour evaluate` (a data path as this machine sees it).
check_outputs() {
    local dir=$1 file reported evaluated
    shift
    for file in weights.safetensors report.json metrics.csv job.toml; do
        [[ -s $dir/$file ]] || fail "the server wrote no $file to OUTPUT_DIR ($dir)"
    done
    reported=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["finished"], "the report says the job did not finish"
f = r["final"]
print("test accuracy %.2f%% test loss %.6f" % (f["test_accuracy"] * 100, f["test_loss"]))
' "$dir/report.json") || fail "report.json: unreadable or unfinished"
    evaluated=$("$host_binary" evaluate --job "$dir/job.toml" --weights "$dir/weights.safetensors" "$@" 2>&1) ||
        fail "downpour evaluate failed: $evaluated"
    evaluated=$(grep -o 'test accuracy [0-9.]*% test loss [0-9.]*' <<<"$evaluated")
    [[ $evaluated == "$reported" ]] ||
        fail "the weights in OUTPUT_DIR score '$evaluated', the report says '$reported'"
    log "OUTPUT_DIR holds the weights, report, metrics.csv and job.toml; the weights score the reported $reported"
}

# A second project: a CSV dataset through JOB_FILE (examples/wine.toml, its data under
# DATA_DIR), 2 workers as the job says, no variable overriding the job; then its outputs.
run_a_csv_job_through_job_file() {
    project=$csv_project
    output_dir=$scratch/csv-output
    job_env=(JOB_FILE="$repo/examples/wine.toml" DATA_DIR="$repo/examples/data")
    killed_worker=none
    workers=2
    log "project $project: JOB_FILE=examples/wine.toml (a CSV dataset), 2 workers"
    started_at=$SECONDS
    compose up --detach --scale worker=2
    wait_for_job_end
    check_exit_statuses
    check_outputs "$output_dir" --data-path "$repo/examples/data/wine.csv"
}

# A second, attached `compose up` on the same project and its checkpoint volume, after the
# job finished: the server resumes the finished job and says so, the workers are told "job
# finished" and exit 0, the server exits (--exit-when-done) once they are gone, and `up`
# returns, all within E2E_SECOND_UP_TIMEOUT seconds (before the fix it hung for ever).
second_up_on_the_finished_volume() {
    local limit=${E2E_SECOND_UP_TIMEOUT:-120} started=$SECONDS status=0
    log "a second compose up on the finished job's volume (at most $limit s)"
    env "${job_env[@]}" DOWNPOUR_TOKEN="$token" DOWNPOUR_IMAGE="$image" OUTPUT_DIR="$output_dir" \
        timeout "$limit" "${compose_command[@]}" --project-name "$project" --file "$repo/compose.yaml" \
        up --scale "worker=$workers" >/dev/null 2>&1 || status=$?
    if ((status == 124)); then
        show_logs
        fail "the second compose up did not end within $limit s"
    fi
    ((status == 0)) || {
        show_logs
        fail "the second compose up exited with status $status"
    }
    local container code state
    for container in $(project_containers); do
        read -r state code < <(container_state "$container")
        if [[ $state != exited || $code != 0 ]]; then
            show_logs
            fail "after the second up, $(container_name "$container") is $state with status $code"
        fi
    done
    # Read the whole log first: `grep -q` stops reading at its match, and under pipefail the
    # writer's SIGPIPE would fail the check.
    local log
    log=$(server_log)
    grep -q 'the job has finished' <<<"$log" || {
        show_logs
        fail "the server did not say the job had finished"
    }
    log "the second up ended in $((SECONDS - started)) s; every container exited with status 0"
}

# --- Diagnostics and teardown -------------------------------------------------------------

container_name() {
    docker inspect --format '{{.Name}}' "$1" | sed 's|^/||'
}

show_logs() {
    local container
    for container in $(project_containers); do
        echo "----- last lines of $(container_name "$container") -----" >&2
        docker logs --tail 20 "$container" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
    done
}

# Anything of the project still present: containers, networks, volumes (by label or name).
leftovers() {
    {
        docker ps --all --format '{{.Names}}' --filter "label=com.docker.compose.project=$project"
        docker ps --all --format '{{.Names}}' | grep "^${project}[_-]" || true
        docker network ls --format '{{.Name}}' --filter "label=com.docker.compose.project=$project"
        docker network ls --format '{{.Name}}' | grep "^${project}_" || true
        docker volume ls --format '{{.Name}}' --filter "label=com.docker.compose.project=$project"
        docker volume ls --format '{{.Name}}' | grep "^${project}_" || true
    } | sort -u
}

tear_down() {
    log "tearing down $project"
    compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 ||
        log "compose down failed"
    local left
    left=$(leftovers)
    if [[ -n $left ]]; then
        log "left behind after compose down:"
        echo "$left" >&2
        return 1
    fi
    log "no container, network or volume of $project is left"
}

on_exit() {
    local status=$?
    trap - EXIT
    project=$main_project
    tear_down || status=1
    project=$csv_project
    tear_down || status=1
    rm -rf "$scratch"
    if ((status == 0)); then
        echo "compose e2e: 1 passed, 0 failed"
    else
        echo "compose e2e: 0 passed, 1 failed"
    fi
    exit "$status"
}

main() {
    skip_unless_docker_is_usable
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    build_image
    started_at=$SECONDS
    start_cluster
    check_a_call_without_the_token_is_refused
    kill_a_worker
    restart_the_server
    wait_for_job_end
    check_exit_statuses
    check_finished_after_the_restart
    check_final_accuracy
    check_outputs "$output_dir"
    second_up_on_the_finished_volume
    log "first project done in $((SECONDS - started_at)) s after the build"
    run_a_csv_job_through_job_file
    log "done"
}

main "$@"
