//! Unit tests of the ring protocol on a process-local block.

use super::*;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::time::Duration;

/// A process-local, 64-aligned pipe block.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

impl Block {
    fn new(cap: u64) -> Block {
        let layout = Layout::from_size_align(block_len(cap) as usize, 64).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `ptr` is a fresh 64-aligned allocation of `block_len(cap)` bytes.
        unsafe { init_block(ptr, cap) };
        Block { ptr, layout }
    }
    fn ring(&self, d: u64) -> Ring {
        // SAFETY: the block is live and was initialized (so checks) for this capacity.
        let cap = unsafe { check_block(self.ptr, self.layout.size() as u64) }.unwrap();
        // SAFETY: checked above; the block outlives the ring within each test.
        unsafe { Ring::new(self.ptr, cap, d) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

struct Collect(Vec<u8>, Option<usize>);

impl Sink for Collect {
    fn start(&mut self, total: usize) -> Result<()> {
        match self.1 {
            Some(max) if total > max => Err(Error::BufferTooSmall { needed: total }),
            _ => Ok(()),
        }
    }
    fn put(&mut self, _offset: usize, bytes: &[u8]) -> Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn recv(r: &Ring) -> Result<Vec<u8>> {
    let mut c = Collect(Vec::new(), None);
    r.recv(&mut c, Some(&Deadline::after(Duration::from_secs(10))))?;
    Ok(c.0)
}

#[test]
fn messages_keep_boundaries_and_wrap_with_padding() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    for round in 0..200u32 {
        let msg = vec![round as u8; (round as usize * 37) % 900];
        r.send(&msg, None).unwrap();
        r.send(&[], None).unwrap();
        assert_eq!(recv(&r).unwrap(), msg);
        assert_eq!(recv(&r).unwrap(), b"");
    }
}

#[test]
fn short_buffer_keeps_the_message() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(1);
    r.send(b"0123456789", None).unwrap();
    let mut c = Collect(Vec::new(), Some(4));
    assert!(matches!(
        r.recv(&mut c, None),
        Err(Error::BufferTooSmall { needed: 10 })
    ));
    assert_eq!(recv(&r).unwrap(), b"0123456789");
}

#[test]
fn message_larger_than_the_ring_streams_through_it() {
    let b = Block::new(MIN_CAPACITY);
    let addr = b.ptr as usize;
    let msg: Vec<u8> = (0..5 * MIN_CAPACITY as usize + 17)
        .map(|i| i as u8)
        .collect();
    let expect = msg.clone();
    let writer = std::thread::spawn(move || {
        // SAFETY: the block outlives the thread (joined below) and checks.
        let w = unsafe { Ring::new(addr as *mut u8, MIN_CAPACITY, 0) };
        w.send(&msg, None).unwrap();
    });
    let r = b.ring(0);
    assert_eq!(recv(&r).unwrap(), expect);
    writer.join().unwrap();
}

#[test]
fn empty_ring_times_out() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    let mut c = Collect(Vec::new(), None);
    let d = Deadline::after(Duration::from_millis(5));
    assert!(matches!(r.recv(&mut c, Some(&d)), Err(Error::Timeout)));
    assert!(!r.poll(Some(&Deadline::after(Duration::from_millis(1)))));
}

#[test]
fn closed_writer_is_end_of_stream_after_draining() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    r.send(b"last", None).unwrap();
    r.close_writer(None);
    assert!(r.readable_now());
    assert_eq!(recv(&r).unwrap(), b"last");
    assert!(matches!(recv(&r), Err(Error::Disconnected)));
    r.close_reader();
    assert!(matches!(r.send(b"x", None), Err(Error::Disconnected)));
}

fn poke(b: &Block, off: u64, bytes: &[u8]) {
    // SAFETY: the offset is inside the block and no other thread uses it.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            b.ptr.wrapping_add(off as usize),
            bytes.len(),
        )
    };
}

#[test]
fn corrupt_shared_state_is_an_error_not_a_crash() {
    let data0 = BLOCK_HEAD + DIR_HEAD;
    // A record length past the chunk limit.
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    r.send(b"ok", None).unwrap();
    poke(&b, data0, &u32::MAX.to_le_bytes());
    assert!(matches!(recv(&r), Err(Error::CorruptObject { .. })));
    // A head far past the tail.
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    poke(&b, BLOCK_HEAD + HEAD, &(10 * MIN_CAPACITY).to_le_bytes());
    assert!(matches!(recv(&r), Err(Error::CorruptObject { .. })));
    // A continuation without a start, and a total that disagrees with the chunk.
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    r.send(b"abc", None).unwrap();
    poke(&b, data0 + 4, &LAST.to_le_bytes());
    assert!(matches!(recv(&r), Err(Error::CorruptObject { .. })));
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    r.send(b"abc", None).unwrap();
    poke(&b, data0 + 8, &(1u64 << 40).to_le_bytes());
    assert!(matches!(recv(&r), Err(Error::CorruptObject { .. })));
    // Bad block headers.
    let b = Block::new(MIN_CAPACITY);
    poke(&b, 8, &(MIN_CAPACITY + 64).to_le_bytes());
    // SAFETY: the block is live.
    assert!(unsafe { check_block(b.ptr, b.layout.size() as u64) }.is_err());
    poke(&b, 8, &(MIN_CAPACITY * 2).to_le_bytes());
    // SAFETY: as above.
    assert!(unsafe { check_block(b.ptr, b.layout.size() as u64) }.is_err());
    poke(&b, 0, &0u64.to_le_bytes());
    // SAFETY: as above.
    assert!(unsafe { check_block(b.ptr, b.layout.size() as u64) }.is_err());
}

/// Regression ("safe functions with unchecked preconditions"): a header word
/// accessor given an offset past the direction header panics instead of making a reference
/// outside it.
#[test]
#[should_panic(expected = "out of bounds")]
fn header_word_outside_the_direction_header_panics() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    let _ = r.u64_at(DIR_HEAD);
}

/// As above, for a misaligned offset.
#[test]
#[should_panic(expected = "out of bounds")]
fn misaligned_header_word_panics() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    let _ = r.u32_at(RX_SEQ + 1);
}

/// Writes `msg` with `write_in_place` and publishes it; returns whether it fitted.
fn send_in_place(r: &Ring, msg: &[u8]) -> bool {
    let end = r
        .write_in_place(|area| {
            Ok(area.get_mut(..msg.len()).map(|dst| {
                dst.copy_from_slice(msg);
                msg.len()
            }))
        })
        .unwrap();
    if let Some(end) = end {
        r.publish_in_place(end, None);
    }
    end.is_some()
}

/// In-place records (with their padding at the end of the ring) interleave with streamed
/// ones, keep their boundaries, and a message that does not fit the room free now is left
/// to `send`, with nothing published.
#[test]
fn in_place_records_wrap_with_padding_and_interleave_with_send() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    let mut fitted = 0;
    for round in 0..300u32 {
        // Up to 1,499 bytes: those over a record (`max_chunk`, 960 bytes here) go to `send`.
        let msg = vec![round as u8; (round as usize * 53) % 1500];
        if send_in_place(&r, &msg) {
            fitted += 1;
        } else {
            r.send(&msg, None).unwrap();
        }
        r.send(&[round as u8], None).unwrap();
        assert_eq!(recv(&r).unwrap(), msg);
        assert_eq!(recv(&r).unwrap(), [round as u8]);
    }
    // The ring is drained each round, so every message of one record fits (padding first
    // when the end of the ring is near).
    let one_record = (0..300u64)
        .filter(|i| (i * 53) % 1500 <= r.max_chunk)
        .count();
    assert_eq!(fitted, one_record);
    // Fill the ring: the in-place write finds no room and publishes nothing.
    while send_in_place(&r, &[7; 500]) {}
    let head = r.u64_at(HEAD).load(Ordering::Relaxed);
    assert!(!send_in_place(&r, &[7; 500]));
    assert_eq!(r.u64_at(HEAD).load(Ordering::Relaxed), head);
    // A message larger than a record never fits in place.
    let r1 = b.ring(1);
    assert!(!send_in_place(&r1, &vec![1; MIN_CAPACITY as usize / 2]));
    assert!(send_in_place(&r1, &[1; 64]));
    assert_eq!(recv(&r1).unwrap(), [1; 64]);
}

/// Regression (issue 16: a one-way 256-byte stream ran at a quarter of a queue's rate when
/// both ends shared a core, each side sleeping on the futex every few messages): a side whose
/// end did not use the other direction since its last wait, and whose peer last ran on this
/// CPU, yields before it sleeps, as a queue's ends do; a side whose end answers, or whose peer
/// ran elsewhere, keeps the pipe site's policy (no yields), and the mark lasts one wait.
#[test]
fn one_way_sides_on_the_peers_cpu_yield_before_sleeping_and_others_do_not() {
    let b = Block::new(MIN_CAPACITY);
    let r = b.ring(0);
    let spin = Spin::new(Site::Pipe);
    let queue_yields = Site::Queue.limits().yields;
    assert!(queue_yields > 0);
    let writer_cpu = r.u32_at(WRITER_CPU);
    assert_eq!(r.wait_yields(spin, RX_SEQ), 0, "the peer's CPU is unknown");
    writer_cpu.store(u32::MAX, Ordering::Relaxed);
    assert_eq!(r.wait_yields(spin, RX_SEQ), 0, "the peer ran elsewhere");
    // The thread may move between CPUs: retry until it stayed on one around the call.
    let mut checked = 0;
    for _ in 0..1000 {
        let cpu = sys::current_cpu();
        writer_cpu.store(cpu, Ordering::Relaxed);
        r.note_other_direction();
        let answering = r.wait_yields(spin, RX_SEQ);
        let one_way = r.wait_yields(spin, RX_SEQ);
        if cpu != 0 && sys::current_cpu() == cpu {
            assert_eq!(answering, 0, "an answering side does not yield");
            assert_eq!(
                one_way, queue_yields,
                "a one-way side on the peer's CPU does"
            );
            checked += 1;
            if checked == 3 {
                break;
            }
        }
    }
    assert_eq!(checked, 3, "sched_getcpu reports a CPU");
    // A publish records the writer's CPU.
    writer_cpu.store(0, Ordering::Relaxed);
    let w = b.ring(0);
    w.send(b"one", None).unwrap();
    assert_ne!(writer_cpu.load(Ordering::Relaxed), 0);
    assert_eq!(recv(&r).unwrap(), b"one");
    // A one-way wait still ends as soon as the data arrives (the yields only precede the
    // sleep), and a wait after an answer as well.
    let addr = b.ptr as usize;
    let writer = std::thread::spawn(move || {
        // SAFETY: the block outlives the thread (joined below) and checks.
        let w = unsafe { Ring::new(addr as *mut u8, MIN_CAPACITY, 0) };
        std::thread::sleep(Duration::from_millis(20));
        w.send(b"two", None).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        w.send(b"three", None).unwrap();
    });
    assert_eq!(recv(&r).unwrap(), b"two");
    r.note_other_direction();
    assert_eq!(recv(&r).unwrap(), b"three");
    writer.join().unwrap();
}
