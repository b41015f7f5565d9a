//! Work in progress (issue 4); see plugins/mod.rs.
