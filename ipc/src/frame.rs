//! Frames: the unit the ring carries, and the checks a consumer applies to
//! (The model is documented in the crate docs, section "Frames".)

/// Bytes of the frame header.
pub const FRAME_HEADER_LEN: usize = 8;

/// `kind` of a frame carrying user data.
pub(crate) const KIND_DATA: u16 = 0;
/// `kind` of filler up to the end of the data area.
pub(crate) const KIND_PAD: u16 = 1;

/// Bytes a frame with a `len`-byte payload occupies in the ring.
#[inline]
pub(crate) const fn frame_size(len: u64) -> u64 {
    (FRAME_HEADER_LEN as u64 + len + 7) & !7
}

/// The largest payload a ring of `capacity` bytes can carry in one frame.
///
/// # Examples
///
/// ```
/// assert_eq!(coil_ipc::max_frame_len(4096), 4088);
/// ```
pub const fn max_frame_len(capacity: usize) -> usize {
    capacity - FRAME_HEADER_LEN
}

/// The ring's memory is not in a state an honest peer could have left it in.
///
/// Raised by the side that *reads* something the other side wrote; once
/// raised, the endpoint refuses all further work with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame header claims more bytes than the ring holds at that point.
    #[error("frame at position {position} claims {len} bytes but ring holds {available} there (capacity {capacity})")]
    Corrupt {
        /// Ring position of the frame header.
        position: u64,
        /// The payload length the header claims.
        len: u64,
        /// Bytes committed and contiguous at that position.
        available: u64,
        /// The ring's data capacity.
        capacity: u64,
    },
    /// A frame header has a `kind` that is neither data nor padding.
    #[error("frame at position {position} has unknown kind {kind}")]
    UnknownKind {
        /// Ring position of the frame header.
        position: u64,
        /// The kind found.
        kind: u16,
    },
    /// Padding that does not run exactly to the end of the data area.
    #[error(
        "padding at position {position} claims {len} bytes but {expected} remain before the wrap"
    )]
    BadPadding {
        /// Ring position of the padding.
        position: u64,
        /// Bytes the padding claims, header included.
        len: u64,
        /// Bytes left before the end of the data area.
        expected: u64,
    },
    /// The peer's counter moved backwards, past ours, or to an unaligned
    /// position.
    #[error("peer moved its {counter} to {value}, outside {min}..={max}")]
    CounterOutOfRange {
        /// `"head"` or `"tail"`.
        counter: &'static str,
        /// The value read.
        value: u64,
        /// Smallest legal value.
        min: u64,
        /// Largest legal value.
        max: u64,
    },
}

/// A frame header that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Padding of `size` bytes (header included) to skip.
    Pad { size: u64 },
    /// A data frame with a `len`-byte payload occupying `size` bytes.
    Data { len: u32, tag: u16, size: u64 },
}

/// Checks the raw header words read (once) at ring position `position`.
///
/// `available` is how many committed bytes start at `position`, already
/// clamped to the capacity; `capacity` is a power of two.
#[inline]
pub(crate) fn check_header(
    raw: [u32; 2],
    position: u64,
    available: u64,
    capacity: u64,
) -> Result<Slot, FrameError> {
    let len = raw[0];
    let tag = raw[1] as u16;
    let kind = (raw[1] >> 16) as u16;
    let to_end = capacity - (position & (capacity - 1));
    match kind {
        KIND_DATA => {
            let size = frame_size(u64::from(len));
            if size > available.min(to_end) {
                return Err(FrameError::Corrupt {
                    position,
                    len: u64::from(len),
                    available: available.min(to_end),
                    capacity,
                });
            }
            Ok(Slot::Data { len, tag, size })
        }
        KIND_PAD => {
            let size = FRAME_HEADER_LEN as u64 + u64::from(len);
            if size != to_end || size > available {
                return Err(FrameError::BadPadding {
                    position,
                    len: size,
                    expected: to_end.min(available),
                });
            }
            Ok(Slot::Pad { size })
        }
        kind => Err(FrameError::UnknownKind { position, kind }),
    }
}

/// The raw header words for a frame.
#[inline]
pub(crate) const fn header_words(len: u32, tag: u16, kind: u16) -> [u32; 2] {
    [len, (tag as u32) | ((kind as u32) << 16)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_round_up_to_eight() {
        assert_eq!(frame_size(0), 8);
        assert_eq!(frame_size(1), 16);
        assert_eq!(frame_size(8), 16);
        assert_eq!(frame_size(9), 24);
    }

    #[test]
    fn header_round_trips_through_check() {
        let w = header_words(5, 0xBEEF, KIND_DATA);
        assert_eq!(
            check_header(w, 64, 16, 128),
            Ok(Slot::Data {
                len: 5,
                tag: 0xBEEF,
                size: 16
            })
        );
    }

    #[test]
    fn check_rejects_frame_longer_than_committed_bytes() {
        let w = header_words(100, 0, KIND_DATA);
        assert!(matches!(
            check_header(w, 0, 64, 4096),
            Err(FrameError::Corrupt {
                len: 100,
                available: 64,
                ..
            })
        ));
    }

    #[test]
    fn check_rejects_frame_crossing_the_wrap() {
        let w = header_words(16, 0, KIND_DATA);
        // 8 bytes before the end of a 64-byte ring, 64 committed.
        assert!(matches!(
            check_header(w, 56, 64, 64),
            Err(FrameError::Corrupt { available: 8, .. })
        ));
    }

    #[test]
    fn check_rejects_short_padding_and_unknown_kind() {
        let w = header_words(8, 0, KIND_PAD);
        assert!(matches!(
            check_header(w, 32, 32, 64),
            Err(FrameError::BadPadding { expected: 32, .. })
        ));
        assert_eq!(
            check_header(header_words(24, 0, KIND_PAD), 32, 32, 64),
            Ok(Slot::Pad { size: 32 })
        );
        assert!(matches!(
            check_header(header_words(0, 0, 7), 0, 8, 64),
            Err(FrameError::UnknownKind { kind: 7, .. })
        ));
    }

    #[test]
    fn frame_error_stays_small() {
        assert!(std::mem::size_of::<FrameError>() <= 48);
    }
}
