//! Generates the Rust types, client and server of the node service from
//! `proto/gadget/v1/node.proto`.
//!
//! The proto is parsed with `protox` (pure Rust) rather than `protoc`, so a
//! fresh machine builds without a system protobuf compiler.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;

use protox::prost_reflect::prost_types::FileDescriptorSet;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["proto/gadget/v1/node.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    // Cargo would otherwise rerun this script on any change in the package.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }

    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    write_oneof_fields(&descriptors)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Event data (paths, args, comm) arrives as slices of one batch
        // buffer; `Bytes` shares it instead of copying each field.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}

/// The oneofs that list one entry per gadget, as (message, oneof, const).
const GADGET_ONEOFS: &[(&str, &str, &str)] = &[
    ("RunGadgetRequest", "params", "RUN_GADGET_PARAMS"),
    ("Event", "kind", "EVENT_KIND"),
];

/// Writes `oneof_fields.rs`: the field numbers of each oneof that lists the
/// gadgets, read from the proto, so that a test can check the gadget
/// registries against the protocol instead of against a third list.
fn write_oneof_fields(descriptors: &FileDescriptorSet) -> Result<(), Box<dyn Error>> {
    let mut out = String::new();
    for &(message_name, oneof_name, const_name) in GADGET_ONEOFS {
        let message = descriptors
            .file
            .iter()
            .flat_map(|file| &file.message_type)
            .find(|message| message.name() == message_name)
            .ok_or_else(|| format!("message {message_name} is not in the proto"))?;
        let index = message
            .oneof_decl
            .iter()
            .position(|oneof| oneof.name() == oneof_name)
            .ok_or_else(|| format!("{message_name} has no oneof {oneof_name}"))?;
        let numbers: Vec<String> = message
            .field
            .iter()
            .filter(|field| field.oneof_index == Some(index as i32) && !field.proto3_optional())
            .map(|field| field.number().to_string())
            .collect();
        writeln!(
            out,
            "/// Field numbers of `{message_name}.{oneof_name}`: each belongs to one gadget.\n\
             pub const {const_name}: &[i32] = &[{}];",
            numbers.join(", ")
        )?;
    }
    let path = PathBuf::from(std::env::var("OUT_DIR")?).join("oneof_fields.rs");
    std::fs::write(path, out)?;
    Ok(())
}
