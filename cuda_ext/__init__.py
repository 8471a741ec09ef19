"""Our own C++/CUDA kernels: sources in `csrc/`, JIT-built on first use by `cuda_ext.build`."""
