//! The SPSC ring of variable-length frames: [`Producer`] and [`Consumer`].
//! (The model is documented in the crate docs, section "The ring".)

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::frame::{
    check_header, frame_size, header_words, FrameError, Slot, FRAME_HEADER_LEN, KIND_DATA, KIND_PAD,
};
use crate::header::Control;
use crate::peer::PeerWatch;
use crate::region::Region;
use crate::sync::Ordering;
use crate::wake::{futex, spin, WaitStrategy};

/// Where a ring lives inside a region; produced by [`Region`] after the ring
/// table entry was validated.
pub(crate) struct RingPtrs {
    /// The control block: CONTROL_SIZE bytes, 64-byte aligned.
    pub control: *mut Control,
    /// The first of `capacity` data bytes.
    pub data: *mut u8,
    /// Data bytes; a power of two in MIN_CAPACITY..=MAX_CAPACITY.
    pub capacity: u64,
}

/// Why a frame could not be reserved or pushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingPushError {
    /// The frame can never fit: its payload exceeds the ring's largest frame.
    #[error("frame of {len} bytes exceeds the ring's largest frame of {max} bytes")]
    TooLarge {
        /// Payload bytes asked for.
        len: usize,
        /// Largest payload the ring carries.
        max: usize,
    },
    /// No room now (only from the `try_` methods).
    #[error("ring is full")]
    Full,
    /// No room before the timeout.
    #[error("no room in the ring after waiting {waited:?}")]
    Timeout {
        /// How long we waited.
        waited: Duration,
    },
    /// The consumer closed its end.
    #[error("the consumer closed the ring")]
    Closed,
    /// The consumer's process is gone (per the endpoint's [`PeerWatch`]).
    #[error("the consumer's process died")]
    PeerDead,
    /// The consumer corrupted the ring.
    #[error("ring corrupted by the consumer")]
    Corrupt(#[from] FrameError),
}

/// Why no frame could be received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingRecvError {
    /// No frame arrived before the timeout.
    #[error("no frame arrived within {waited:?}")]
    Timeout {
        /// How long we waited.
        waited: Duration,
    },
    /// The producer closed its end and every frame it sent was received.
    #[error("the producer closed the ring")]
    Closed,
    /// The producer's process is gone (per the endpoint's [`PeerWatch`]).
    #[error("the producer's process died")]
    PeerDead,
    /// The producer corrupted the ring.
    #[error("ring corrupted by the producer")]
    Corrupt(#[from] FrameError),
}

/// A read or write outside a frame's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access of {len} bytes at offset {offset} is outside a frame of {frame_len} bytes")]
pub struct FrameBoundsError {
    /// Offset of the access within the frame.
    pub offset: usize,
    /// Bytes accessed.
    pub len: usize,
    /// Bytes in the frame (or reserved for it).
    pub frame_len: usize,
}

enum Deadline {
    Now,
    At(Instant, Duration),
    Never,
}

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        match Instant::now().checked_add(timeout) {
            Some(at) => Deadline::At(at, timeout),
            None => Deadline::Never,
        }
    }
    /// The next slice to sleep, or None if the deadline passed.
    fn slice(&self, max: Duration) -> Option<Duration> {
        match *self {
            Deadline::Now => None,
            Deadline::Never => Some(max),
            Deadline::At(at, _) => {
                let left = at.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(max))
            }
        }
    }
    fn waited(&self) -> Duration {
        match *self {
            Deadline::At(_, t) => t,
            _ => Duration::MAX,
        }
    }
}

/// Shared plumbing of both endpoints.
struct Endpoint {
    /// Keeps the mapping alive for as long as the pointers below are used.
    _region: Region,
    control: NonNull<Control>,
    data: *mut u8,
    capacity: u64,
    wait: WaitStrategy,
    /// How long this end's recent waits took: its next spin's budget.
    learned: spin::Learned,
    watch: Option<Box<dyn PeerWatch>>,
    broken: Option<FrameError>,
    /// Pending bytes that trigger a publication on their own: a quarter of
    /// the ring. (Measured: publishing every 16 KiB instead was slower for
    /// both 64 B and 64 KiB frames.)
    publish_batch: u64,
}

impl Endpoint {
    fn new(region: Region, ptrs: RingPtrs) -> Endpoint {
        debug_assert!(ptrs.capacity.is_power_of_two());
        Endpoint {
            _region: region,
            control: NonNull::new(ptrs.control).expect("region base is never null"),
            data: ptrs.data,
            capacity: ptrs.capacity,
            wait: WaitStrategy::DEFAULT,
            learned: spin::Learned::default(),
            watch: None,
            broken: None,
            publish_batch: ptrs.capacity / 4,
        }
    }

    /// Records a wait that began at `started` and just ended, for the
    /// next spin's budget.
    fn learn(&mut self, started: Instant) {
        self.learned.record(&self.wait, started.elapsed());
    }

    #[inline]
    fn ctl(&self) -> &Control {
        // SAFETY: `control` points at a control block inside the region's
        // mapping, which `_region` keeps alive. `Control` is made of atomics
        // only, so a shared reference to memory another process writes is
        // sound: every access is an atomic operation.
        unsafe { self.control.as_ref() }
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.capacity - 1
    }

    fn peer_alive(&mut self) -> bool {
        self.watch.as_mut().is_none_or(|w| w.is_alive())
    }
}

/// The producing end of a ring. See [the ring](crate#the-ring).
///
/// A `Producer` can be moved to another thread but not shared between
/// threads: a ring has exactly one producer.
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<coil_ipc::Producer>();
/// ```
pub struct Producer {
    end: Endpoint,
    /// Bytes committed so far, published or not. `tail <= head <= tail + capacity`.
    head: u64,
    /// The last head value stored into the control block.
    published: u64,
    /// The consumer's tail as last read and checked.
    tail: u64,
    closed: bool,
}

// SAFETY: the raw pointers refer to the region kept alive by `end._region`
// (an `Arc`), and this producer is the only writer of the ring's producer
// line and of unpublished data bytes; moving it to another thread moves that
// role with it.
unsafe impl Send for Producer {}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.end.capacity)
            .field("head", &self.head)
            .field("published", &self.published)
            .field("tail", &self.tail)
            .finish()
    }
}

impl Producer {
    pub(crate) fn new(region: Region, ptrs: RingPtrs) -> Producer {
        let end = Endpoint::new(region, ptrs);
        // A producer attaching to a ring that is already in use (reopened in
        // another process) starts from the published head.
        let head = end.ctl().p.head.load(Ordering::Acquire);
        let tail = end.ctl().c.tail.load(Ordering::Acquire);
        let mut p = Producer {
            end,
            head,
            published: head,
            tail,
            closed: false,
        };
        if head % 8 != 0 || tail > head || head - tail > p.end.capacity {
            p.end.broken = Some(FrameError::CounterOutOfRange {
                counter: "tail",
                value: tail,
                min: head.saturating_sub(p.end.capacity),
                max: head,
            });
        }
        p
    }

    /// The ring's data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.end.capacity as usize
    }

    /// The largest payload one frame can carry: capacity minus the 8-byte
    /// frame header.
    pub fn max_frame_len(&self) -> usize {
        crate::max_frame_len(self.capacity())
    }

    /// Sets how this end waits for room.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.end.wait = wait;
    }

    /// Sets how this end learns that the consumer's process died while it
    /// waits for room.
    pub fn set_peer_watch(&mut self, watch: impl PeerWatch + 'static) {
        self.end.watch = Some(Box::new(watch));
    }

    /// Reserves a frame of up to `len` payload bytes, waiting up to
    /// `timeout` for room.
    ///
    /// # Errors
    ///
    /// `TooLarge` if `len` exceeds [`Producer::max_frame_len`] (at once,
    /// never a hang); `Timeout`, `Closed`, `PeerDead` or `Corrupt` if no
    /// room becomes available.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let region = coil_ipc::Region::create_private(&[1024])?;
    /// let mut tx = region.producer(0)?;
    /// let mut w = tx.reserve_timeout(16, Duration::from_secs(1))?;
    /// w.write_at(0, b"0123456789abcdef")?;
    /// w.commit(1);
    /// tx.flush();
    /// assert!(tx.reserve_timeout(2000, Duration::ZERO).is_err());
    /// # Ok(()) }
    /// ```
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<FrameWriter<'_>, RingPushError> {
        self.reserve_inner(len, Deadline::after(timeout))
    }

    /// Reserves a frame of up to `len` payload bytes if there is room now.
    ///
    /// # Errors
    ///
    /// `Full` if there is no room now; otherwise as [`Producer::reserve_timeout`].
    pub fn try_reserve(&mut self, len: usize) -> Result<FrameWriter<'_>, RingPushError> {
        self.reserve_inner(len, Deadline::Now)
    }

    /// Copies `payload` into a new frame tagged `tag` and publishes it, if
    /// there is room now.
    ///
    /// # Errors
    ///
    /// As [`Producer::try_reserve`].
    pub fn try_push(&mut self, tag: u16, payload: &[u8]) -> Result<(), RingPushError> {
        self.push_inner(tag, payload, Deadline::Now)
    }

    /// Copies `payload` into a new frame tagged `tag` and publishes it,
    /// waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Producer::reserve_timeout`].
    pub fn push_timeout(
        &mut self,
        tag: u16,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), RingPushError> {
        self.push_inner(tag, payload, Deadline::after(timeout))
    }

    fn push_inner(
        &mut self,
        tag: u16,
        payload: &[u8],
        deadline: Deadline,
    ) -> Result<(), RingPushError> {
        let mut w = self.reserve_inner(payload.len(), deadline)?;
        w.put_unchecked_len(payload);
        w.commit(tag);
        self.flush();
        Ok(())
    }

    /// Publishes every committed frame and wakes the consumer if it is
    /// parked. Cheap when nothing is pending.
    pub fn flush(&mut self) {
        if self.published == self.head {
            return;
        }
        self.published = self.head;
        let ctl = self.end.ctl();
        // SYNC POINT: Release publishes the frame bytes and headers written
        // below `head`; the consumer Acquire-loads head before reading them.
        ctl.p.head.store(self.head, Ordering::Release);
        futex::notify(&ctl.p.data_bell, &ctl.c.consumer_waiting);
    }

    /// Whether the consumer has closed its end (a fresh read).
    pub fn is_peer_closed(&self) -> bool {
        self.end.ctl().c.consumer_closed.load(Ordering::Acquire) != 0
    }

    /// Publishes what is pending and closes this end: the consumer receives
    /// every frame committed so far, then `Closed`. Also done on drop.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.flush();
        let ctl = self.end.ctl();
        // SYNC POINT: Release orders the flush above before the flag; the
        // consumer Acquire-loads the flag, then re-reads head.
        ctl.p.producer_closed.store(1, Ordering::Release);
        futex::ring(&ctl.p.data_bell);
    }

    fn free(&self) -> u64 {
        self.end.capacity - (self.head - self.tail)
    }

    /// Re-reads the consumer's tail and checks it: it may only move forward,
    /// and never past what we published.
    fn refresh_tail(&mut self) -> Result<(), FrameError> {
        // SYNC POINT: Acquire pairs with the consumer's Release store of
        // tail: it has finished reading the bytes below it.
        let t = self.end.ctl().c.tail.load(Ordering::Acquire);
        if t < self.tail || t > self.published || t % 8 != 0 {
            let err = FrameError::CounterOutOfRange {
                counter: "tail",
                value: t,
                min: self.tail,
                max: self.published,
            };
            self.end.broken = Some(err.clone());
            return Err(err);
        }
        self.tail = t;
        Ok(())
    }

    fn wait_for_room(&mut self, need: u64, deadline: &Deadline) -> Result<(), RingPushError> {
        if self.free() >= need {
            return Ok(());
        }
        self.refresh_tail()?;
        if self.free() >= need {
            return Ok(());
        }
        if matches!(deadline, Deadline::Now) {
            return if self.is_peer_closed() {
                Err(RingPushError::Closed)
            } else {
                Err(RingPushError::Full)
            };
        }
        // Hand the consumer what we have before we wait for it.
        self.flush();
        let started = Instant::now();
        let spin_for = self.end.learned.budget(&self.end.wait);
        let mut bad = None;
        let ready = spin::spin_until(spin_for, || self.check_room(need, &mut bad));
        if let Some(e) = bad {
            return Err(e.into());
        }
        if ready {
            self.end.learn(started);
            return self.room_or_closed(need);
        }
        loop {
            let Some(slice) = deadline.slice(self.end.wait.park_slice) else {
                return Err(RingPushError::Timeout {
                    waited: deadline.waited(),
                });
            };
            let ctl = self.end.control;
            // SAFETY: as in `Endpoint::ctl`; a copy of the pointer so that the
            // closure below can borrow `self` mutably.
            let ctl = unsafe { ctl.as_ref() };
            let mut bad = None;
            futex::park(&ctl.c.space_bell, &ctl.p.producer_waiting, slice, || {
                self.check_room(need, &mut bad)
            });
            if let Some(e) = bad {
                return Err(e.into());
            }
            if self.free() >= need || self.is_peer_closed() {
                self.end.learn(started);
                return self.room_or_closed(need);
            }
            if !self.end.peer_alive() {
                return Err(RingPushError::PeerDead);
            }
        }
    }

    /// True once there is room or the consumer closed; records corruption.
    fn check_room(&mut self, need: u64, bad: &mut Option<FrameError>) -> bool {
        match self.refresh_tail() {
            Ok(()) => self.free() >= need || self.is_peer_closed(),
            Err(e) => {
                *bad = Some(e);
                true
            }
        }
    }

    fn room_or_closed(&self, need: u64) -> Result<(), RingPushError> {
        if self.is_peer_closed() {
            Err(RingPushError::Closed)
        } else {
            debug_assert!(self.free() >= need);
            Ok(())
        }
    }

    fn reserve_inner(
        &mut self,
        len: usize,
        deadline: Deadline,
    ) -> Result<FrameWriter<'_>, RingPushError> {
        if let Some(e) = &self.end.broken {
            return Err(e.clone().into());
        }
        if self.closed {
            return Err(RingPushError::Closed);
        }
        let max = self.max_frame_len();
        if len > max {
            return Err(RingPushError::TooLarge { len, max });
        }
        let need = frame_size(len as u64);
        let offset = self.head & self.end.mask();
        let to_end = self.end.capacity - offset;
        if need > to_end {
            // The frame would wrap: fill the rest of the data area with
            // padding the consumer skips, and start the frame at offset 0.
            self.wait_for_room(to_end, &deadline)?;
            self.write_header(
                offset,
                header_words((to_end - FRAME_HEADER_LEN as u64) as u32, 0, KIND_PAD),
            );
            self.head += to_end;
        }
        if let Err(e) = self.wait_for_room(need, &deadline) {
            // Publish any padding staged above: the consumer must skip it
            // before it can hand back the space this frame needs.
            self.flush();
            return Err(e);
        }
        let offset = self.head & self.end.mask();
        debug_assert!(offset + need <= self.end.capacity && self.free() >= need);
        Ok(FrameWriter {
            producer: self,
            offset,
            reserved: len,
            len: 0,
        })
    }

    fn write_header(&mut self, offset: u64, words: [u32; 2]) {
        debug_assert!(offset % 8 == 0 && offset + 8 <= self.end.capacity);
        // SAFETY: offset is 8-aligned and at least 8 bytes before the end of
        // the data area (frames and pads are multiples of 8 and capacity is
        // a multiple of 64); the space is free (checked by the caller), so
        // the consumer is not reading it.
        unsafe {
            self.end
                .data
                .add(offset as usize)
                .cast::<[u32; 2]>()
                .write_volatile(words)
        }
    }

    fn commit(&mut self, offset: u64, len: usize, tag: u16) {
        self.write_header(offset, header_words(len as u32, tag, KIND_DATA));
        self.head += frame_size(len as u64);
        if self.head - self.published >= self.end.publish_batch {
            self.flush();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A frame reserved in the ring and being written. Nothing is visible to the
/// consumer until [`FrameWriter::commit`]; dropping the writer abandons the
/// frame.
pub struct FrameWriter<'a> {
    producer: &'a mut Producer,
    /// Offset of the frame header in the data area.
    offset: u64,
    /// Payload bytes reserved.
    reserved: usize,
    /// Payload bytes written so far (the frame's length on commit).
    len: usize,
}

impl std::fmt::Debug for FrameWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter")
            .field("reserved", &self.reserved)
            .field("len", &self.len)
            .finish()
    }
}

impl FrameWriter<'_> {
    /// Payload bytes reserved.
    pub fn capacity(&self) -> usize {
        self.reserved
    }

    /// Payload length so far: the end of the furthest write.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still free after the current length.
    pub fn remaining(&self) -> usize {
        self.reserved - self.len
    }

    /// Copies `bytes` to `at` in the payload; the length grows to cover it.
    ///
    /// # Errors
    ///
    /// [`FrameBoundsError`] if the write would pass the reserved length.
    pub fn write_at(&mut self, at: usize, bytes: &[u8]) -> Result<(), FrameBoundsError> {
        let end = at
            .checked_add(bytes.len())
            .filter(|&e| e <= self.reserved)
            .ok_or(FrameBoundsError {
                offset: at,
                len: bytes.len(),
                frame_len: self.reserved,
            })?;
        self.copy_in(at, bytes);
        self.len = self.len.max(end);
        Ok(())
    }

    /// Appends `bytes` at the current length.
    ///
    /// # Errors
    ///
    /// [`FrameBoundsError`] if the bytes do not fit in the reservation.
    #[inline]
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), FrameBoundsError> {
        if bytes.len() > self.reserved - self.len {
            return Err(FrameBoundsError {
                offset: self.len,
                len: bytes.len(),
                frame_len: self.reserved,
            });
        }
        self.put_unchecked_len(bytes);
        Ok(())
    }

    /// Appends, the caller having checked `bytes.len() <= remaining()`.
    #[inline]
    fn put_unchecked_len(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.reserved - self.len);
        let at = self.len;
        self.copy_in(at, bytes);
        self.len += bytes.len();
    }

    #[inline]
    fn copy_in(&mut self, at: usize, bytes: &[u8]) {
        debug_assert!(at + bytes.len() <= self.reserved);
        let start = self.offset as usize + FRAME_HEADER_LEN + at;
        debug_assert!(start + bytes.len() <= self.producer.end.capacity as usize);
        // SAFETY: `at + bytes.len() <= reserved` (checked by every caller),
        // and `reserve` made sure header + reserved bytes from `offset` lie
        // inside the data area and are free, so no one reads them until
        // commit. The source is private memory; the regions cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.producer.end.data.add(start),
                bytes.len(),
            )
        }
    }

    /// Commits the frame with `tag`, making it part of the next publication
    /// (see [`Producer::flush`]).
    pub fn commit(self, tag: u16) {
        let (offset, len) = (self.offset, self.len);
        self.producer.commit(offset, len, tag);
    }
}

impl crate::codec::ByteSink for FrameWriter<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), crate::codec::EncodeError> {
        if bytes.len() > self.remaining() {
            return Err(crate::codec::EncodeError::Full {
                needed: bytes.len(),
                available: self.remaining(),
            });
        }
        self.put_unchecked_len(bytes);
        Ok(())
    }
}

/// The consuming end of a ring. See [the ring](crate#the-ring).
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<coil_ipc::Consumer>();
/// ```
pub struct Consumer {
    end: Endpoint,
    /// Bytes released so far, published or not.
    tail: u64,
    /// The last tail value stored into the control block.
    published: u64,
    /// The producer's head as last read and checked. `tail <= head <= tail + capacity`.
    head: u64,
    closed: bool,
}

// SAFETY: as for `Producer`: the region outlives the pointers, and this is
// the only consumer of the ring.
unsafe impl Send for Consumer {}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.end.capacity)
            .field("tail", &self.tail)
            .field("published", &self.published)
            .field("head", &self.head)
            .finish()
    }
}

impl Consumer {
    pub(crate) fn new(region: Region, ptrs: RingPtrs) -> Consumer {
        let end = Endpoint::new(region, ptrs);
        let tail = end.ctl().c.tail.load(Ordering::Acquire);
        let mut c = Consumer {
            end,
            tail,
            published: tail,
            head: tail,
            closed: false,
        };
        if tail % 8 != 0 {
            c.end.broken = Some(FrameError::CounterOutOfRange {
                counter: "tail",
                value: tail,
                min: 0,
                max: tail & !7,
            });
        }
        c
    }

    /// The ring's data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.end.capacity as usize
    }

    /// Sets how this end waits for frames.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.end.wait = wait;
    }

    /// Sets how this end learns that the producer's process died while it
    /// waits for frames.
    pub fn set_peer_watch(&mut self, watch: impl PeerWatch + 'static) {
        self.end.watch = Some(Box::new(watch));
    }

    /// Returns the next frame if one is committed and published.
    ///
    /// # Errors
    ///
    /// `Closed` once the producer closed and every frame was received;
    /// `Corrupt` if the producer wrote something no honest producer would.
    pub fn try_recv(&mut self) -> Result<Option<Frame<'_>>, RingRecvError> {
        match self.next_slot(Deadline::Now) {
            Ok(Some((offset, len, tag, size))) => Ok(Some(Frame {
                consumer: self,
                offset,
                len,
                tag,
                size,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the next frame.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed` (after the last frame), `PeerDead` or `Corrupt`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use coil_ipc::RingRecvError;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let region = coil_ipc::Region::create_private(&[1024])?;
    /// let (mut tx, mut rx) = (region.producer(0)?, region.consumer(0)?);
    /// tx.try_push(0, b"last words")?;
    /// drop(tx);
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(1))?.to_vec(), b"last words");
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap_err(), RingRecvError::Closed);
    /// # Ok(()) }
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Frame<'_>, RingRecvError> {
        match self.next_slot(Deadline::after(timeout))? {
            Some((offset, len, tag, size)) => Ok(Frame {
                consumer: self,
                offset,
                len,
                tag,
                size,
            }),
            None => unreachable!("a waiting receive returns a frame or an error"),
        }
    }

    /// Publishes every released frame's space to the producer and wakes it
    /// if it is parked. Cheap when nothing is pending.
    pub fn flush(&mut self) {
        if self.published == self.tail {
            return;
        }
        self.published = self.tail;
        let ctl = self.end.ctl();
        // SYNC POINT: Release hands the space below `tail` back; we have
        // finished reading it. The producer Acquire-loads tail.
        ctl.c.tail.store(self.tail, Ordering::Release);
        futex::notify(&ctl.c.space_bell, &ctl.p.producer_waiting);
    }

    /// Whether the producer has closed its end (a fresh read). Frames it
    /// committed before closing may still be waiting.
    pub fn is_peer_closed(&self) -> bool {
        self.end.ctl().p.producer_closed.load(Ordering::Acquire) != 0
    }

    /// Closes this end: the producer's next wait for room fails with
    /// `Closed`. Also done on drop.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.flush();
        let ctl = self.end.ctl();
        // SYNC POINT: Release; the producer Acquire-loads the flag.
        ctl.c.consumer_closed.store(1, Ordering::Release);
        futex::ring(&ctl.c.space_bell);
    }

    /// Re-reads the producer's head and checks it: forward only, at most one
    /// capacity ahead of our tail, 8-byte aligned.
    fn refresh_head(&mut self) -> Result<(), FrameError> {
        // SYNC POINT: Acquire pairs with the producer's Release store of
        // head: the frames below it are fully written.
        let h = self.end.ctl().p.head.load(Ordering::Acquire);
        let max = self.tail + self.end.capacity;
        if h < self.head || h > max || h % 8 != 0 {
            let err = FrameError::CounterOutOfRange {
                counter: "head",
                value: h,
                min: self.head,
                max,
            };
            self.end.broken = Some(err.clone());
            return Err(err);
        }
        self.head = h;
        Ok(())
    }

    /// True once data arrived or the producer closed; records corruption.
    fn check_data(&mut self, bad: &mut Option<FrameError>) -> bool {
        match self.refresh_head() {
            Ok(()) => self.head != self.tail || self.is_peer_closed(),
            Err(e) => {
                *bad = Some(e);
                true
            }
        }
    }

    fn wait_for_data(&mut self, deadline: &Deadline) -> Result<bool, RingRecvError> {
        if self.head != self.tail {
            return Ok(true);
        }
        self.refresh_head()?;
        if self.head != self.tail {
            return Ok(true);
        }
        if self.is_peer_closed() {
            // The producer flushes before it sets the flag: one more look.
            self.refresh_head()?;
            return if self.head != self.tail {
                Ok(true)
            } else {
                Err(RingRecvError::Closed)
            };
        }
        if matches!(deadline, Deadline::Now) {
            // Nothing to read: a good moment to hand back space.
            self.flush();
            return Ok(false);
        }
        self.flush();
        let started = Instant::now();
        let mut bad = None;
        let spin_for = self.end.learned.budget(&self.end.wait);
        let mut ready = spin::spin_until(spin_for, || self.check_data(&mut bad));
        loop {
            if let Some(e) = bad.take() {
                return Err(e.into());
            }
            if ready {
                self.end.learn(started);
                if self.head != self.tail {
                    return Ok(true);
                }
                self.refresh_head()?;
                return if self.head != self.tail {
                    Ok(true)
                } else {
                    Err(RingRecvError::Closed)
                };
            }
            if !self.end.peer_alive() {
                return Err(RingRecvError::PeerDead);
            }
            let Some(slice) = deadline.slice(self.end.wait.park_slice) else {
                return Err(RingRecvError::Timeout {
                    waited: deadline.waited(),
                });
            };
            let ctl = self.end.control;
            // SAFETY: as in `Endpoint::ctl`; a copy of the pointer so that the
            // closure below can borrow `self` mutably.
            let ctl = unsafe { ctl.as_ref() };
            futex::park(&ctl.p.data_bell, &ctl.c.consumer_waiting, slice, || {
                self.check_data(&mut bad)
            });
            ready = bad.is_some() || self.check_data(&mut bad);
        }
    }

    /// Finds the next data frame: (offset, len, tag, size).
    fn next_slot(
        &mut self,
        deadline: Deadline,
    ) -> Result<Option<(u64, usize, u16, u64)>, RingRecvError> {
        if let Some(e) = &self.end.broken {
            return Err(e.clone().into());
        }
        loop {
            if !self.wait_for_data(&deadline)? {
                return Ok(None);
            }
            let offset = self.tail & self.end.mask();
            debug_assert!(offset % 8 == 0 && self.head - self.tail <= self.end.capacity);
            // SAFETY: offset is 8-aligned and inside the data area, with at
            // least 8 bytes to its end (everything is a multiple of 8 and the
            // capacity of 64); the header is read once, volatile, into a local.
            let raw = unsafe {
                self.end
                    .data
                    .add(offset as usize)
                    .cast::<[u32; 2]>()
                    .read_volatile()
            };
            match check_header(raw, self.tail, self.head - self.tail, self.end.capacity) {
                Ok(Slot::Pad { size }) => {
                    self.tail += size;
                }
                Ok(Slot::Data { len, tag, size }) => {
                    return Ok(Some((offset, len as usize, tag, size)))
                }
                Err(e) => {
                    self.end.broken = Some(e.clone());
                    return Err(e.into());
                }
            }
        }
    }

    fn release(&mut self, size: u64) {
        self.tail += size;
        // Hand space back in batches of a quarter ring, or at once when we
        // have caught up with everything published (the producer may be
        // about to need it, and we are not busy).
        if self.tail == self.head || self.tail - self.published >= self.end.publish_batch {
            self.flush();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A committed frame, read in place. Dropping it releases its space (see
/// [`Consumer::flush`] for when the producer sees that).
pub struct Frame<'a> {
    consumer: &'a mut Consumer,
    /// Offset of the frame header in the data area.
    offset: u64,
    /// Payload bytes: checked so that header + payload lie inside the data
    /// area and inside the committed bytes.
    len: usize,
    tag: u16,
    size: u64,
}

impl std::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("tag", &self.tag)
            .field("len", &self.len)
            .finish()
    }
}

impl Frame<'_> {
    /// The tag the producer committed the frame with.
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `dst.len()` payload bytes starting at `offset` into `dst`.
    ///
    /// # Errors
    ///
    /// [`FrameBoundsError`] if the range is not inside the payload.
    #[inline]
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), FrameBoundsError> {
        if offset > self.len || dst.len() > self.len - offset {
            return Err(FrameBoundsError {
                offset,
                len: dst.len(),
                frame_len: self.len,
            });
        }
        let start = self.offset as usize + FRAME_HEADER_LEN + offset;
        debug_assert!(start + dst.len() <= self.consumer.end.capacity as usize);
        // SAFETY: `offset + dst.len() <= len` (checked above) and
        // `check_header` proved header + len lie inside the data area and the
        // committed bytes, which the producer will not reuse before we
        // release them. The bytes are copied out, never referenced.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.consumer.end.data.add(start),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
        Ok(())
    }

    /// Appends the whole payload to `out`, without zero-filling it first.
    pub fn copy_into(&self, out: &mut Vec<u8>) {
        self.append_range(0, self.len, out)
            .expect("the whole payload is in bounds");
    }

    /// Appends the `len` payload bytes starting at `offset` to `out`,
    /// without zero-filling them first.
    ///
    /// # Errors
    ///
    /// [`FrameBoundsError`] if the range is not inside the payload; `out` is
    /// then unchanged.
    pub fn append_range(
        &self,
        offset: usize,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameBoundsError> {
        if offset > self.len || len > self.len - offset {
            return Err(FrameBoundsError {
                offset,
                len,
                frame_len: self.len,
            });
        }
        out.reserve(len);
        let start = self.offset as usize + FRAME_HEADER_LEN + offset;
        debug_assert!(start + len <= self.consumer.end.capacity as usize);
        // SAFETY: `offset + len <= self.len` (checked above), so the source
        // lies inside the payload, which `check_header` proved lies inside
        // the data area and the committed bytes (as in `read_at`). The
        // destination is the vector's spare capacity, at least `len` bytes
        // after `reserve`, and `set_len` covers exactly the bytes copied.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.consumer.end.data.add(start),
                out.as_mut_ptr().add(out.len()),
                len,
            );
            out.set_len(out.len() + len);
        }
        Ok(())
    }

    /// The payload as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        self.copy_into(&mut v);
        v
    }

    /// Releases the frame (the same as dropping it).
    pub fn release(self) {}
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        self.consumer.release(self.size);
    }
}

impl crate::codec::ByteSource for Frame<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), crate::codec::DecodeError> {
        Frame::read_at(self, offset, dst).map_err(|_| {
            crate::codec::DecodeError::truncated(offset, dst.len(), self.len.saturating_sub(offset))
        })
    }

    #[inline]
    fn append_to(
        &self,
        offset: usize,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), crate::codec::DecodeError> {
        self.append_range(offset, len, out).map_err(|_| {
            crate::codec::DecodeError::truncated(offset, len, self.len.saturating_sub(offset))
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::header::CONTROL_SIZE;
    use proptest::prelude::*;

    /// Writes `bytes` over the ring's control block and data area, as a
    /// hostile peer could at any time.
    fn scribble(rx: &Consumer, control: &[u8], data: &[u8]) {
        assert!(control.len() <= CONTROL_SIZE && data.len() <= rx.capacity());
        // SAFETY: test-only; both ranges lie inside the ring's memory
        // (asserted above) and no other thread touches the ring.
        unsafe {
            std::ptr::copy_nonoverlapping(
                control.as_ptr(),
                rx.end.control.as_ptr().cast::<u8>(),
                control.len(),
            );
            std::ptr::copy_nonoverlapping(data.as_ptr(), rx.end.data, data.len());
        }
    }

    fn poke_data(rx: &Consumer, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= rx.capacity());
        // SAFETY: test-only write inside the data area (asserted above).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), rx.end.data.add(offset), bytes.len())
        }
    }

    #[test]
    fn corrupted_frame_length_is_reported_not_followed() {
        let region = Region::create_shared(&[4096]).unwrap();
        let (mut tx, mut rx) = (region.producer(0).unwrap(), region.consumer(0).unwrap());
        tx.try_push(1, &[7; 100]).unwrap();
        poke_data(&rx, 0, &9000u32.to_le_bytes());
        let err = rx.try_recv().unwrap_err();
        assert_eq!(
            err,
            RingRecvError::Corrupt(FrameError::Corrupt {
                position: 0,
                len: 9000,
                available: 112,
                capacity: 4096
            })
        );
        // The endpoint stays broken: no second chance to read garbage.
        assert_eq!(rx.try_recv().unwrap_err(), err);
    }

    #[test]
    fn head_beyond_one_capacity_is_reported() {
        let region = Region::create_private(&[256]).unwrap();
        let (_tx, mut rx) = (region.producer(0).unwrap(), region.consumer(0).unwrap());
        rx.end.ctl().p.head.store(1 << 40, Ordering::Release);
        assert!(matches!(
            rx.try_recv().unwrap_err(),
            RingRecvError::Corrupt(FrameError::CounterOutOfRange {
                counter: "head",
                value: 1099511627776,
                ..
            })
        ));
    }

    #[test]
    fn tail_moving_backwards_or_past_head_is_reported() {
        let region = Region::create_private(&[256]).unwrap();
        let (mut tx, rx) = (region.producer(0).unwrap(), region.consumer(0).unwrap());
        tx.try_push(0, &[0; 200]).unwrap();
        rx.end.ctl().c.tail.store(4096, Ordering::Release);
        assert!(matches!(
            tx.try_push(0, &[0; 200]).unwrap_err(),
            RingPushError::Corrupt(FrameError::CounterOutOfRange {
                counter: "tail",
                value: 4096,
                ..
            })
        ));
    }

    #[test]
    fn unknown_frame_kind_is_reported() {
        let region = Region::create_private(&[256]).unwrap();
        let (mut tx, mut rx) = (region.producer(0).unwrap(), region.consumer(0).unwrap());
        tx.try_push(0, &[0; 8]).unwrap();
        poke_data(&rx, 4, &[0, 0, 9, 0]);
        assert!(matches!(
            rx.try_recv().unwrap_err(),
            RingRecvError::Corrupt(FrameError::UnknownKind { kind: 9, .. })
        ));
    }

    proptest! {
        // 512 cases unless PROPTEST_CASES asks for more (tools/fuzz).
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(512), ..ProptestConfig::default() })]

        /// Arbitrary bytes over the control block and the data area never
        /// make either end panic or read outside its ring: every frame it
        /// hands out fits the data area, and everything else is an error.
        #[test]
        fn arbitrary_ring_contents_yield_frames_or_errors(
            control in prop::collection::vec(any::<u8>(), 0..=CONTROL_SIZE),
            data in prop::collection::vec(any::<u8>(), 0..=256),
            small_head in any::<bool>(),
        ) {
            let region = Region::create_private(&[256]).unwrap();
            let (mut tx, mut rx) = (region.producer(0).unwrap(), region.consumer(0).unwrap());
            scribble(&rx, &control, &data);
            if small_head {
                // Make a plausible head likelier, so frame headers get parsed.
                let h = rx.end.ctl().p.head.load(Ordering::Relaxed) & 0x1f8;
                rx.end.ctl().p.head.store(h, Ordering::Relaxed);
                rx.end.ctl().c.tail.store(0, Ordering::Relaxed);
            }
            for _ in 0..64 {
                match rx.try_recv() {
                    Ok(Some(f)) => {
                        prop_assert!(f.len() <= 248);
                        let _ = f.to_vec();
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            for _ in 0..8 {
                match tx.try_reserve(40) {
                    Ok(mut w) => {
                        w.append(&[1; 40]).unwrap();
                        w.commit(0);
                    }
                    Err(_) => break,
                }
            }
            tx.flush();
        }
    }
}
