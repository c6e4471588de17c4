//! Container discovery.
