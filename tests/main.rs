//! The integration test binary.
