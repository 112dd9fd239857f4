//! The lean load generator: one thread, one `epoll` (through mio), every connection registered
//! for read readiness only, requests written without waiting, as a hand-written epoll client
//! does. An ordinary tokio client registers read and write readiness, so after every request
//! its epoll reports the socket writable and its runtime wakes for nothing; on the CPU it
//! shares with the server, that cost lands on every server measured. Write readiness is asked
//! for only while a write is left over (a full socket buffer), as the server does.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use localipc_core::FrameCodec;
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use tokio_util::codec::Decoder;

use crate::measure::{LoadConfig, Shared, Tally, check_reply, counter};

/// How long the event loop waits for any event before it calls the run stuck.
const STUCK: Duration = Duration::from_secs(10);

/// One connection of the lean client (a series of them with `oneshot`).
struct Slot {
    conn: u64,
    stream: Option<UnixStream>,
    codec: FrameCodec,
    /// Counters of the requests in flight, oldest first, with the time each was sent.
    in_flight: VecDeque<(u64, Instant)>,
    wbuf: BytesMut,
    rbuf: BytesMut,
    seq: u64,
    /// Whether write readiness is registered (a write is left over).
    writing: bool,
    /// No more requests to send: the run's budget is spent.
    spent: bool,
}

/// Runs the load with the lean client in the calling thread.
pub(crate) fn run(config: &LoadConfig, shared: &Shared) -> io::Result<(Histogram<u64>, Tally)> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut hist = crate::measure::new_histogram();
    let mut tally = Tally::default();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut slots: Vec<Slot> = (0..config.conns)
        .map(|_| Slot {
            conn: shared.next_conn(),
            stream: None,
            codec: FrameCodec::new(config.wire_framing(), config.size.max(1 << 20)),
            in_flight: VecDeque::with_capacity(config.pipeline),
            wbuf: BytesMut::with_capacity(config.pipeline * (config.size + 5)),
            rbuf: BytesMut::with_capacity(64 * 1024),
            seq: 0,
            writing: false,
            spent: false,
        })
        .collect();
    let mut open = 0;
    for (i, slot) in slots.iter_mut().enumerate() {
        if slot.start(config, shared, &poll, Token(i), &mut tally) {
            open += 1;
        }
    }
    while open > 0 {
        poll.poll(&mut events, Some(STUCK))?;
        if events.is_empty() {
            // Nothing moved for a long time: count what is outstanding as lost.
            for slot in &mut slots {
                if slot.stream.take().is_some() {
                    tally.io_errors += 1;
                    tally.lost += slot.in_flight.len() as u64;
                }
            }
            break;
        }
        for event in events.iter() {
            let i = event.token().0;
            let slot = &mut slots[i];
            if slot.stream.is_none() {
                continue;
            }
            let alive = slot
                .on_event(config, &poll, Token(i), &mut scratch, &mut hist, &mut tally)
                .and_then(|more| {
                    Ok(more && slot.next(config, shared, &poll, Token(i), &mut tally)?)
                });
            match alive {
                Ok(true) => {}
                Ok(false) => {
                    slot.close(&poll);
                    open -= 1;
                }
                Err(_) => {
                    tally.io_errors += 1;
                    tally.lost += slot.in_flight.len() as u64;
                    slot.in_flight.clear();
                    slot.close(&poll);
                    open -= 1;
                }
            }
        }
    }
    Ok((hist, tally))
}

impl Slot {
    /// Connects (again, with `oneshot`) and sends the first requests; false if there is
    /// nothing to do or the connection failed (counted).
    fn start(
        &mut self,
        config: &LoadConfig,
        shared: &Shared,
        poll: &Poll,
        token: Token,
        tally: &mut Tally,
    ) -> bool {
        if !self.top_up(config, shared) {
            return false;
        }
        let started = Instant::now();
        for entry in &mut self.in_flight {
            entry.1 = started;
        }
        let mut stream = match UnixStream::connect(&config.socket) {
            Ok(s) => s,
            Err(_) => {
                tally.io_errors += 1;
                tally.lost += self.in_flight.len() as u64;
                self.in_flight.clear();
                self.wbuf.clear();
                return false;
            }
        };
        if poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            tally.io_errors += 1;
            return false;
        }
        self.stream = Some(stream);
        self.writing = false;
        self.send(poll, token).is_ok()
    }

    /// After a reply: with `oneshot`, closes and starts over; otherwise tops up the pipeline.
    /// False when the slot is done.
    fn next(
        &mut self,
        config: &LoadConfig,
        shared: &Shared,
        poll: &Poll,
        token: Token,
        tally: &mut Tally,
    ) -> io::Result<bool> {
        if config.oneshot {
            if !self.in_flight.is_empty() {
                return Ok(true);
            }
            self.close(poll);
            return Ok(self.start(config, shared, poll, token, tally));
        }
        if self.top_up(config, shared) {
            self.send(poll, token)?;
        }
        Ok(!self.in_flight.is_empty())
    }

    /// Queues requests up to the pipeline depth (one with `oneshot`); whether any is in flight.
    fn top_up(&mut self, config: &LoadConfig, shared: &Shared) -> bool {
        let depth = if config.oneshot { 1 } else { config.pipeline };
        let now = Instant::now();
        while !self.spent && self.in_flight.len() < depth {
            if !shared.take() {
                self.spent = true;
                break;
            }
            let c = counter(self.conn, self.seq);
            self.seq += 1;
            config.put_request(&mut self.wbuf, c);
            self.in_flight.push_back((c, now));
        }
        !self.in_flight.is_empty()
    }

    /// Writes what the socket takes; asks for write readiness while something is left.
    fn send(&mut self, poll: &Poll, token: Token) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while !self.wbuf.is_empty() {
            match stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.wbuf.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let want = !self.wbuf.is_empty();
        if want != self.writing {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            poll.registry().reregister(stream, token, interest)?;
            self.writing = want;
        }
        Ok(())
    }

    /// Handles readiness: writes what is left, reads everything there (edge-triggered), checks
    /// the replies. False when the server closed.
    fn on_event(
        &mut self,
        config: &LoadConfig,
        poll: &Poll,
        token: Token,
        scratch: &mut [u8],
        hist: &mut Histogram<u64>,
        tally: &mut Tally,
    ) -> io::Result<bool> {
        self.send(poll, token)?;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(false);
        };
        let mut open = true;
        loop {
            match stream.read(scratch) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => self.rbuf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        loop {
            let reply = match self.codec.decode(&mut self.rbuf) {
                Ok(Some(reply)) => reply,
                Ok(None) => break,
                Err(_) => {
                    tally.corrupted += 1;
                    return Err(io::ErrorKind::InvalidData.into());
                }
            };
            check_reply(config, &mut self.in_flight, &reply, now, hist, tally);
        }
        if !open && !self.in_flight.is_empty() {
            tally.io_errors += 1;
            tally.lost += self.in_flight.len() as u64;
            self.in_flight.clear();
        }
        Ok(open)
    }

    fn close(&mut self, poll: &Poll) {
        if let Some(mut stream) = self.stream.take() {
            let _ = poll.registry().deregister(&mut stream);
        }
        self.rbuf.clear();
        self.wbuf.clear();
    }
}
