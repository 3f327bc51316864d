//! rbuild: builds OCI images from Dockerfiles without privilege.
//!
//! The crate is a library with one binary. Data flows top to bottom through the modules
//! named in `ARCHITECTURE.md` (frontend, solver, sandbox, layers, image, registry);
//! `diagnose` and `progress` cut across them. `sandbox` (with `arch` and `layer`) runs
//! images in unprivileged namespaces; the other modules arrive with their own issues.

pub mod arch;
pub mod cli;
pub mod cmd;
pub mod dockerfile;
pub mod envvars;
pub mod image;
pub mod layer;
pub mod progress;
pub mod registry;
pub mod sandbox;
pub mod solve;
pub mod store;

pub use rbuild_diagnose as diagnose;
pub use rbuild_diagnose::outcome;
