use crate::http::forwarded::RequestId;
use http::{HeaderMap, HeaderValue, Method};

use super::*;

#[test]
fn attempt_debug_shows_no_credential() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer header-secret"),
    );
    let request_id = RequestId::from_client(&HeaderValue::from_static("rid-1")).unwrap();
    let attempt = Attempt {
        request: AuthRequest {
            method: &Method::POST,
            uri: "/api/x?key=query-secret",
            host: Some("gateway.example"),
            headers: &headers,
            client_ip: "192.0.2.7".parse().unwrap(),
            request_id: &request_id,
        },
        session: Some(SessionCookie {
            value: "cookie-secret",
            scheme: "https",
        }),
    };
    let text = format!("{attempt:?}");
    for secret in ["header-secret", "query-secret", "cookie-secret"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // What is safe to show still is: the test would pass on an empty Debug otherwise.
    for shown in ["/api/x", "gateway.example", "192.0.2.7", "rid-1", "https"] {
        assert!(text.contains(shown), "{shown} missing from {text}");
    }
}
