//! trace_exec on the real kernel: a forked child execs known programs with
//! known arguments and the events must say exactly that.

mod common;

use std::ffi::CString;
use std::sync::Arc;

use common::{collect_settled, cstr, fork_paused, host_request, wait_started};
use gadget_node::trace::{self, TracePlan};
use gadget_proto::v1;

fn exec_params(
    ignore_failed: bool,
    max_args: u32,
    max_args_bytes: u32,
) -> Option<v1::run_gadget_request::Params> {
    Some(v1::run_gadget_request::Params::Exec(v1::ExecParams {
        ignore_failed,
        max_args,
        max_args_bytes,
    }))
}

/// argv prepared before the fork: the strings and the NULL-ended array.
struct Argv {
    _strings: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into _strings, which live as long as Argv and
// are never written after it is built, so moving it to another thread is sound.
unsafe impl Send for Argv {}

impl Argv {
    fn new(args: &[&[u8]]) -> Argv {
        let strings: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.to_vec()).unwrap())
            .collect();
        let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Argv {
            _strings: strings,
            pointers,
        }
    }
}

/// Traces a child that execs `program` with `args`; returns the exec events.
async fn trace_exec_of(
    params: Option<v1::run_gadget_request::Params>,
    program: &str,
    args: &[&[u8]],
) -> (common::Collected, u32) {
    let program = cstr(program);
    let argv = Argv::new(args);
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let mut child = fork_paused(|| unsafe {
        libc::execve(program.as_ptr(), argv.pointers.as_ptr(), env.as_ptr());
        // Only reached when the exec failed.
        0
    });
    let pid = child.pid;
    let request =
        TracePlan::from_proto(&host_request(gadget_proto::TRACE_EXEC, params, Some(pid))).unwrap();
    let mut trace = trace::start(request, Arc::new(common::local_identity())).unwrap();
    wait_started(&mut trace.events).await;
    child.release();
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    let got = collect_settled(&mut trace.events, |c| !c.execs().is_empty()).await;
    (got, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_exec_has_argv_exe_and_process() {
    let long = vec![b'x'; 1000];
    let args: Vec<&[u8]> = vec![b"true", b"first", b"", b"with space", &long, b"last"];
    let (got, pid) = trace_exec_of(None, "/bin/true", &args).await;
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:#?}", got.events);
    let (event, exec) = execs[0];
    assert_eq!(exec.ret, 0);
    assert_eq!(&exec.exe[..], b"/bin/true");
    let got_args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(got_args, args, "every argument, the empty one included");
    assert!(!exec.args_truncated);
    let process = event.process.as_ref().unwrap();
    assert_eq!(process.pid, pid);
    assert_eq!(process.tid, pid);
    assert_eq!(process.ppid, std::process::id());
    assert_eq!(&process.comm[..], b"true", "the new program's comm");
    assert!(!exec.parent_comm.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exec_reports_the_errno() {
    let (got, pid) = trace_exec_of(None, "/nonexistent/program", &[b"program", b"arg"]).await;
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:#?}", got.events);
    let (event, exec) = execs[0];
    assert_eq!(exec.ret, -libc::ENOENT);
    assert_eq!(&exec.exe[..], b"/nonexistent/program");
    let got_args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(got_args, [&b"program"[..], b"arg"]);
    assert_eq!(event.process.as_ref().unwrap().pid, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_failed_drops_failed_execs() {
    let (got, _) = trace_exec_of(
        exec_params(true, 0, 0),
        "/nonexistent/program",
        &[b"program"],
    )
    .await;
    assert!(got.execs().is_empty(), "{:#?}", got.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_arguments_than_the_default_are_cut_and_marked() {
    let owned: Vec<Vec<u8>> = (0..100).map(|i| format!("arg{i}").into_bytes()).collect();
    let args: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
    let (got, _) = trace_exec_of(None, "/bin/true", &args).await;
    let (_, exec) = got.execs()[0];
    assert_eq!(exec.args.len(), 64, "the default keeps 64 arguments");
    assert!(exec.args_truncated);
    let kept: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(kept, args[..64]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_bound_keeps_every_argument() {
    let owned: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("argument-{i}").into_bytes())
        .collect();
    let args: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
    let (got, _) = trace_exec_of(exec_params(false, 1024, 32768), "/bin/true", &args).await;
    let (_, exec) = got.execs()[0];
    let kept: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(kept, args);
    assert!(!exec.args_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_argument_bytes_than_the_bound_are_cut_and_marked() {
    let big = vec![b'y'; 6000];
    let args: Vec<&[u8]> = vec![b"true", b"small", &big, b"after"];
    let (got, _) = trace_exec_of(None, "/bin/true", &args).await;
    let (_, exec) = got.execs()[0];
    assert!(exec.args_truncated);
    assert_eq!(&exec.args[0][..], b"true");
    assert_eq!(&exec.args[1][..], b"small");
    // What fits of the 6000-byte argument within 4096 bytes in all.
    let room = 4096 - "true\0small\0".len() - 1;
    assert_eq!(exec.args.len(), 3);
    assert_eq!(&exec.args[2][..], &big[..room]);
}
