//! Generates the Rust types, client and server of the node service from
//! `proto/gadget/v1/node.proto`.
//!
//! The proto is parsed with `protox` (pure Rust) rather than `protoc`, so a
//! fresh machine builds without a system protobuf compiler.

use std::error::Error;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["proto/gadget/v1/node.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    // Cargo would otherwise rerun this script on any change in the package.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }

    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Event data (paths, args, comm) arrives as slices of one batch
        // buffer; `Bytes` shares it instead of copying each field.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
