//! Arbitrary bytes through [`ScanIo`], the HTTP/1 request-smuggling head scanner, split at
//! arbitrary points.
//!
//! Input layout: byte 0 = `n` (mod 16) split lengths follow, each one byte (a read of 0 bytes
//! is skipped); everything after them is the connection's byte stream, read in chunks of those
//! lengths, cycling, so the same stream is cut at fuzzer-chosen places. The scanner must never
//! panic, and its verdict (which request is flagged, and why) must not depend on how the
//! stream was cut: it is compared with the verdict for the stream read in one piece.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use gatehouse::http::head_scan::{ScanIo, ScanVerdict};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// Serves `data` in reads of the given sizes (cycling; 0 means "the rest").
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = match self.sizes.get(self.next % self.sizes.len().max(1)) {
            Some(0) | None => self.data.len(),
            Some(size) => *size,
        };
        self.next += 1;
        let take = size.min(self.data.len()).min(buf.remaining());
        let (chunk, rest) = self.data.split_at(take);
        buf.put_slice(chunk);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Reads everything through a [`ScanIo`] and returns the verdict.
/// `buffer` is the caller's read buffer size, so a read may also be cut short by the caller.
fn scan(data: &[u8], sizes: Vec<usize>, buffer: usize) -> Arc<ScanVerdict> {
    let (io, verdict) = ScanIo::new(Chunked {
        data,
        sizes,
        next: 0,
    });
    let mut io = Box::pin(io);
    let mut cx = Context::from_waker(Waker::noop());
    let mut storage = vec![0u8; buffer.max(1)];
    loop {
        let mut buf = ReadBuf::new(&mut storage);
        match io.as_mut().poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return verdict,
            Poll::Ready(Ok(())) => {}
            other => panic!("the in-memory reader answered {other:?}"),
        }
    }
}

/// The first flagged request and its reason (a stream of `len` bytes holds at most `len`
/// requests, since each needs at least a request line and its newline… or a bare newline).
fn flagged(verdict: &ScanVerdict, len: usize) -> Option<(u64, &'static str)> {
    (0..=len as u64).find_map(|i| verdict.shape_of(i).map(|shape| (i, shape)))
}

fuzz_target!(|input: &[u8]| {
    let Some((&count, rest)) = input.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (sizes, data) = rest.split_at(count);
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s)).collect();

    let whole = scan(data, vec![0], data.len());
    // A 97-byte buffer cuts some of the fuzzer's reads short, as a small hyper buffer would.
    let split = scan(data, sizes.clone(), 97);
    let byte_by_byte = scan(data, vec![1], 1);
    let want = flagged(&whole, data.len());
    assert_eq!(flagged(&split, data.len()), want, "split at {sizes:?}");
    assert_eq!(
        flagged(&byte_by_byte, data.len()),
        want,
        "one byte per read"
    );
});
