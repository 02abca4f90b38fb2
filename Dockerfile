# syntax=docker/dockerfile:1
#
# The gadget-node image: a statically linked gadget-node in an otherwise empty
# image. `cargo xtask image` builds the same image without Docker.
#
#   docker build -t ghcr.io/kubectl-gadget/gadget-node:<version> .
#
# Build stage: Rust with clang and the libbpf headers for the kernel programs
# (gadget-ebpf compiles them with clang for the BPF target), and the musl
# target for a binary that needs no libc in the final image.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libbpf-dev linux-libc-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# ring (under kube's rustls) compiles a little C for the target; clang does it
# for musl as well, so no musl cross gcc is needed.
RUN target="$(uname -m)-unknown-linux-musl" \
    && rustup target add "$target" \
    && export "CC_$(echo "$target" | tr - _)=clang" \
    && cargo build --release --locked -p gadget-node --target "$target" \
    && mkdir -p /rootfs/usr/bin /rootfs/dev /rootfs/etc /rootfs/proc /rootfs/run /rootfs/sys /rootfs/tmp \
    && chmod 1777 /rootfs/tmp \
    && cp "target/$target/release/gadget-node" /rootfs/usr/bin/gadget-node

# Final stage: nothing but the binary and the empty directories the runtime
# mounts over (the root filesystem is read-only in the DaemonSet, so they
# cannot be created later).
FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/bin
# Root, and it cannot be otherwise: loading eBPF programs needs CAP_BPF and
# CAP_PERFMON, and Kubernetes gives added capabilities only to uid 0 (the
# kernel clears them on exec for other uids, as no ambient capabilities are
# set). The DaemonSet drops every other capability root would have.
USER 0:0
ENTRYPOINT ["/usr/bin/gadget-node"]
CMD ["serve", "--listen", "tcp://127.0.0.1:7100"]
