//! rbuild: builds OCI images from Dockerfiles without privilege.
//!
//! The crate is a library with one binary. Data flows top to bottom through the modules
//! named in `ARCHITECTURE.md` (frontend, solver, sandbox, layers, image, registry);
//! `diagnose` and `progress` cut across them. At this stage only the command-line shell
//! and the outcome renderer exist; each later module arrives with its own issue.

pub mod cli;
pub mod cmd;
pub mod diagnose;
pub mod envvars;
pub mod image;
pub mod layer;
pub mod outcome;
pub mod progress;
pub mod registry;
pub mod store;
