//! A writer that gives up on a peer that stops reading: without it, a
//! caller that sends requests and never reads its replies would hold the
//! server's writer, and every handler answering on that connection, for as
//! long as the socket stays open.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Sleep;

/// How long a connection's writes may make no progress before it is
/// closed. Progress, not a whole write: a large frame to a slow but
/// reading peer is not cut off.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(30);

/// `W`, failing a write or flush that made no progress for `limit`.
pub(crate) struct Stall<W> {
    inner: W,
    limit: Duration,
    /// Armed when a write first waits; dropped at any progress.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<W> Stall<W> {
    pub(crate) fn new(inner: W, limit: Duration) -> Self {
        Stall { inner, limit, waiting: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let waiting = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Stall<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_peer_that_reads_nothing_fails_the_write_after_the_limit() {
        let (writer, _unread) = tokio::io::duplex(1024);
        let mut stalled = Stall::new(writer, Duration::from_millis(50));
        let e = stalled.write_all(&[0; 4096]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (writer, mut reader) = tokio::io::duplex(1024);
        let mut slow = Stall::new(writer, Duration::from_millis(200));
        let read = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0; 512];
            while got < 16 * 1024 {
                // Each pause is under the limit; all of them together are
                // far over it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                got += reader.read(&mut buf).await.unwrap();
            }
            got
        });
        slow.write_all(&[0; 16 * 1024]).await.unwrap();
        assert_eq!(read.await.unwrap(), 16 * 1024);
    }
}
