//! The benchmark suite's pieces: a verifying load generator ([`load`], with a lean client in
//! `lean`, for the plain protocol and Varlink), the streamed-replies load ([`stream`]), process
//! statistics ([`procstat`]), and the scenario runner that compares ipc-server
//! with the reference servers in one run ([`suite`]).
#![deny(missing_docs)]

pub mod instructions;
mod lean;
pub mod load;
mod measure;
pub mod pki;
pub mod procstat;
pub mod stream;
pub mod suite;
