//! Operator tools that run instead of the server: [`check`] (is the configuration right, and
//! what would `serve` load?) and [`state`] (what is in a state directory, and an export of it
//! as a registry file).
//!
//! They read what the server reads, through the same code (configuration, registry file,
//! snapshot build, static zones, persisted state), never bind a DNS port and never write to a
//! state directory. Each prints a summary for people on stdout and returns the exit code.

pub mod check;
mod report;
pub mod state;

pub use report::{Level, Report};
