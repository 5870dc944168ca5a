//! [`TrailerGuard`]: makes a pseudo-header field in HTTP/2 request trailers a stream error
//! (RFC 9113 §8.1), which the h2 crate (0.4) does not: it decodes `:path` and friends in a
//! trailers block into its pseudo-header slots and then drops them, accepting the request.
//!
//! Finding pseudo-headers ourselves would mean a full HPACK decoder (the dynamic table, Huffman
//! strings) kept in step with h2's. Instead this wrapper lets h2's own rule do the work: a
//! pseudo-header after a regular field is malformed, and a malformed header block is a stream
//! error (RST_STREAM PROTOCOL_ERROR). So every trailers HEADERS frame from the client gets one
//! regular field, `te: trailers`, put in front of its header block. The field is a literal
//! without indexing, so the HPACK state of both sides is untouched; h2 accepts it (`te` is only
//! refused with another value); and hyper never forwards a `te` trailer upstream (it is not a
//! valid trailer field for HTTP/1.1), so nothing else changes.
//!
//! The wrapper follows HTTP/2 framing on the read side only: after the client preface it reads
//! each 9-byte frame header and lets the payload pass. A HEADERS frame on a stream at or below
//! the highest stream the client opened is trailers (a new request always uses a higher id; h2
//! refuses anything else anyway). That frame is held whole (it is at most 16 KiB, the maximum
//! frame size the server advertises) and re-emitted as a HEADERS frame carrying the priority
//! fields, the END_STREAM flag and the extra field, followed by a CONTINUATION with the original
//! block fragment (padding dropped). Anything that is not HTTP/2 (the first bytes are not the
//! preface) passes through untouched, read straight into the caller's buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::io_delegate::forward_async_write;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest frame payload held for rewriting: SETTINGS_MAX_FRAME_SIZE's default, which the
/// server keeps. A larger frame passes through and h2 refuses it.
const MAX_FRAME: usize = 16_384;

const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// `te: trailers` as an HPACK literal field without indexing, with a literal name.
const TE_TRAILERS: &[u8] = b"\x00\x02te\x08trailers";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matching the preface; this many bytes matched so far.
    Preface(usize),
    /// At a frame header.
    FrameHead,
    /// Inside a frame payload that passes through; this many bytes left.
    Payload(usize),
    /// Not HTTP/2: everything passes through.
    Off,
}

/// The read-side HTTP/2 frame follower.
#[derive(Debug)]
struct Frames {
    state: State,
    /// Highest stream id the client opened with a HEADERS frame.
    max_stream: u32,
}

/// A frame header.
#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let head: &[u8; FRAME_HEAD] = bytes.get(..FRAME_HEAD)?.try_into().ok()?;
        Some(Self {
            len: usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]),
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        })
    }

    fn write(len: usize, kind: u8, flags: u8, stream: u32, out: &mut BytesMut) {
        let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
    }
}

impl Frames {
    fn new() -> Self {
        Self {
            state: State::Preface(0),
            max_stream: 0,
        }
    }

    /// How many leading bytes of `data` pass through unchanged. Stops (with the state at
    /// `FrameHead`) at a frame header that is incomplete or starts a trailers frame.
    fn pass(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Off => return data.len(),
                State::Preface(matched) => {
                    let take = (PREFACE.len() - matched).min(data.len() - at);
                    if data[at..at + take] != PREFACE[matched..matched + take] {
                        self.state = State::Off;
                        return data.len();
                    }
                    at += take;
                    self.state = if matched + take == PREFACE.len() {
                        State::FrameHead
                    } else {
                        State::Preface(matched + take)
                    };
                }
                State::Payload(left) => {
                    let take = left.min(data.len() - at);
                    at += take;
                    self.state = if take == left {
                        State::FrameHead
                    } else {
                        State::Payload(left - take)
                    };
                }
                State::FrameHead => {
                    let Some(head) = Head::parse(&data[at..]) else {
                        return at;
                    };
                    if self.is_trailers(&head) {
                        return at;
                    }
                    if head.kind == HEADERS {
                        self.max_stream = self.max_stream.max(head.stream);
                    }
                    at += FRAME_HEAD;
                    self.state = State::Payload(head.len);
                }
            }
        }
        at
    }

    fn is_trailers(&self, head: &Head) -> bool {
        head.kind == HEADERS
            && head.stream != 0
            && head.stream <= self.max_stream
            && head.len <= MAX_FRAME
    }

    /// At a held trailers frame header: rewrites the whole frame from `held` into `out` if it
    /// has arrived. False if more bytes are needed.
    fn rewrite(&mut self, held: &mut BytesMut, out: &mut BytesMut) -> bool {
        let Some(head) = Head::parse(held) else {
            return false;
        };
        if held.len() < FRAME_HEAD + head.len {
            return false;
        }
        let payload = &held[FRAME_HEAD..FRAME_HEAD + head.len];
        match split_headers_payload(head.flags, payload) {
            Some((priority, fragment)) => {
                let flags = head.flags & (END_STREAM | PRIORITY);
                Head::write(
                    priority.len() + TE_TRAILERS.len(),
                    HEADERS,
                    flags,
                    head.stream,
                    out,
                );
                out.extend_from_slice(priority);
                out.extend_from_slice(TE_TRAILERS);
                Head::write(
                    fragment.len(),
                    CONTINUATION,
                    head.flags & END_HEADERS,
                    head.stream,
                    out,
                );
                out.extend_from_slice(fragment);
            }
            // Bad padding or priority: unchanged, for h2 to refuse.
            None => out.extend_from_slice(&held[..FRAME_HEAD + head.len]),
        }
        held.advance(FRAME_HEAD + head.len);
        true
    }
}

/// A HEADERS payload's priority fields and header block fragment, without padding.
fn split_headers_payload(flags: u8, payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (pad, rest) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let rest = rest.get(..rest.len().checked_sub(pad)?)?;
    if flags & PRIORITY != 0 {
        (rest.len() >= 5).then(|| rest.split_at(5))
    } else {
        Some((&[][..], rest))
    }
}

pin_project_lite::pin_project! {
    /// Wraps a server connection's IO; see the module docs.
    pub(crate) struct TrailerGuard<T> {
        #[pin]
        inner: T,
        frames: Frames,
        // Raw bytes read but not yet passed on (a frame header or a trailers frame).
        held: BytesMut,
        // Bytes ready for the reader (rewritten frames and what followed them).
        ready: BytesMut,
        eof: bool,
    }
}

impl<T> TrailerGuard<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            frames: Frames::new(),
            held: BytesMut::new(),
            ready: BytesMut::new(),
            eof: false,
        }
    }
}

impl<T: AsyncRead> TrailerGuard<T> {
    /// Moves what can be passed on from `held` to `ready`.
    fn process_held(self: Pin<&mut Self>) {
        let this = self.project();
        loop {
            let pass = this.frames.pass(this.held);
            this.ready.extend_from_slice(&this.held.split_to(pass));
            if this.held.is_empty() || !this.frames.rewrite(this.held, this.ready) {
                break;
            }
        }
        if *this.eof && !this.held.is_empty() {
            // The peer is gone mid-frame: hand over the rest as it is.
            this.ready.extend_from_slice(&this.held.split());
        }
    }
}

impl<T: AsyncRead> AsyncRead for TrailerGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let this = self.as_mut().project();
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if *this.eof {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            std::task::ready!(this.inner.poll_read(cx, buf))?;
            let after = buf.filled().len();
            if after == before {
                *this.eof = true;
                self.as_mut().process_held();
                continue;
            }
            if this.held.is_empty() {
                // The common case: scan in place and keep only what needs holding.
                let pass = this.frames.pass(&buf.filled()[before..]);
                if pass == after - before {
                    return Poll::Ready(Ok(()));
                }
                this.held.extend_from_slice(&buf.filled()[before + pass..]);
                buf.set_filled(before + pass);
                // Process now: what is held may be complete, and the peer may send nothing more.
                self.as_mut().process_held();
                if pass > 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                this.held.extend_from_slice(&buf.filled()[before..]);
                buf.set_filled(before);
                self.as_mut().process_held();
            }
        }
    }
}

// Writes pass straight through: only the read side is guarded.
forward_async_write!(TrailerGuard, inner);

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        Head::write(payload.len(), kind, flags, stream, &mut out);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    /// `input` through a [`TrailerGuard`], arriving at most `chunk` bytes per read.
    async fn through_guard(input: &[u8], chunk: usize) -> Vec<u8> {
        let (mut writer, reader) = tokio::io::duplex(chunk);
        let input = input.to_vec();
        let write = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(&input).await.unwrap_or_default();
        });
        let mut guard = TrailerGuard::new(reader);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap_or_default();
        write.await.unwrap_or_default();
        out
    }

    fn h2_input(trailer_flags: u8, trailer_payload: &[u8]) -> Vec<u8> {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, b""));
        input.extend(frame(HEADERS, END_HEADERS, 1, b"\x82\x87\x84"));
        input.extend(frame(0x0, 0, 1, b"body"));
        input.extend(frame(HEADERS, trailer_flags, 1, trailer_payload));
        input.extend(frame(0x6, 0, 0, b"12345678"));
        input
    }

    #[tokio::test]
    async fn trailers_get_a_regular_field_in_front_whatever_the_read_sizes() {
        let input = h2_input(END_STREAM | END_HEADERS, b"\x84");
        let mut want = input[..input.len() - 9 - 1 - 17].to_vec();
        want.extend(frame(HEADERS, END_STREAM, 1, TE_TRAILERS));
        want.extend(frame(CONTINUATION, END_HEADERS, 1, b"\x84"));
        want.extend(frame(0x6, 0, 0, b"12345678"));
        for chunk in [1, 2, 5, 9, 10, 64, 4096] {
            assert_eq!(through_guard(&input, chunk).await, want, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn padding_is_dropped_and_priority_kept() {
        let payload = b"\x02PRIOR\x84\x00\x00";
        let input = h2_input(END_STREAM | END_HEADERS | PADDED | PRIORITY, payload);
        let out = through_guard(&input, 7).await;
        let mut tail = frame(
            HEADERS,
            END_STREAM | PRIORITY,
            1,
            b"PRIOR\x00\x02te\x08trailers",
        );
        tail.extend(frame(CONTINUATION, END_HEADERS, 1, b"\x84"));
        tail.extend(frame(0x6, 0, 0, b"12345678"));
        assert!(out.ends_with(&tail), "{out:?}");
    }

    #[tokio::test]
    async fn http1_passes_untouched() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(3);
        assert_eq!(through_guard(&input, 5).await, input);
    }
}
