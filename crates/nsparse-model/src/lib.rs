//! Sparse encoders.
