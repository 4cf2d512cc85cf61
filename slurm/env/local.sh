# Settings for the one-machine CI cluster (slurm/local/up.sh): CPU only, gloo, placeholder GPUs.
# Sourced by slurm/train.sbatch when BATCHLAW_ENV points here.
export OMP_NUM_THREADS=1
export PYTHONWARNINGS=ignore
# The emulated nodes share this machine: keep torch off the placeholder CUDA devices.
export CUDA_VISIBLE_DEVICES=""
