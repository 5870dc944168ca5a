//! Responses gatehouse writes itself, without an upstream: the cleartext listener's redirect,
//! `redirect` and `respond` routes, and the HEAD rule for all of them.

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::host::request_host;
use crate::http::body::{self, Body};

/// 308 from the cleartext listener to the same host and path on the TLS port.
pub(super) fn https_redirect<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = request_host(req).unwrap_or("localhost");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let target = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    redirect(&location, 308)
}

/// A redirect to `location` (validated config or a path gatehouse built).
pub(super) fn redirect(location: &str, status: u16) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A `respond` route's fixed answer.
pub(super) fn respond(status: u16, text: &str, content_type: &str) -> Response<Body> {
    let mut response = Response::new(body::full(text.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// SPEC §8.10: a HEAD response has no body. gatehouse's own bodies (errors, `respond` routes) are
/// dropped, keeping the `Content-Length` a GET would have had; an upstream's answer to HEAD is
/// already empty and keeps its headers untouched.
pub(super) fn strip_head_body(response: &mut Response<Body>) {
    let body = response.body();
    if http_body::Body::is_end_stream(body) {
        return;
    }
    if let Some(length) = http_body::Body::size_hint(body).exact()
        && !response.headers().contains_key(header::CONTENT_LENGTH)
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    *response.body_mut() = body::empty();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_redirect_keeps_path_and_query() {
        let req = Request::builder()
            .uri("/api/x?y=1")
            .header("host", "gw.example:8080")
            .body(())
            .unwrap();
        let response = https_redirect(&req, 8443);
        assert_eq!(response.status(), 308);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://gw.example:8443/api/x?y=1"
        );
        assert_eq!(
            https_redirect(&req, 443).headers()[header::LOCATION],
            "https://gw.example/api/x?y=1"
        );
    }
}
