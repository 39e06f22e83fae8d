#!/usr/bin/env bash
# Starts the same training on every worker (host) of a Cloud TPU pod slice.
#
#   bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   bash launch/tpu_pod.sh my-v4-32 us-central2-b configs/thumos14.py /mnt/shared/runs/th14 \
#       --config.data.data_dir=/mnt/shared/Thumos14reduced --config.batch_size=8
#
# Every worker runs `python -m launch.train ... --config.distributed=True`: each calls
# jax.distributed.initialize() (its arguments are auto-detected on TPU VMs), pmap spans the
# devices of all hosts, each host feeds its own shard of the videos (gaufuse_jax/data/batching.py),
# pseudo labels and test detections are gathered across hosts, and only process 0 writes
# metrics.jsonl, config.json, dataset.json, results/ and the checkpoint files.
#
# Before running:
# * The repository and its virtual environment must be at REPO_DIR (default ~/gaufuse_jax, with
#   .venv inside) on every worker, e.g. through
#   `gcloud compute tpus tpu-vm ssh TPU_NAME --zone=ZONE --worker=all --command="git clone ..."`.
# * WORKDIR must be ONE directory that every worker sees at the same path: a shared POSIX file
#   system such as a Filestore (NFS) mount, or a Cloud Storage bucket mounted with gcsfuse
#   (untested here). All processes take part in every checkpoint save and all of them read the
#   checkpoints when a run resumes; with per-host local directories a resumed run would start
#   from different states. gs:// URLs are NOT supported: the code handles paths with pathlib,
#   which would turn gs://bucket/run into a local directory "gs:/bucket/run".
# * The data (config.data.data_dir) must be readable on every worker (local copy or shared).
# * config.batch_size is per host and must be divisible by the devices used per host
#   (config.num_devices, 0 = all local devices: 4 on a v4 host, 8 TensorCores on a v3 host);
#   the global batch is batch_size x number of hosts.
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
tpu_name=$1 zone=$2 config=$3 workdir=$4
shift 4
if [[ $workdir == gs://* ]]; then
  echo "WORKDIR=$workdir: gs:// paths are not supported; mount shared storage (see $0)." >&2
  exit 2
fi
repo_dir=${REPO_DIR:-'~/gaufuse_jax'}

# printf %q quotes each argument for the remote shell.
command="cd $repo_dir && .venv/bin/python -m launch.train $(printf '%q ' \
  "--config=$config" "--workdir=$workdir" --config.distributed=True "$@")"
exec gcloud compute tpus tpu-vm ssh "$tpu_name" --zone="$zone" --worker=all --command="$command"
