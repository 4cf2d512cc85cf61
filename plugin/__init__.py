"""batchlaw.plugin: megatron-core training plugin (ramps, noise scale, HDF5 logs). Needs the [train] extra."""
