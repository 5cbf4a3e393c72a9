//! Differential privacy for Concord (being built).
