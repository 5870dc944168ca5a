//! [`AccessLog`]: takes finished access lines off the request path. A request hands its line to a
//! bounded channel and goes on; one writer thread gathers what is queued into large writes on
//! stdout. When the queue is full (stdout blocked or far too slow) the line is dropped and counted
//! in `gatehouse_access_log_dropped_total`: a request never waits for the log.
//!
//! The writer is a plain thread, not a task: `write(2)` on a pipe or a terminal blocks, and a
//! blocked tokio worker would stall every connection it serves. It starts with the first line, so
//! a gateway whose access log is off (or a test harness without a subscriber) has no thread.
//!
//! Batching: after a write that did not fill a batch the writer lingers up to [`LINGER`] before
//! draining again, so it wakes at most ten times a second while traffic is light, and a request
//! almost never pays for waking it (a futex wake is a syscall). Once [`WAKE_LINES`] lines wait,
//! the request that queued the last of them cuts the linger short, so a busy gateway (many cores,
//! hundreds of thousands of requests a second) never fills the queue while the writer sleeps.
//! On an idle gateway a line is written within about `LINGER` (Envoy's file access log flushes
//! once a second); shutdown wakes the writer and waits for every queued line.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Lines the queue holds before new ones are dropped (a few MB at typical line lengths; about a
/// second of a busy gateway's traffic if stdout stalls).
pub(crate) const QUEUE_LINES: usize = 16 * 1024;

/// How many bytes the writer gathers into one write.
const BATCH_BYTES: usize = 256 * 1024;

/// How long the writer waits after a write before gathering the next batch, unless
/// [`WAKE_LINES`] lines are waiting sooner. Each wake is a context switch on a core the requests
/// share, and a write to a file in a watched folder wakes the runtime too (BENCHMARKS.md,
/// "Access-log linger"); a line still reaches stdout within about a tenth of a second.
const LINGER: Duration = Duration::from_millis(100);

/// Queued lines that end the writer's linger early: an eighth of the queue, so a burst has room
/// for seven times as many lines again while the writer wakes and drains.
const WAKE_LINES: u64 = (QUEUE_LINES / 8) as u64;

/// Where lines go: stdout, or an injected writer.
type Sink = Box<dyn Write + Send>;

/// The access log's queue, writer thread and counters. One per gateway; survives reloads.
pub struct AccessLog {
    /// Created with the first line; `None` if the thread could not be started.
    queue: OnceLock<Option<Writer>>,
    /// How many lines the queue holds.
    capacity: usize,
    /// The writer's pause between batches and the queue length that ends it early.
    pace: Pace,
    /// The writer's output until the thread takes it.
    sink: Mutex<Option<Sink>>,
    progress: Arc<Progress>,
}

/// The running writer: its queue, and its thread to wake from a linger.
struct Writer {
    lines: SyncSender<Vec<u8>>,
    thread: Thread,
}

/// How the writer paces itself: [`LINGER`] and [`WAKE_LINES`], shorter in tests.
#[derive(Debug, Clone, Copy)]
struct Pace {
    linger: Duration,
    wake_lines: u64,
}

/// What the writer has done, for [`AccessLog::flush`] and the dropped-lines metric.
#[derive(Debug, Default)]
struct Progress {
    /// Lines accepted into the queue.
    queued: AtomicU64,
    /// Lines the writer has taken from the queue.
    taken: AtomicU64,
    /// Lines taken from the queue and written (or lost to a failed write).
    done: Mutex<u64>,
    /// Signalled whenever `done` grows.
    advanced: Condvar,
    /// Lines never written: the queue was full, or the write failed.
    dropped: AtomicU64,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("started", &self.queue.get().is_some())
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl Default for AccessLog {
    fn default() -> Self {
        Self::stdout()
    }
}

impl AccessLog {
    /// Lines go to stdout.
    pub(crate) fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// Lines go to `sink` (tests, benches).
    pub fn to_writer(sink: Box<dyn Write + Send>) -> Self {
        let pace = Pace {
            linger: LINGER,
            wake_lines: WAKE_LINES,
        };
        Self::with_capacity(sink, QUEUE_LINES, pace)
    }

    fn with_capacity(sink: Sink, capacity: usize, pace: Pace) -> Self {
        Self {
            queue: OnceLock::new(),
            capacity,
            pace,
            sink: Mutex::new(Some(sink)),
            progress: Arc::default(),
        }
    }

    /// Queues one finished line; never blocks. A full queue drops the line and counts it. The
    /// line that brings the queue to `wake_lines` wakes a lingering writer.
    pub fn send(&self, line: Vec<u8>) {
        let Some(writer) = self.queue.get_or_init(|| self.start()) else {
            self.progress.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if writer.lines.try_send(line).is_err() {
            self.progress.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let queued = self.progress.queued.fetch_add(1, Ordering::Relaxed) + 1;
        let waiting = queued.saturating_sub(self.progress.taken.load(Ordering::Relaxed));
        if waiting >= self.pace.wake_lines {
            // Cheap unless the writer is parked: a thread not parked keeps the token, and its
            // next linger ends at once.
            writer.thread.unpark();
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.progress.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued before this call is written, at most `timeout`. True if
    /// everything was written. Blocks the calling thread: call it from `spawn_blocking`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.progress.queued.load(Ordering::Relaxed);
        if let Some(Some(writer)) = self.queue.get() {
            writer.thread.unpark();
        }
        let deadline = Instant::now() + timeout;
        let mut done = self
            .progress
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .progress
                .advanced
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Prometheus text for `gatehouse_access_log_dropped_total`.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP gatehouse_access_log_dropped_total Access-log lines dropped because the \
             queue to the writer was full or the write failed.\n\
             # TYPE gatehouse_access_log_dropped_total counter\n\
             gatehouse_access_log_dropped_total {}",
            self.dropped()
        );
    }

    /// Starts the writer thread with the sink; `None` (every line dropped) if it cannot start.
    fn start(&self) -> Option<Writer> {
        let sink = self
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let (queue, lines) = sync_channel(self.capacity);
        let progress = self.progress.clone();
        let linger = self.pace.linger;
        let thread = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_batches(&lines, sink, &progress, linger))
            .ok()?;
        Some(Writer {
            lines: queue,
            thread: thread.thread().clone(),
        })
    }
}

/// The writer thread: gathers queued lines into one buffer, writes it, lingers, repeats; ends
/// when the [`AccessLog`] is dropped and the queue is empty.
fn write_batches(lines: &Receiver<Vec<u8>>, mut sink: Sink, progress: &Progress, linger: Duration) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut next = lines.recv().ok();
    while let Some(first) = next {
        batch.extend_from_slice(&first);
        let (count, open) = gather(lines, &mut batch);
        progress.taken.fetch_add(count + 1, Ordering::Relaxed);
        write_out(&mut sink, &batch, count + 1, progress);
        let full = batch.len() >= BATCH_BYTES;
        batch.clear();
        if !open {
            return;
        }
        // A full batch means more is waiting: write on without pausing. A linger ends early
        // when a request finds `wake_lines` waiting, or a flush asks.
        if !full {
            std::thread::park_timeout(linger);
        }
        next = match lines.try_recv() {
            Ok(line) => Some(line),
            // Nothing came while lingering: block until the next line.
            Err(TryRecvError::Empty) => lines.recv().ok(),
            Err(TryRecvError::Disconnected) => None,
        };
    }
}

/// Appends queued lines to `batch` until it is full or the queue is empty. Returns how many were
/// added and whether the queue is still open.
fn gather(lines: &Receiver<Vec<u8>>, batch: &mut Vec<u8>) -> (u64, bool) {
    let mut count = 0;
    while batch.len() < BATCH_BYTES {
        match lines.try_recv() {
            Ok(line) => {
                batch.extend_from_slice(&line);
                count += 1;
            }
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => return (count, false),
        }
    }
    (count, true)
}

/// One `write_all` of a batch, then the progress update that [`AccessLog::flush`] waits for.
fn write_out(sink: &mut Sink, batch: &[u8], count: u64, progress: &Progress) {
    let written = sink.write_all(batch).and_then(|()| sink.flush());
    if written.is_err() {
        // stdout closed or failing: the lines are lost, and say so in the metric.
        progress.dropped.fetch_add(count, Ordering::Relaxed);
    }
    let mut done = progress.done.lock().unwrap_or_else(PoisonError::into_inner);
    *done += count;
    progress.advanced.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose bytes the test can read, optionally blocked until released.
    #[derive(Clone, Default)]
    struct CapturedSink {
        bytes: Arc<Mutex<Vec<u8>>>,
        /// Signalled after every write.
        written: Arc<Condvar>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl CapturedSink {
        fn blocked() -> Self {
            let shared = Self::default();
            *shared.gate.0.lock().unwrap() = true;
            shared
        }

        fn release(&self) {
            *self.gate.0.lock().unwrap() = false;
            self.gate.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }

        /// Waits until `lines` lines were written, at most ten seconds; true if they were.
        fn wait_for_lines(&self, lines: usize) -> bool {
            let written = self.bytes.lock().unwrap();
            let (_written, waited) = self
                .written
                .wait_timeout_while(written, Duration::from_secs(10), |bytes| {
                    bytes.iter().filter(|&&b| b == b'\n').count() < lines
                })
                .unwrap();
            !waited.timed_out()
        }
    }

    /// The production pace, for tests that are not about pacing.
    const PACE: Pace = Pace {
        linger: LINGER,
        wake_lines: WAKE_LINES,
    };

    /// A writer that would linger an hour unless woken.
    fn lingering_an_hour(sink: &CapturedSink, wake_lines: u64) -> AccessLog {
        let pace = Pace {
            linger: Duration::from_secs(3600),
            wake_lines,
        };
        AccessLog::with_capacity(Box::new(sink.clone()), 64, pace)
    }

    impl Write for CapturedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cvar) = &*self.gate;
            let _open = cvar
                .wait_while(lock.lock().unwrap(), |blocked| *blocked)
                .unwrap();
            self.bytes.lock().unwrap().extend_from_slice(buf);
            self.written.notify_all();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_whole_and_in_order_and_flush_waits_for_them() {
        let sink = CapturedSink::default();
        let log = AccessLog::to_writer(Box::new(sink.clone()));
        for n in 0..1000 {
            log.send(format!("{{\"n\":{n}}}\n").into_bytes());
        }
        assert!(log.flush(Duration::from_secs(10)), "flushed in time");
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("{{\"n\":{n}}}"));
        }
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_blocked_sink_drops_and_counts_instead_of_blocking() {
        let sink = CapturedSink::blocked();
        let capacity = 8;
        let log = AccessLog::with_capacity(Box::new(sink.clone()), capacity, PACE);
        let extra = 5;
        let started = Instant::now();
        // A line of a whole batch's size: the writer holds one line at a time (blocked in its
        // write), the queue `capacity` more; the rest are dropped.
        let mut line = vec![b' '; BATCH_BYTES];
        line.push(b'\n');
        for _ in 0..capacity + 1 + extra {
            log.send(line.clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sending never waits for the sink"
        );
        let dropped = log.dropped();
        assert!(
            (extra as u64..=extra as u64 + 1).contains(&dropped),
            "dropped {dropped}"
        );
        assert!(!log.flush(Duration::from_millis(10)), "nothing written yet");
        sink.release();
        assert!(log.flush(Duration::from_secs(10)));
        let written = sink.text().lines().count() as u64;
        assert_eq!(written + dropped, (capacity + 1 + extra) as u64);
        let mut metrics = String::new();
        log.render(&mut metrics);
        assert!(
            metrics
                .lines()
                .any(|l| l == format!("gatehouse_access_log_dropped_total {dropped}")),
            "{metrics}"
        );
    }

    #[test]
    fn the_line_that_fills_wake_lines_ends_the_writers_linger() {
        let sink = CapturedSink::default();
        let log = lingering_an_hour(&sink, 4);
        log.send(b"first\n".to_vec());
        assert!(sink.wait_for_lines(1), "the first line is written at once");
        // The writer now lingers for an hour; the fourth waiting line must wake it.
        for n in 0..4 {
            log.send(format!("{n}\n").into_bytes());
        }
        assert!(sink.wait_for_lines(5), "woken by the fourth waiting line");
        assert_eq!(sink.text(), "first\n0\n1\n2\n3\n");
    }

    #[test]
    fn flush_ends_the_writers_linger() {
        let sink = CapturedSink::default();
        let log = lingering_an_hour(&sink, 1000);
        log.send(b"first\n".to_vec());
        assert!(sink.wait_for_lines(1), "the first line is written at once");
        log.send(b"second\n".to_vec());
        assert!(log.flush(Duration::from_secs(10)), "flush woke the writer");
        assert_eq!(sink.text(), "first\nsecond\n");
    }

    #[test]
    fn no_thread_starts_before_the_first_line() {
        let log = AccessLog::to_writer(Box::new(CapturedSink::default()));
        assert!(log.queue.get().is_none());
        assert!(
            log.flush(Duration::ZERO),
            "nothing queued, nothing to wait for"
        );
    }
}
