//! Arrow buffers over arena runs: the one `unsafe` of placed values.

use std::ptr::NonNull;
use std::sync::Arc;

use arrow_buffer::Buffer;
use coil_ipc::Claim;

/// `claim`'s bytes as an Arrow buffer, read in place; the buffer owns the
/// claim, so the run stays mapped and is freed only when the last array
/// over it drops.
pub(crate) fn buffer(claim: Claim) -> Buffer {
    let len = claim.len();
    let ptr = NonNull::new(claim.as_ptr().cast_mut()).expect("a mapped run is never null");
    // SAFETY: `claim` checked that `len` bytes from `ptr` lie inside the
    // arena half, whose mapping the claim keeps alive (it is the buffer's
    // owner, dropped only after every array over the buffer). The run is
    // 64-byte aligned (slots start on page multiples). What the bytes
    // hold is only ever read as fixed-width values (`PLACED` is refused
    // for any other shape), for which every bit pattern is valid: a peer
    // that writes the run while it is claimed (breaking the protocol) can
    // change the values read, not what memory is read. The run is memory
    // another process can write, which Rust's model counts as a data race
    // on the `&[u8]` Arrow hands out; coil accepts that for plain values
    // only, as docs/architecture.md says.
    unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(claim)) }
}
