//! Layers: a step's filesystem change as a tar, and the tar as a compressed, digested blob.
//!
//! - `diff`: overlay upper directory -> OCI layer tar (whiteouts, opaque markers,
//!   hardlinks, xattrs, deterministic order and times).
//! - `compress`: one streaming pass that hashes the tar (diff id), compresses it (parallel
//!   gzip or zstd) and hashes the result (blob digest), with bounded memory.
//!
//! Nothing here creates namespaces or mounts: the sandbox runs `diff` inside the step's
//! user namespace, where every file is readable and owned by container ids.

pub mod compress;
pub mod diff;
