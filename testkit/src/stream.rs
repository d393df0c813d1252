//! A deterministic stream of checksummed frames of random sizes.
//!
//! Frame `seq` is `seq` (u64 LE), then a body whose length and bytes are a
//! function of `seq`, then an FNV-1a checksum of the body (u64 LE). A
//! receiver that knows which `seq` it expects detects a lost, duplicated,
//! reordered, truncated or corrupted frame.

/// Bytes of a frame that are not body: the sequence number and the checksum.
pub const OVERHEAD: usize = 16;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The frame length for `seq`: between [`OVERHEAD`] and `max` bytes.
pub fn frame_len(seq: u64, max: usize) -> usize {
    assert!(max >= OVERHEAD);
    OVERHEAD + (splitmix(seq) % (max - OVERHEAD + 1) as u64) as usize
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Replaces `out` with frame `seq` of a stream whose frames are at most
/// `max` bytes.
pub fn fill(seq: u64, max: usize, out: &mut Vec<u8>) {
    let len = frame_len(seq, max);
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    let mut x = splitmix(seq ^ 0xA5A5_A5A5);
    let body = len - OVERHEAD;
    while out.len() < 8 + body {
        x = splitmix(x);
        let take = (8 + body - out.len()).min(8);
        out.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    let sum = fnv1a(&out[8..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Checks that `frame` is frame `seq` of the stream: right sequence number,
/// right length, body matching its checksum.
///
/// # Errors
///
/// A sentence saying what differs.
pub fn check(seq: u64, max: usize, frame: &[u8]) -> Result<(), String> {
    let want = frame_len(seq, max);
    if frame.len() != want {
        return Err(format!(
            "frame {seq}: {} bytes, expected {want}",
            frame.len()
        ));
    }
    let got = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
    if got != seq {
        return Err(format!("frame {seq}: carries sequence number {got}"));
    }
    let (body, sum) = frame[8..].split_at(frame.len() - OVERHEAD);
    if fnv1a(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(format!("frame {seq}: checksum mismatch"));
    }
    Ok(())
}
