//! Where a trace's rows are written: any [`Write`], or a [`WriterThread`]
//! that writes them on a thread of its own.
//!
//! The plugin runs on a single-threaded runtime: a runtime with worker
//! threads woke the thread that merges and prints rows from the one that
//! read the nodes' connections several thousand times per 200,000 events,
//! about a fifth of the client's CPU per event. On one thread, though, a
//! write to a stdout that nobody reads (a paused terminal, `| less` kept on
//! its first page) would stop everything: the connections would no longer
//! be read, their keepalive pings would go unanswered, and the nodes would
//! be dropped after the keepalive timeout. A [`WriterThread`] blocks on the
//! write instead, and the merge loop waits for it without blocking the
//! runtime: the connections stay alive, and the nodes' flow control holds
//! their events back until the reader reads again.

use std::future::Future;
use std::io::{self, Write};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

/// What the merge loop writes its rows to.
pub trait RowOutput {
    /// Writes out all of `rows` and leaves it empty (its capacity may
    /// change). A closed output is an error of kind
    /// [`io::ErrorKind::BrokenPipe`], possibly only at a later call.
    fn write_rows(&mut self, rows: &mut Vec<u8>) -> impl Future<Output = io::Result<()>>;
}

impl<W: Write> RowOutput for W {
    async fn write_rows(&mut self, rows: &mut Vec<u8>) -> io::Result<()> {
        let written = self.write_all(rows).and_then(|()| self.flush());
        rows.clear();
        written
    }
}

/// Buffers of rows handed to the writer thread but not yet written, at
/// most: one being written and one waiting is enough to keep the writer
/// busy, and bounds the rows held when the output stalls.
const BUFFERS_IN_FLIGHT: usize = 2;

/// A [`RowOutput`] whose writes happen on a thread of its own; see the
/// module docs for why. Rows are written in the order they are given.
#[derive(Debug)]
pub struct WriterThread<W> {
    /// `None` once the thread has been told to end.
    rows: Option<mpsc::Sender<Vec<u8>>>,
    /// Written buffers coming back, so that their memory is reused.
    emptied: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<(W, io::Result<()>)>>,
    /// Why the thread ended early, once [`RowOutput::write_rows`] has
    /// said so.
    failed: Option<io::ErrorKind>,
}

impl<W: Write + Send + 'static> WriterThread<W> {
    /// Starts a thread that writes to `writer`.
    pub fn spawn(writer: W) -> io::Result<WriterThread<W>> {
        let (rows, mut to_write) = mpsc::channel::<Vec<u8>>(BUFFERS_IN_FLIGHT);
        let (give_back, emptied) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rows-writer".into())
            .spawn(move || {
                let mut writer = writer;
                while let Some(mut buffer) = to_write.blocking_recv() {
                    if let Err(err) = writer.write_all(&buffer).and_then(|()| writer.flush()) {
                        return (writer, Err(err));
                    }
                    buffer.clear();
                    // The other end may be gone already: nothing to do.
                    let _ = give_back.send(buffer);
                }
                (writer, Ok(()))
            })?;
        Ok(WriterThread {
            rows: Some(rows),
            emptied,
            thread: Some(thread),
            failed: None,
        })
    }

    /// Waits until every row given has been written, ends the thread, and
    /// returns the writer; or the error that ended the writes (again, if
    /// [`RowOutput::write_rows`] has returned it already).
    pub fn finish(mut self) -> io::Result<W> {
        self.rows = None;
        match self.thread.take() {
            Some(thread) => match join(thread) {
                (writer, Ok(())) => Ok(writer),
                (_, Err(err)) => Err(err),
            },
            None => Err(self.failed.unwrap_or(io::ErrorKind::BrokenPipe).into()),
        }
    }

    /// The thread's error, once it has ended because a write failed.
    fn ended_with(&mut self) -> io::Error {
        self.rows = None;
        let err = match self.thread.take().map(join) {
            Some((_, Err(err))) => err,
            Some((_, Ok(()))) | None => self.failed.unwrap_or(io::ErrorKind::BrokenPipe).into(),
        };
        self.failed = Some(err.kind());
        err
    }
}

/// What the writer thread returned; its panic, carried on.
fn join<W>(thread: JoinHandle<(W, io::Result<()>)>) -> (W, io::Result<()>) {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl<W: Write + Send + 'static> RowOutput for WriterThread<W> {
    async fn write_rows(&mut self, rows: &mut Vec<u8>) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let Some(sender) = &self.rows else {
            return Err(self.ended_with());
        };
        let spare = self.emptied.try_recv().unwrap_or_default();
        let full = std::mem::replace(rows, spare);
        // Waits, without blocking the runtime, while the writer is
        // `BUFFERS_IN_FLIGHT` buffers behind.
        if sender.send(full).await.is_err() {
            return Err(self.ended_with());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;
    use std::time::{Duration, Instant};

    /// A writer whose every write waits for a go-ahead, like a pipe whose
    /// reader has stopped reading.
    struct Stalled {
        go: std_mpsc::Receiver<()>,
        written: Vec<u8>,
    }

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.go
                .recv()
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "no more go-aheads"))?;
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn rows_are_written_in_order_and_buffers_left_empty() {
        let mut output = WriterThread::spawn(Vec::new()).unwrap();
        let mut expected = Vec::new();
        for n in 0..100 {
            let mut rows = format!("row {n}\n").into_bytes();
            expected.extend_from_slice(&rows);
            output.write_rows(&mut rows).await.unwrap();
            assert!(rows.is_empty());
        }
        assert_eq!(output.finish().unwrap(), expected);
    }

    #[tokio::test]
    async fn a_stalled_output_holds_back_the_rows_not_the_runtime() {
        // The regression: rows written on the runtime's own thread to a
        // stdout nobody read stopped the single-threaded runtime, and with
        // it the connections' keepalives.
        let (go, go_ahead) = std_mpsc::channel();
        let stalled = Stalled {
            go: go_ahead,
            written: Vec::new(),
        };
        let mut output = WriterThread::spawn(stalled).unwrap();
        // One buffer is taken by the (stalled) writer and the next ones
        // wait in the channel: those calls return at once.
        for rows in [&b"a\n"[..], b"b\n", b"c\n"] {
            let mut rows = rows.to_vec();
            tokio::time::timeout(Duration::from_secs(5), output.write_rows(&mut rows))
                .await
                .expect("a buffer fits in the channel")
                .unwrap();
        }
        // Now the writer is behind: this call waits, and meanwhile the
        // runtime's timers (the keepalives' clock) still run.
        let started = Instant::now();
        let mut rows = b"d\n".to_vec();
        let waited = tokio::time::timeout(Duration::from_millis(100), output.write_rows(&mut rows));
        assert!(waited.await.is_err(), "the rows went past a stalled writer");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the runtime was blocked for {:?}",
            started.elapsed()
        );
        // The reader reads again: everything comes out, in order.
        for _ in 0..3 {
            go.send(()).unwrap();
        }
        assert_eq!(output.finish().unwrap().written, b"a\nb\nc\n");
    }

    #[tokio::test]
    async fn a_closed_output_is_reported_as_a_broken_pipe() {
        let (go, go_ahead) = std_mpsc::channel::<()>();
        drop(go);
        let closed = Stalled {
            go: go_ahead,
            written: Vec::new(),
        };
        let mut output = WriterThread::spawn(closed).unwrap();
        let mut failed = None;
        // The first write fails on the thread; a later call reports it.
        for _ in 0..10 {
            let mut rows = b"row\n".to_vec();
            if let Err(err) = output.write_rows(&mut rows).await {
                failed = Some(err);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failed = failed.expect("the closed output was reported");
        assert_eq!(failed.kind(), io::ErrorKind::BrokenPipe);
        // And again at the end, as an output closed at the last write would
        // be.
        let err = output.finish().map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn any_writer_is_an_output_written_at_once() {
        let mut out = Vec::new();
        let mut rows = b"row\n".to_vec();
        out.write_rows(&mut rows).await.unwrap();
        assert_eq!(out, b"row\n");
        assert!(rows.is_empty());
    }
}
