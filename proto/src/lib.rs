//! # plus-proto
//!
//! The schema every part of plus-worker shares, generated at build time from
//! `proto/plus/v1/jobs.proto` by prost (types) and pbjson (the proto3 JSON
//! mapping, with snake_case field names). Storage adapters and the HTTP API
//! convert through that JSON mapping, so a field is named in one place only.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the schema.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/plus.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/plus.v1.serde.rs"));
}

pub use pbjson_types;
pub use v1::*;
