//! Requests that ended before the gateway saw them. A request head that HTTP/1.1 cannot parse
//! — a bad request line, a malformed header, a head over hyper's buffer, a URI too long — gets
//! hyper's own 400, 431 or 414, and the connection closes; a head that stops coming for
//! `header_read_timeout` is cut off with no answer. NGINX logs both as requests (the second as
//! 408), and an operator watching for scanners and slow-header attacks expects them: so they get
//! an access line (`method` and `path` null, as nothing of the head can be trusted) and are
//! counted in `gatehouse_requests_total` under the no-route label with method `OTHER`.

use std::time::{Duration, SystemTime};

use crate::http::body::BoxError;
use crate::http::forwarded::RequestId;
use crate::http::head_scan::HeadTimedOut;
use crate::observe::access_log::AccessFields;
use crate::pipeline::ConnInfo;
use crate::runtime::Shared;

/// The status to log for the error that ended an HTTP/1.1 connection: the one hyper answered a
/// refused request head with, or 408 for a head cut off at `header_read_timeout`; `None` for
/// every other way a connection ends. (A bad head pipelined while the response before it is
/// still being written ends the connection unanswered; it is logged with the status hyper would
/// have sent, as NGINX logs a 400 it could not send.)
pub(super) fn logged_status(error: &BoxError) -> Option<u16> {
    if HeadTimedOut::caused(&**error) {
        return Some(408);
    }
    let error = error.downcast_ref::<hyper::Error>()?;
    if !error.is_parse() || error.is_parse_version_h2() || error.is_parse_status() {
        return None;
    }
    // hyper's public API tells a head too large from a URI too long only by its message.
    let message = error.to_string();
    if error.is_parse_too_large() {
        return Some(if message.starts_with("URI too long") {
            414
        } else {
            431
        });
    }
    // hyper's internal parse error is the one parse error it does not answer.
    (!message.starts_with("internal error")).then_some(400)
}

/// Counts and logs one request head that ended with `status` (see [`logged_status`]).
pub(super) fn record(status: u16, info: &ConnInfo, shared: &Shared) {
    let rt = shared.runtime.load();
    let no_route = rt.route_labels.label(None);
    shared.metrics.traffic.record_unparsed(no_route, status);
    if !tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO) {
        return;
    }
    let request_id = RequestId::generate();
    let line = AccessFields {
        request_id: &request_id,
        client_ip: info.peer_ip.as_str(),
        method: None,
        path: None,
        query: None,
        route: None,
        upstream: None,
        status,
        identity: None,
        auth_method: None,
        duration: Duration::ZERO,
        user_agent: None,
        http: "1.1",
        tls: info.tls_version,
    }
    .begin(SystemTime::now())
    .finish(0, 0);
    shared.access_log.send(line);
}
