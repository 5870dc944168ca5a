//! [`IdleTimeout`] over an in-memory `tokio::io::duplex` pipe with paused time: the byte clock
//! fails a busy connection after exactly `idle` without a byte, bytes in either direction keep it
//! alive, an idle-between-requests connection is left to the connection-level clock, and the
//! lease lives as long as the IO.

use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;

const IDLE: Duration = Duration::from_secs(10);

/// Counts how many leases are alive.
struct Lease(Arc<AtomicUsize>);

impl Lease {
    fn boxed(live: &Arc<AtomicUsize>) -> Box<dyn Any + Send + Sync> {
        live.fetch_add(1, Ordering::SeqCst);
        Box::new(Self(live.clone()))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wrapped gateway side and the peer's side of one connection.
fn pipe(idle: Duration, activity: &Arc<Activity>) -> (IdleTimeout<DuplexStream>, DuplexStream) {
    let (ours, theirs) = duplex(1024);
    let live = Arc::new(AtomicUsize::new(0));
    let io = IdleTimeout::new(ours, idle, activity.clone(), Lease::boxed(&live));
    (io, theirs)
}

async fn read_one(io: &mut IdleTimeout<DuplexStream>) -> io::Result<usize> {
    let mut byte = [0u8; 1];
    io.read(&mut byte).await
}

#[tokio::test(start_paused = true)]
async fn a_silent_busy_connection_times_out_after_exactly_idle() {
    let activity = Activity::new();
    let _request = activity.open_request();
    let (mut io, _peer) = pipe(IDLE, &activity);

    let start = Instant::now();
    let error = read_one(&mut io).await.expect_err("no byte for idle");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), IDLE, "not a tick earlier or later");
}

#[tokio::test(start_paused = true)]
async fn bytes_from_the_peer_keep_a_busy_connection_alive() {
    let activity = Activity::new();
    let _request = activity.open_request();
    let (mut io, mut peer) = pipe(IDLE, &activity);

    let start = Instant::now();
    for _ in 0..10 {
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        peer.write_all(b"x").await.unwrap();
        assert_eq!(read_one(&mut io).await.unwrap(), 1);
    }
    assert!(
        start.elapsed() > IDLE * 8,
        "alive well past one idle period"
    );
    let quiet = Instant::now();
    let error = read_one(&mut io).await.expect_err("silence again");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(quiet.elapsed(), IDLE, "counted from the last byte");
}

#[tokio::test(start_paused = true)]
async fn bytes_written_count_as_activity_for_a_pending_read() {
    let activity = Activity::new();
    let _request = activity.open_request();
    let (io, mut peer) = pipe(IDLE, &activity);
    let (mut reader, mut writer) = tokio::io::split(io);

    // The peer drains what the gateway writes; the gateway's read stays pending throughout.
    let drain = tokio::spawn(async move {
        let mut sink = [0u8; 64];
        while peer.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let start = Instant::now();
    let read = tokio::spawn(async move {
        let mut byte = [0u8; 1];
        reader.read(&mut byte).await
    });
    for _ in 0..5 {
        tokio::time::sleep(IDLE / 2).await;
        writer.write_all(b"y").await.unwrap();
    }
    let last_write = Instant::now();
    let error = read.await.unwrap().expect_err("times out once writes stop");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= IDLE * 2, "writes kept the read alive");
    assert_eq!(
        last_write.elapsed(),
        IDLE,
        "counted from the last written byte"
    );
    drop(writer);
    drain.abort();
}

#[tokio::test(start_paused = true)]
async fn between_requests_the_byte_clock_never_fails_the_connection() {
    let activity = Activity::new();
    let (mut io, _peer) = pipe(IDLE, &activity);

    let waited = tokio::time::timeout(IDLE * 10, read_one(&mut io)).await;
    assert!(
        waited.is_err(),
        "no request open: the connection-level clock decides, not this one"
    );
}

/// After a quiet spell between requests (longer than `idle`), the next request's head restarts
/// the byte clock: the request gets a full `idle`, never a deadline left over from the spell.
#[tokio::test(start_paused = true)]
async fn a_request_after_a_quiet_spell_gets_a_full_idle_period() {
    let activity = Activity::new();
    let (mut io, mut peer) = pipe(IDLE, &activity);
    let quiet = tokio::time::timeout(IDLE * 3 + IDLE / 2, read_one(&mut io)).await;
    assert!(
        quiet.is_err(),
        "quiet between requests is not this clock's business"
    );

    peer.write_all(b"G").await.unwrap();
    assert_eq!(
        read_one(&mut io).await.unwrap(),
        1,
        "the next request's head"
    );
    let head = Instant::now();
    let _request = activity.open_request();
    let error = read_one(&mut io)
        .await
        .expect_err("the request then stalls");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(head.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_is_held_to_the_byte_clock() {
    let activity = Activity::new();
    activity.became_tunnel();
    let (mut io, _peer) = pipe(IDLE, &activity);
    let start = Instant::now();
    let error = read_one(&mut io).await.expect_err("a silent tunnel ends");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn zero_idle_disables_the_byte_clock() {
    let activity = Activity::new();
    let _request = activity.open_request();
    let (mut io, _peer) = pipe(Duration::ZERO, &activity);
    let waited = tokio::time::timeout(Duration::from_secs(30 * 24 * 3600), read_one(&mut io)).await;
    assert!(waited.is_err(), "still waiting after 30 days");
}

#[tokio::test(start_paused = true)]
async fn the_lease_lives_exactly_as_long_as_the_io() {
    let activity = Activity::new();
    let live = Arc::new(AtomicUsize::new(0));
    let (ours, _theirs) = duplex(64);
    let io = IdleTimeout::new(ours, IDLE, activity, Lease::boxed(&live));
    assert_eq!(live.load(Ordering::SeqCst), 1);
    let (reader, writer) = tokio::io::split(io);
    drop(reader);
    assert_eq!(
        live.load(Ordering::SeqCst),
        1,
        "half of the IO still holds it"
    );
    drop(writer);
    assert_eq!(live.load(Ordering::SeqCst), 0, "released with the IO");
}

#[tokio::test(start_paused = true)]
async fn a_closed_peer_is_end_of_file_not_a_timeout() {
    let activity = Activity::new();
    let _request = activity.open_request();
    let (mut io, peer) = pipe(IDLE, &activity);
    drop(peer);
    assert_eq!(read_one(&mut io).await.unwrap(), 0);
}
