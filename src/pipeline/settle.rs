//! SPEC §8.13: keeping an HTTP/1.1 connection in step when gatehouse answers without reading
//! (all of) the request body.

use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;

use crate::http::body::{self, Body};

/// What SPEC §8.13 needs to know about the request body once the response is chosen.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyFraming {
    /// HTTP/1.x: the next request on the connection follows this body on the same byte stream.
    /// (On h2 a body left unread only resets its own stream.)
    http1: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending the body.
    expects_continue: bool,
    /// The request announced a body (`Content-Length` > 0 or chunked).
    has_body: bool,
}

impl BodyFraming {
    pub(super) fn of(req: &Request<Incoming>) -> Self {
        Self {
            http1: req.version() < Version::HTTP_2,
            expects_continue: req
                .headers()
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
            has_body: !http_body::Body::is_end_stream(req.body()),
        }
    }

    /// Keeps an HTTP/1.1 connection in step after the response is chosen. `unread` is the body
    /// when gatehouse answered without forwarding it; `failed` says the response is an error.
    ///
    /// - An unread body is discarded like NGINX does (at most [`body::DISCARD_MAX_BYTES`] within
    ///   [`body::DISCARD_MAX_TIME`]) and the connection kept; a larger, slower or broken one — or
    ///   one the client holds back for `100 Continue` — gets `Connection: close`, so the client
    ///   never sends its next request into a connection about to close.
    /// - A body handed upstream whose forwarding failed (502/504) may be partly unread: close.
    /// - A response that already closes (smuggling shapes, 413, 431) is left alone: its body's
    ///   framing is not to be trusted, so nothing is read.
    pub(super) async fn settle(
        self,
        unread: Option<Incoming>,
        failed: bool,
        response: &mut Response<Body>,
    ) {
        if !self.http1 || !self.has_body || closes(response) {
            return;
        }
        let keep = match unread {
            Some(_) if self.expects_continue => false,
            Some(rest) => {
                Box::pin(body::discard(
                    rest,
                    body::DISCARD_MAX_BYTES,
                    body::DISCARD_MAX_TIME,
                ))
                .await
            }
            None => !failed,
        };
        if !keep {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Whether the response already announces `Connection: close`.
fn closes(response: &Response<Body>) -> bool {
    response
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}
