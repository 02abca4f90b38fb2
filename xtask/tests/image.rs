//! `cargo xtask image --binary`: the archive is a valid OCI image layout (and
//! a `docker save` archive) whose config runs the node from the layer.
//!
//! A tiny static ELF stands in for gadget-node so the test needs no musl
//! build; what is checked is the packaging, byte for byte.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

const TAG: &str = "registry.test:5000/gadget-node:check";

#[path = "support/tiny_elf.rs"]
mod tiny_elf;
use tiny_elf::tiny_static_elf;

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Runs `cargo xtask image` with a stand-in binary; returns the archive.
fn build_archive(dir: &Path, binary: &[u8], extra: &[&str]) -> std::process::Output {
    let binary_path = dir.join("gadget-node");
    std::fs::write(&binary_path, binary).unwrap();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("image")
        .arg("--binary")
        .arg(&binary_path)
        .arg("--output")
        .arg(dir.join("image.tar"))
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// Every regular file of a tar, by path, with its mode.
fn tar_files(bytes: &[u8]) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = entry.header().mode().unwrap();
        if entry.header().entry_type().is_dir() {
            files.insert(path, (mode, Vec::new()));
            continue;
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.insert(path, (mode, content));
    }
    files
}

/// The blob a descriptor points at, checked against its digest and size.
fn blob<'a>(files: &'a BTreeMap<String, (u32, Vec<u8>)>, descriptor: &Value) -> &'a [u8] {
    let digest = descriptor["digest"].as_str().unwrap();
    let path = format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap());
    let bytes = &files
        .get(&path)
        .unwrap_or_else(|| panic!("no blob {path}"))
        .1;
    assert_eq!(sha256(bytes), digest, "{path} does not match its digest");
    assert_eq!(
        descriptor["size"].as_u64().unwrap(),
        bytes.len() as u64,
        "{path} size"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn archive_is_an_oci_layout_whose_config_runs_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let binary = tiny_static_elf();
    let output = build_archive(dir.path(), &binary, &["--tag", TAG]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = tar_files(&std::fs::read(dir.path().join("image.tar")).unwrap());

    assert_eq!(json(&files["oci-layout"].1)["imageLayoutVersion"], "1.0.0");

    let index = json(&files["index.json"].1);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let entry = &manifests[0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "check"
    );
    assert_eq!(entry["annotations"]["io.containerd.image.name"], TAG);
    assert_eq!(entry["platform"]["os"], "linux");
    assert_eq!(entry["platform"]["architecture"], "amd64");

    let manifest = json(blob(&files, entry));
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = json(blob(&files, &manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let compressed = blob(&files, &layers[0]);
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .read_to_end(&mut layer)
        .unwrap();

    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha256(&layer),
        "diff_id is the uncompressed layer's digest"
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/gadget-node"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["serve", "--listen", "tcp://127.0.0.1:7100"])
    );

    let layer_files = tar_files(&layer);
    let (mode, content) = &layer_files["usr/bin/gadget-node"];
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(content, &binary);
    for dir in ["proc/", "sys/", "dev/", "run/", "tmp/", "usr/bin/"] {
        assert!(layer_files.contains_key(dir), "layer lacks {dir}");
    }

    // The docker-save index points at the same blobs, under the tag.
    let docker = json(&files["manifest.json"].1);
    assert_eq!(docker[0]["RepoTags"], serde_json::json!([TAG]));
    let config_path = docker[0]["Config"].as_str().unwrap();
    assert_eq!(&files[config_path].1, &serde_json::to_vec(&config).unwrap());
    let layer_path = docker[0]["Layers"][0].as_str().unwrap();
    assert_eq!(files[layer_path].1, compressed);

    // The entrypoint runs from the layer as extracted (x86-64 only: the
    // stand-in is x86-64 code).
    if cfg!(target_arch = "x86_64") {
        let root = tempfile::tempdir().unwrap();
        tar::Archive::new(&layer[..]).unpack(root.path()).unwrap();
        let status = Command::new(root.path().join("usr/bin/gadget-node"))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn same_input_gives_the_same_archive() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    assert!(build_archive(first.path(), &tiny_static_elf(), &[])
        .status
        .success());
    assert!(build_archive(second.path(), &tiny_static_elf(), &[])
        .status
        .success());
    assert_eq!(
        std::fs::read(first.path().join("image.tar")).unwrap(),
        std::fs::read(second.path().join("image.tar")).unwrap()
    );
}

#[test]
fn default_tag_is_this_version() {
    let dir = tempfile::tempdir().unwrap();
    assert!(build_archive(dir.path(), &tiny_static_elf(), &[])
        .status
        .success());
    let files = tar_files(&std::fs::read(dir.path().join("image.tar")).unwrap());
    let docker = json(&files["manifest.json"].1);
    assert_eq!(
        docker[0]["RepoTags"][0],
        concat!(
            "ghcr.io/kubectl-gadget/gadget-node:",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn dynamically_linked_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // This test binary is linked against the host's libc.
    let dynamic = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let output = build_archive(dir.path(), &dynamic, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dynamically linked"), "{stderr}");
    assert!(!dir.path().join("image.tar").exists());
}
