//! trace_file on the real kernel.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{cstr, fork_paused, host_request, wait_started};
use gadget_node::trace::{self, TracePlan};
use gadget_proto::v1;

fn file_params(prefixes: &[&str], paths: &[&str]) -> v1::FileParams {
    let bytes = |list: &[&str]| {
        list.iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    };
    v1::FileParams {
        path_prefixes: bytes(prefixes),
        paths: bytes(paths),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, "hello").unwrap();
    let p = cstr(&path.to_string_lossy());
    let mut child = fork_paused(|| unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDWR);
        let mut buf = [0u8; 16];
        libc::read(fd, buf.as_mut_ptr().cast(), 16);
        libc::write(fd, b"xy".as_ptr().cast(), 2);
        libc::close(fd);
        0
    });
    let params = file_params(&[&dir.path().to_string_lossy()], &[]);
    let request = host_request(
        gadget_proto::TRACE_FILE,
        Some(v1::run_gadget_request::Params::File(params)),
        Some(child.pid),
    );
    let t0 = std::time::Instant::now();
    let mut trace = trace::start(
        TracePlan::from_proto(&request).unwrap(),
        Arc::new(common::local_identity()),
    )
    .expect("starts");
    eprintln!("load+attach {:?}", t0.elapsed());
    wait_started(&mut trace.events).await;
    child.release();
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    let got = common::collect_settled(&mut trace.events, |c| c.events.len() >= 5).await;
    for (e, _) in &got.events {
        eprintln!("{:?}", e.kind);
    }
    eprintln!("{:?}", got.status);
}
