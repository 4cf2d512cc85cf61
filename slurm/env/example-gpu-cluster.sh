# Example settings for an H100 cluster (adapt module names, partition and network to yours).
# Sourced by slurm/train.sbatch when `batchlaw submit --env slurm/env/example-gpu-cluster.sh`.
module purge 2>/dev/null || true
module load cuda/12.4 nccl 2>/dev/null || true
source "$HOME/venvs/batchlaw/bin/activate"        # batchlaw[train] (+ transformer-engine) installed
export OMP_NUM_THREADS=8
export CUDA_DEVICE_MAX_CONNECTIONS=1              # Megatron: needed for TP/SP comm overlap
export NCCL_IB_TIMEOUT=22
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-ib0}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
