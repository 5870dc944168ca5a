//! Bodies stream both ways without buffering (SPEC §4): an SSE event reaches the client while
//! the upstream is still holding the rest, and a request body reaches the upstream chunk by
//! chunk. No timing thresholds: the upstream is released only after the client saw the first
//! part, so a buffering gateway deadlocks and the bounded wait fails.

use bytes::{Bytes, BytesMut};
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::support::{
    Client, Gate, TestGateway, Upstream, channel_body, full, route_toml, upstream_toml, within,
};

const FIRST: &str = "event: tick\ndata: one\n\n";
const REST: &str = "event: tick\ndata: two\n\nevent: tick\ndata: three\n\n";

/// An SSE upstream that sends [`FIRST`], waits for the gate, then sends [`REST`] and ends.
async fn sse_upstream() -> (Upstream, Gate) {
    let gate = Gate::new();
    let held = gate.clone();
    let up = Upstream::spawn_raw(move |_req| {
        let gate = held.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(FIRST.as_bytes())).await;
                gate.opened().await;
                let _ = tx.send(Bytes::from_static(REST.as_bytes())).await;
            });
            http::Response::builder()
                .header(CONTENT_TYPE, "text/event-stream")
                .header("cache-control", "no-cache")
                .body(body)
                .unwrap()
        }
    })
    .await;
    (up, gate)
}

/// Reads body frames into `seen` until it contains `want` (bounded).
async fn read_until(body: &mut Incoming, seen: &mut BytesMut, want: &str) {
    within(&format!("body to contain {want:?}"), async {
        while !String::from_utf8_lossy(seen).contains(want) {
            let frame = body
                .frame()
                .await
                .expect("stream ended early")
                .expect("body frame");
            if let Ok(data) = frame.into_data() {
                seen.extend_from_slice(&data);
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_first_event_arrives_while_upstream_still_holds_the_rest() {
    let (up, gate) = sse_upstream().await;
    let config = format!(
        "{}{}",
        upstream_toml("events", &[up.addr], ""),
        route_toml("/events", "events", "")
    );
    let gw = TestGateway::start(&config).await;

    within(
        "h1 SSE exchange",
        assert_first_event_before_upstream_finishes_with(gw.client(), &gate),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_h2_streams_first_event_before_the_rest() {
    let (up, gate) = sse_upstream().await;
    let config = format!(
        "{}{}",
        upstream_toml("events", &[up.addr], ""),
        route_toml("/events", "events", "")
    );
    let gw = TestGateway::start(&config).await;

    within(
        "h2 SSE exchange",
        assert_first_event_before_upstream_finishes_with(gw.h2_client(), &gate),
    )
    .await;
}

async fn assert_first_event_before_upstream_finishes_with(client: Client, gate: &Gate) {
    let resp = client
        .send_streaming(
            Request::get("/events/stream")
                .body(crate::support::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap()),
        Some("text/event-stream")
    );
    let mut body = resp.into_body();
    let mut seen = BytesMut::new();
    read_until(&mut body, &mut seen, FIRST).await;
    assert_eq!(
        &seen[..],
        FIRST.as_bytes(),
        "only the first event exists yet"
    );

    gate.open();
    let rest = within("rest of the stream", body.collect())
        .await
        .unwrap()
        .to_bytes();
    seen.extend_from_slice(&rest);
    assert_eq!(String::from_utf8_lossy(&seen), format!("{FIRST}{REST}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_reaches_upstream_chunk_by_chunk() {
    // The upstream reports its first received chunk, then reads the rest and answers with
    // the total; the client sends its second chunk only after that report.
    let (first_tx, mut first_rx) = mpsc::channel::<Bytes>(1);
    let up = Upstream::spawn_raw(move |req| {
        let first_tx = first_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            let mut reported = false;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    if !reported {
                        reported = true;
                        let _ = first_tx.send(data).await;
                    }
                }
            }
            http::Response::new(full(format!("total {total}")))
        }
    })
    .await;
    let config = format!(
        "{}{}",
        upstream_toml("sink", &[up.addr], ""),
        route_toml("/upload", "sink", "")
    );
    let gw = TestGateway::start(&config).await;

    for client in [gw.client(), gw.h2_client()] {
        let (tx, body) = channel_body();
        let response = tokio::spawn(async move {
            client
                .send(Request::post("/upload").body(body).unwrap())
                .await
        });
        tx.send(Bytes::from_static(b"first-chunk")).await.unwrap();
        let first = within("upstream to see the first chunk", first_rx.recv())
            .await
            .expect("upstream alive");
        assert!(first.starts_with(b"first"), "first chunk {first:?}");
        tx.send(Bytes::from_static(b"second-chunk")).await.unwrap();
        drop(tx);
        let resp = within("upload response", response).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "total 23");
    }
}
