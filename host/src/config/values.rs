//! The values configuration keys take: how each is checked when it is set
//! and parsed when it is read (durations, sizes, counts, names), apart
//! from the table of keys (`mod.rs`) that names them.

use super::{ExecutionMode, OnError};

pub(super) fn check_on_error(v: &str) -> Result<(), String> {
    v.parse::<OnError>().map(|_| ())
}
pub(super) fn check_mode(v: &str) -> Result<(), String> {
    v.parse::<ExecutionMode>().map(|_| ())
}
pub(super) fn check_bool(v: &str) -> Result<(), String> {
    parse_bool(v).map(|_| ())
}
pub(super) fn check_count(v: &str) -> Result<(), String> {
    parse_count(v).map(|_| ())
}
pub(super) fn check_workers(v: &str) -> Result<(), String> {
    parse_workers(v).map(|_| ())
}
pub(super) fn check_millis(v: &str) -> Result<(), String> {
    parse_millis(v).map(|_| ())
}
pub(super) fn check_millis_positive(v: &str) -> Result<(), String> {
    match parse_millis(v)? {
        0 => Err(format!("a positive duration: {DURATION_FORMS}")),
        _ => Ok(()),
    }
}
pub(super) fn check_ring(v: &str) -> Result<(), String> {
    parse_ring_size(v).map(|_| ())
}
pub(super) fn check_arena(v: &str) -> Result<(), String> {
    parse_arena_size(v).map(|_| ())
}
pub(super) fn check_message(v: &str) -> Result<(), String> {
    parse_message_size(v).map(|_| ())
}
pub(super) fn check_max_processes(v: &str) -> Result<(), String> {
    parse_max_processes(v).map(|_| ())
}
pub(super) fn parse_max_processes(v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .map_err(|_| "a whole number of processes, 0 for no limit".to_owned())
}
pub(super) fn check_retries(v: &str) -> Result<(), String> {
    match v.trim() {
        "0" | "1" => Ok(()),
        _ => Err("0 (report a failed batch) or 1 (retry it once on a fresh worker)".into()),
    }
}
pub(super) fn check_any(_: &str) -> Result<(), String> {
    Ok(())
}

pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".into()),
    }
}

/// Comma-separated Python class names, each a dotted identifier.
pub(super) fn parse_exception_names(v: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    };
    match names.iter().find(|n| !n.split('.').all(identifier)) {
        Some(bad) => Err(format!(
            "exception class names separated by commas (ConnectionError,httpx.ConnectError); {bad:?} is not one"
        )),
        None => Ok(names),
    }
}

pub(super) fn check_exception_names(v: &str) -> Result<(), String> {
    parse_exception_names(v).map(drop)
}

/// Calls per second: a finite number, 0 for none.
pub(super) fn parse_rate(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 && (r == 0.0 || r >= 1e-6) => Ok(r),
        _ => Err("calls per second: a number from 0.000001 up (0 for no limit)".into()),
    }
}

pub(super) fn check_rate(v: &str) -> Result<(), String> {
    parse_rate(v).map(drop)
}

/// `python.fn-execution.bundle.adaptive`: `Some(true/false)`, `None` for
/// auto.
pub(super) fn parse_adaptive(v: &str) -> Result<Option<bool>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(None),
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err("auto, true or false".into()),
    }
}

pub(super) fn check_adaptive(v: &str) -> Result<(), String> {
    parse_adaptive(v).map(drop)
}

pub(super) fn parse_count(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a positive integer".into()),
    }
}

/// The `cores` of `python.worker-count`, its default.
pub(super) const CORES: &str = "cores";

pub(super) fn parse_workers(v: &str) -> Result<usize, String> {
    if v.trim().eq_ignore_ascii_case(CORES) {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    parse_count(v).map_err(|_| "a positive integer, or cores (the number of cores)".into())
}

/// How a time key's value may be written, for error messages.
pub(super) const DURATION_FORMS: &str =
    "a whole number of milliseconds, or with a unit: ms, s, min, h or d (500ms, 2s, 1min, 1h, 30d)";

/// A duration in milliseconds: a whole number, followed by a unit (`ms`,
/// `s`, `min`, `h`, with or without a space), or alone for milliseconds.
pub(super) fn parse_millis(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DURATION_FORMS.into()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| DURATION_FORMS.into())
}

pub(super) fn parse_ring_size(v: &str) -> Result<usize, String> {
    match parse_bytes(v) {
        Some(n) if n.is_power_of_two() && (4096..=1 << 30).contains(&n) => Ok(n),
        _ => Err("a power of two from 4k to 1g, e.g. 4194304 or 4m".into()),
    }
}

/// `python.fn-execution.arena.size`: 0 (no arena), or 64k to 16g.
pub(super) fn parse_arena_size(v: &str) -> Result<usize, String> {
    match parse_bytes(v) {
        Some(n) if n == 0 || (64 << 10..=16 << 30).contains(&n) => Ok(n),
        _ => Err("0 (no arena) or a size from 64k to 16g, e.g. 67108864 or 64m".into()),
    }
}

pub(super) fn parse_bytes(v: &str) -> Option<usize> {
    let v = v.trim().to_ascii_lowercase();
    let (digits, shift) = match v.as_bytes().last() {
        Some(b'k') => (&v[..v.len() - 1], 10),
        Some(b'm') => (&v[..v.len() - 1], 20),
        Some(b'g') => (&v[..v.len() - 1], 30),
        _ => (v.as_str(), 0),
    };
    digits.parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// `python.worker.memory-limit`: `None` for 0 (no limit).
pub(super) fn parse_memory_limit(v: &str) -> Result<Option<u64>, String> {
    match parse_bytes(v) {
        Some(0) => Ok(None),
        Some(n) if n >= 64 << 20 => Ok(Some(n as u64)),
        _ => Err("a size from 64m, e.g. 536870912, 512m or 2g; 0 for no limit".into()),
    }
}

pub(super) fn check_memory_limit(v: &str) -> Result<(), String> {
    parse_memory_limit(v).map(drop)
}

pub(super) fn parse_message_size(v: &str) -> Result<usize, String> {
    match parse_bytes(v) {
        Some(n) if (4096..=4 << 30).contains(&n) => Ok(n),
        _ => Err("a size from 4k to 4g, e.g. 268435456 or 256m".into()),
    }
}
