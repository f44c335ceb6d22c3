//! Hot numeric kernels of nsparse.
