//! The benchmark suite's pieces: a verifying load generator ([`load`]), process statistics
//! ([`procstat`]), and the scenario runner that compares ipc-server with the reference servers
//! in one run ([`suite`]).
#![deny(missing_docs)]

pub mod load;
pub mod procstat;
pub mod suite;
