"""batchlaw.tools: command line and log analysis (numpy, scipy, h5py, matplotlib; never torch)."""
