//! Compiles `plus/v1/jobs.proto` with protox (pure Rust, no system `protoc`),
//! generates the prost types and their proto3 JSON (serde) implementations.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "plus/v1/jobs.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("descriptor.bin");

    let descriptors = protox::compile([proto], ["."])?;
    let bytes = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(&descriptor_path, &bytes)?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&[proto], &["."])?;

    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".plus"])?;
    Ok(())
}
