//! Response bodies written from a blocking thread: an `io::Write` whose bytes go, in chunks,
//! through a bounded channel to the connection. A slow reader slows the writer (bounded
//! memory); a reader that went away makes the next write fail, which stops the work.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::metrics::Metrics;

/// Bytes gathered before a chunk is sent.
pub(crate) const CHUNK: usize = 256 << 10;

/// Chunks queued towards the connection: with [`CHUNK`], at most 1 MiB per response waits.
const QUEUED: usize = 4;

/// Memory a streamed response holds besides its value.
pub(crate) const STREAM_BYTES: u64 = ((QUEUED + 2) * CHUNK) as u64;

/// The writing end of a streamed body.
#[derive(Debug)]
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    metrics: Arc<Metrics>,
}

/// A body and the writer that fills it.
pub(crate) fn channel(metrics: Arc<Metrics>) -> (ChannelWriter, Body) {
    let (tx, rx) = mpsc::channel(QUEUED);
    let w = ChannelWriter {
        tx,
        buf: Vec::new(),
        metrics,
    };
    (w, Body::from_stream(ReceiverStream::new(rx)))
}

/// The error a write returns once the reader has gone.
pub(crate) fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
}

impl ChannelWriter {
    /// Sends what is buffered now, so that a reader sees every ready line at once.
    pub fn send_now(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.metrics.bytes_out.inc_by(chunk.len() as u64);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| gone())
    }

    /// Whether the reader has gone (checked between pieces of work).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Ends the body with an error: the client sees a cut transfer, never a short success.
    pub fn fail(self, message: String) {
        let _ = self.tx.blocking_send(Err(io::Error::other(message)));
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK.max(data.len().min(CHUNK * 4)));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_now()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_now()
    }
}
