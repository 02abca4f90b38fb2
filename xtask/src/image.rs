//! `cargo xtask image`: the gadget-node container image, built without
//! Docker, as one tar archive that `docker load`, `kind load image-archive`
//! and `ctr images import` all accept.
//!
//! The archive is an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), which Docker 25+ and containerd load, with the
//! `manifest.json` index of `docker save` beside it, pointing at the same
//! blobs, for older Docker. The image is the same as the `Dockerfile`'s: one
//! layer with a statically linked `/usr/bin/gadget-node` (musl) and the empty
//! directories the runtime mounts over, run as root (eBPF needs it; see
//! `manifests/daemonset.yaml`).
//!
//! Everything is deterministic (fixed timestamps, owners, order), so the same
//! binary always gives the same digests. Timestamps come from
//! `SOURCE_DATE_EPOCH` when it is set, else the Unix epoch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::setup;
use crate::util::{cargo, run_checked, target_dir, workspace_root};

const USAGE: &str = "usage: cargo xtask image [--output FILE] [--tag REF] [--binary FILE]

Builds gadget-node statically (musl) and writes its container image as an
OCI image layout archive, loadable with:
  docker load -i FILE
  kind load image-archive FILE
  ctr images import FILE

  --output FILE  where to write the archive [default: target/gadget-node-image.tar]
  --tag REF      the image reference [default: ghcr.io/kubectl-gadget/gadget-node:<version>]
  --binary FILE  package this statically linked gadget-node instead of building one";

/// Where the archive goes unless `--output` says otherwise.
const DEFAULT_OUTPUT: &str = "target/gadget-node-image.tar";

/// Where the binary is in the image; the manifests run it by this path.
const BINARY_IN_IMAGE: &str = "usr/bin/gadget-node";

/// What the container runs: the node server on the pod's loopback, reached
/// through the API server's port-forward (the DaemonSet spells out the same).
const ENTRYPOINT: &str = "/usr/bin/gadget-node";
const CMD: [&str; 3] = ["serve", "--listen", "tcp://127.0.0.1:7100"];

/// Empty directories in the layer, with their modes: mount points the
/// runtime fills (proc, sys, dev, run, etc for resolv.conf and hosts) and
/// the usual world-writable tmp. With a read-only root filesystem the
/// runtime cannot create them later.
const DIRECTORIES: [(&str, u32); 8] = [
    ("dev/", 0o755),
    ("etc/", 0o755),
    ("proc/", 0o555),
    ("run/", 0o755),
    ("sys/", 0o555),
    ("tmp/", 0o1777),
    ("usr/", 0o755),
    ("usr/bin/", 0o755),
];

/// A file of the layer.
pub struct File {
    /// Its path in the image, without the leading `/`.
    pub path: &'static str,
    /// What it holds.
    pub bytes: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// What a single-layer image holds and runs. Its executables must be
/// statically linked: the images have no libc.
pub struct Content {
    /// `org.opencontainers.image.title`.
    pub title: &'static str,
    /// `org.opencontainers.image.description`.
    pub description: &'static str,
    /// Empty directories, with their modes, created first.
    pub directories: &'static [(&'static str, u32)],
    /// The files; the first is the image's executable.
    pub files: Vec<File>,
    /// Symbolic links (path, target).
    pub symlinks: Vec<(&'static str, &'static str)>,
    /// The config's `Entrypoint` (left out when empty).
    pub entrypoint: Vec<&'static str>,
    /// The config's `Cmd` (left out when empty).
    pub cmd: Vec<&'static str>,
}

impl Content {
    /// The gadget-node image: the binary and the mount points.
    pub fn gadget_node(binary: Vec<u8>) -> Content {
        Content {
            title: "gadget-node",
            description: "kubectl-gadget node agent: eBPF gadgets for Kubernetes",
            directories: &DIRECTORIES,
            files: vec![File {
                path: BINARY_IN_IMAGE,
                bytes: binary,
                mode: 0o755,
            }],
            symlinks: Vec::new(),
            entrypoint: vec![ENTRYPOINT],
            cmd: CMD.to_vec(),
        }
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What `cargo xtask image` was asked for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    output: PathBuf,
    tag: String,
    binary: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Option<Options>> {
    let mut options = Options {
        output: workspace_root().join(DEFAULT_OUTPUT),
        tag: format!(
            "ghcr.io/kubectl-gadget/gadget-node:{}",
            env!("CARGO_PKG_VERSION")
        ),
        binary: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "--output" | "-o" => options.output = PathBuf::from(value()?),
            "--tag" | "-t" => options.tag = value()?.clone(),
            "--binary" => options.binary = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    check_reference(&options.tag)?;
    Ok(Some(options))
}

/// Builds the static gadget-node (unless `--binary` gives one) and writes the
/// image archive to `--output`, tagged `--tag`.
pub fn run(args: &[String]) -> Result<()> {
    let Some(options) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let binary_path = match &options.binary {
        Some(path) => path.clone(),
        None => build_static_node()?,
    };
    let binary = std::fs::read(&binary_path)
        .with_context(|| format!("cannot read {}", binary_path.display()))?;
    let written = write_image(Content::gadget_node(binary), &options.tag, &options.output)
        .with_context(|| format!("cannot make the image of {}", binary_path.display()))?;
    let output = options.output.display();
    eprintln!(
        "wrote {output}: {} (linux/{}, manifest {})\n\
         load it with: docker load -i {output}\n\
         \x20          or: kind load image-archive {output}\n\
         \x20          or: ctr images import {output}",
        options.tag, written.architecture, written.digest
    );
    Ok(())
}

/// Writes the image of `content`, tagged `reference`, as an archive at
/// `output`. Refuses an executable that is not statically linked.
pub fn write_image(content: Content, reference: &str, output: &Path) -> Result<Written> {
    check_reference(reference)?;
    let executable = content.files.first().context("an image without files")?;
    let architecture = static_elf_architecture(&executable.bytes)
        .map_err(|reason| anyhow::anyhow!("/{}: {reason}", executable.path))?;
    let image = Image::build(&content, reference, architecture, source_date_epoch()?)?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    image
        .write_archive(std::io::BufWriter::new(file))
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(Written {
        digest: image.manifest.digest,
        architecture,
    })
}

/// What [`write_image`] wrote.
pub struct Written {
    /// The manifest's digest, `sha256:<hex>`.
    pub digest: String,
    /// The platform's architecture, `amd64` or `arm64`.
    pub architecture: &'static str,
}

/// The Rust target a static gadget-node is built for on this machine.
fn musl_target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

/// Builds gadget-node for the musl target, which links statically by
/// default, and returns the binary's path.
pub fn build_static_node() -> Result<PathBuf> {
    let target = musl_target();
    ensure_rust_target(&target)?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "gadget-node",
        "--target",
        &target,
    ]);
    // ring and mimalloc compile C for the target with musl-gcc, which the
    // cc crate finds by itself.
    setup::ensure_static_build_tools()?;
    run_checked(&mut build)?;
    Ok(target_dir().join(&target).join("release/gadget-node"))
}

/// Installs the Rust standard library for `target` when rustup lacks it.
fn ensure_rust_target(target: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context(
            "cannot run rustup to check for the musl target; install rustup, or build a \
             static gadget-node yourself and pass it with --binary",
        )?;
    let listed = String::from_utf8_lossy(&installed.stdout);
    if listed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    run_checked(Command::new("rustup").args(["target", "add", target]))
}

/// The image architecture (in the OCI/Go spelling) of a statically linked
/// 64-bit little-endian ELF executable, or why it is not one. A binary with
/// an ELF interpreter needs a libc and a loader the image does not have.
fn static_elf_architecture(elf: &[u8]) -> Result<&'static str, String> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err("it is not an ELF executable".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("it is not a 64-bit little-endian ELF".into());
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
    let architecture = match u16_at(18) {
        0x3e => "amd64",
        0xb7 => "arm64",
        other => return Err(format!("ELF machine {other:#x} is not amd64 or arm64")),
    };
    let header_offset = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes"));
    let header_size = usize::from(u16_at(54));
    let header_count = usize::from(u16_at(56));
    for i in 0..header_count {
        let start = usize::try_from(header_offset)
            .ok()
            .and_then(|offset| offset.checked_add(i * header_size))
            .filter(|start| header_size >= 4 && start + header_size <= elf.len())
            .ok_or("its program headers are cut off")?;
        let program_type = u32::from_le_bytes(elf[start..start + 4].try_into().expect("4 bytes"));
        if program_type == PT_INTERP {
            return Err(
                "it is dynamically linked (it names an ELF interpreter), and the image has no \
                 libc; build it for the musl target (cargo xtask image does)"
                    .into(),
            );
        }
    }
    Ok(architecture)
}

/// Seconds since the epoch for every timestamp in the image.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds")),
        Err(_) => Ok(0),
    }
}

/// `seconds` since the epoch as RFC 3339 UTC, for the config's `created`.
fn rfc3339(seconds: u64) -> Result<String> {
    let seconds = i64::try_from(seconds).context("timestamp out of range")?;
    let time = jiff::Timestamp::from_second(seconds).context("timestamp out of range")?;
    // Whole seconds print without a fraction: "2023-11-14T22:13:20Z".
    Ok(time.to_string())
}

/// Refuses references that no tool would load.
fn check_reference(reference: &str) -> Result<()> {
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        || reference.starts_with(['/', ':'])
        || reference.ends_with(['/', ':'])
        || reference.contains('@')
    {
        bail!("{reference:?} is not an image reference like registry.example.com/gadget-node:tag");
    }
    Ok(())
}

/// Splits a reference into its name and tag (`latest` when it has none); a
/// `:` before the last `/` is a registry port.
fn name_and_tag(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => (
            &reference[..last_slash + colon],
            &reference[last_slash + colon + 1..],
        ),
        None => (reference, "latest"),
    }
}

/// The fully qualified name containerd stores an image under: Docker Hub's
/// implicit `docker.io/` and `library/` made explicit, and a tag.
fn qualified_reference(reference: &str) -> String {
    let (name, tag) = name_and_tag(reference);
    let first = name.split('/').next().unwrap_or(name);
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let name = match (has_registry, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    format!("{name}:{tag}")
}

/// A content-addressed blob of the image.
struct Blob {
    /// `sha256:<hex>` of the bytes.
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    fn json(value: &Value) -> Self {
        Blob::new(serde_json::to_vec(value).expect("JSON values serialize"))
    }

    /// Where the blob is in an OCI image layout.
    fn path(&self) -> String {
        format!("blobs/sha256/{}", &self.digest["sha256:".len()..])
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({
            "mediaType": media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// `sha256:<hex>` of `bytes`.
fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut digest = String::with_capacity(7 + 64);
    digest.push_str("sha256:");
    for byte in hash.iter() {
        digest.push_str(&format!("{byte:02x}"));
    }
    digest
}

/// The image: its blobs and the names it is stored under.
struct Image {
    reference: String,
    architecture: &'static str,
    epoch: u64,
    layer: Blob,
    config: Blob,
    manifest: Blob,
}

impl Image {
    fn build(
        content: &Content,
        reference: &str,
        architecture: &'static str,
        epoch: u64,
    ) -> Result<Self> {
        let layer_tar = layer_tar(content, epoch)?;
        let diff_id = sha256_digest(&layer_tar);
        let mut gzip = GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), Compression::best());
        gzip.write_all(&layer_tar)?;
        let layer = Blob::new(finish(gzip)?);
        let created = rfc3339(epoch)?;
        let mut image_config = json!({
            "Env": ["PATH=/usr/bin:/bin"],
            // uid 0 on purpose: loading eBPF programs needs capabilities
            // that Kubernetes grants only to root processes (and the e2e
            // images run as root as their usual images do).
            "User": "0:0",
            "Labels": {
                "org.opencontainers.image.title": content.title,
                "org.opencontainers.image.description": content.description,
                "org.opencontainers.image.version": env!("CARGO_PKG_VERSION"),
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        });
        if !content.entrypoint.is_empty() {
            image_config["Entrypoint"] = json!(content.entrypoint);
        }
        if !content.cmd.is_empty() {
            image_config["Cmd"] = json!(content.cmd);
        }
        let config = Blob::json(&json!({
            "created": created,
            "architecture": architecture,
            "os": "linux",
            "config": image_config,
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": created, "created_by": "cargo xtask image" }],
        }));
        let manifest = Blob::json(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(OCI_CONFIG),
            "layers": [layer.descriptor(OCI_LAYER_GZIP)],
        }));
        Ok(Image {
            reference: reference.to_string(),
            architecture,
            epoch,
            layer,
            config,
            manifest,
        })
    }

    /// `index.json`: the manifest under its tag (`ref.name`, as the OCI
    /// layout spec has it) and its full name (`io.containerd.image.name`,
    /// which containerd and Docker 25+ name the loaded image by).
    fn index(&self) -> Value {
        let mut descriptor = self.manifest.descriptor(OCI_MANIFEST);
        descriptor["annotations"] = json!({
            "org.opencontainers.image.ref.name": name_and_tag(&self.reference).1,
            "io.containerd.image.name": qualified_reference(&self.reference),
        });
        descriptor["platform"] = json!({ "architecture": self.architecture, "os": "linux" });
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor],
        })
    }

    /// `manifest.json`, the `docker save` index, for Docker before 25: the
    /// same config and layer blobs under the image's tag. Docker decompresses
    /// gzip layers itself, so the OCI layer blob serves both.
    fn docker_manifest(&self) -> Value {
        let (name, tag) = name_and_tag(&self.reference);
        json!([{
            "Config": self.config.path(),
            "RepoTags": [format!("{name}:{tag}")],
            "Layers": [self.layer.path()],
        }])
    }

    fn write_archive<W: Write>(&self, out: W) -> Result<()> {
        let mut archive = tar::Builder::new(out);
        let layout = json!({ "imageLayoutVersion": "1.0.0" });
        append_file(
            &mut archive,
            "oci-layout",
            &serde_json::to_vec(&layout)?,
            0o644,
            self.epoch,
        )?;
        append_file(
            &mut archive,
            "index.json",
            &serde_json::to_vec(&self.index())?,
            0o644,
            self.epoch,
        )?;
        append_file(
            &mut archive,
            "manifest.json",
            &serde_json::to_vec(&self.docker_manifest())?,
            0o644,
            self.epoch,
        )?;
        append_directory(&mut archive, "blobs/", 0o755, self.epoch)?;
        append_directory(&mut archive, "blobs/sha256/", 0o755, self.epoch)?;
        for blob in [&self.layer, &self.config, &self.manifest] {
            append_file(&mut archive, &blob.path(), &blob.bytes, 0o644, self.epoch)?;
        }
        let mut out = archive.into_inner()?;
        out.flush()?;
        Ok(())
    }
}

fn finish(gzip: GzEncoder<Vec<u8>>) -> Result<Vec<u8>> {
    Ok(gzip.finish()?)
}

/// The image's only layer: the directories, the files, then the symbolic
/// links, all owned by root.
fn layer_tar(content: &Content, epoch: u64) -> Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    for (path, mode) in content.directories {
        append_directory(&mut layer, path, *mode, epoch)?;
    }
    for file in &content.files {
        append_file(&mut layer, file.path, &file.bytes, file.mode, epoch)?;
    }
    for (path, target) in &content.symlinks {
        let mut header = header(tar::EntryType::Symlink, 0o777, 0, epoch);
        layer
            .append_link(&mut header, path, target)
            .with_context(|| format!("cannot add {path}"))?;
    }
    Ok(layer.into_inner()?)
}

fn header(kind: tar::EntryType, mode: u32, size: u64, epoch: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(epoch);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_directory<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    epoch: u64,
) -> Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, 0, epoch);
    tar.append_data(&mut header, path, std::io::empty())
        .with_context(|| format!("cannot add {path}"))
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mode: u32,
    epoch: u64,
) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, bytes.len() as u64, epoch);
    tar.append_data(&mut header, path, bytes)
        .with_context(|| format!("cannot add {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/tiny_elf.rs"
    ));

    #[test]
    fn static_elf_is_accepted_with_its_architecture() {
        assert_eq!(static_elf_architecture(&tiny_static_elf()), Ok("amd64"));
    }

    #[test]
    fn dynamic_elf_is_refused() {
        let mut elf = tiny_static_elf();
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        let err = static_elf_architecture(&elf).unwrap_err();
        assert!(err.contains("dynamically linked"), "{err}");
    }

    #[test]
    fn non_elf_and_truncated_files_are_refused() {
        assert!(static_elf_architecture(b"#!/bin/sh\nexit 0\n").is_err());
        let mut cut = tiny_static_elf();
        cut.truncate(100);
        assert!(static_elf_architecture(&cut).is_err());
    }

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(
            name_and_tag("ghcr.io/k/gadget-node:0.1.0"),
            ("ghcr.io/k/gadget-node", "0.1.0")
        );
        assert_eq!(
            name_and_tag("localhost:5000/gadget-node"),
            ("localhost:5000/gadget-node", "latest")
        );
        assert_eq!(name_and_tag("gadget-node"), ("gadget-node", "latest"));
    }

    #[test]
    fn references_are_qualified_like_docker_does() {
        assert_eq!(
            qualified_reference("gadget-node:dev"),
            "docker.io/library/gadget-node:dev"
        );
        assert_eq!(
            qualified_reference("me/gadget-node"),
            "docker.io/me/gadget-node:latest"
        );
        assert_eq!(
            qualified_reference("localhost:5000/gadget-node:1"),
            "localhost:5000/gadget-node:1"
        );
        assert_eq!(qualified_reference("ghcr.io/k/g:1"), "ghcr.io/k/g:1");
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in ["", "a b", "x:", "/x", "x@sha256:00"] {
            assert!(check_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn flags_parse() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let options = parse_args(&args(&[
            "--output",
            "/tmp/x.tar",
            "--tag",
            "t:1",
            "--binary",
            "/b",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            options,
            Options {
                output: "/tmp/x.tar".into(),
                tag: "t:1".into(),
                binary: Some("/b".into()),
            }
        );
        let defaults = parse_args(&[]).unwrap().unwrap();
        assert!(defaults.output.ends_with(DEFAULT_OUTPUT));
        assert!(defaults.tag.ends_with(env!("CARGO_PKG_VERSION")));
        assert!(parse_args(&args(&["--output"])).is_err());
        assert!(parse_args(&args(&["--nope"])).is_err());
        assert!(parse_args(&args(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn same_binary_gives_the_same_digests() {
        let content = || Content::gadget_node(tiny_static_elf());
        let first = Image::build(&content(), "g:1", "amd64", 0).unwrap();
        let second = Image::build(&content(), "g:1", "amd64", 0).unwrap();
        assert_eq!(first.manifest.digest, second.manifest.digest);
        assert_eq!(first.layer.bytes, second.layer.bytes);
    }

    #[test]
    fn the_layer_holds_directories_files_and_links_in_order() {
        let content = Content {
            title: "t",
            description: "d",
            directories: &[("bin/", 0o755)],
            files: vec![File {
                path: "bin/busybox",
                bytes: tiny_static_elf(),
                mode: 0o755,
            }],
            symlinks: vec![("bin/sh", "busybox")],
            entrypoint: Vec::new(),
            cmd: vec!["sh"],
        };
        let layer = layer_tar(&content, 7).unwrap();
        let mut archive = tar::Archive::new(layer.as_slice());
        let entries: Vec<(String, tar::EntryType, Option<String>, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().display().to_string(),
                    header.entry_type(),
                    entry
                        .link_name()
                        .unwrap()
                        .map(|target| target.display().to_string()),
                    header.mode().unwrap(),
                    header.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("bin/".into(), tar::EntryType::Directory, None, 0o755, 7),
                (
                    "bin/busybox".into(),
                    tar::EntryType::Regular,
                    None,
                    0o755,
                    7
                ),
                (
                    "bin/sh".into(),
                    tar::EntryType::Symlink,
                    Some("busybox".into()),
                    0o777,
                    7
                ),
            ]
        );
        let image = Image::build(&content, "t:1", "amd64", 7).unwrap();
        let config: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["sh"]));
        assert!(config["config"].get("Entrypoint").is_none());
    }
}
