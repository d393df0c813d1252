//! Decimals: a `decimal.Decimal` (or an `int`) as an exact count of
//! 10^-scale in a declared precision, or why not.

use arrow_buffer::i256;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

use arrow_schema::DataType;

use super::{py_err, refuse, PyKit};

/// 10^n (n ≤ 76).
fn ten_pow(n: u32) -> i256 {
    i256::from_i128(10).wrapping_pow(n)
}

/// `obj` (a `decimal.Decimal` or an `int`) as an integer count of
/// 10^-scale, exactly, or why not.
fn scaled(kit: &PyKit, obj: &Bound<'_, PyAny>, scale: i8) -> Result<i256, String> {
    let py = obj.py();
    let overflow = || "out of range".to_string();
    let (negative, digits, exponent): (bool, Vec<u8>, i64) =
        if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
            let text = obj.str().map_err(py_err)?.to_string();
            let (negative, digits) = match text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, text.as_str()),
            };
            (negative, digits.bytes().map(|b| b - b'0').collect(), 0)
        } else if obj.is_instance(kit.decimal.bind(py)).map_err(py_err)? {
            let t = obj.call_method0("as_tuple").map_err(py_err)?;
            let sign: i64 = t.get_item(0).and_then(|v| v.extract()).map_err(py_err)?;
            let digits: Vec<u8> = t.get_item(1).and_then(|v| v.extract()).map_err(py_err)?;
            let exponent = t
                .get_item(2)
                .and_then(|v| v.extract::<i64>())
                .map_err(|_| "not a finite number".to_string())?;
            (sign == 1, digits, exponent)
        } else {
            return Err(String::new());
        };
    // value = digits × 10^exponent; wanted: value × 10^scale, an integer.
    let shift = exponent + i64::from(scale);
    let (keep, drop) = if shift >= 0 {
        (digits.len(), 0)
    } else {
        let drop = usize::try_from(-shift).unwrap_or(usize::MAX);
        (digits.len().saturating_sub(drop), drop.min(digits.len()))
    };
    if digits[keep..keep + drop].iter().any(|&d| d != 0) {
        return Err(format!("more decimal places than the scale {scale}"));
    }
    let mut x = i256::ZERO;
    let ten = i256::from_i128(10);
    for &d in &digits[..keep] {
        x = x
            .checked_mul(ten)
            .and_then(|x| x.checked_add(i256::from_i128(i128::from(d))))
            .ok_or_else(overflow)?;
    }
    if shift > 0 {
        let shift = u32::try_from(shift).map_err(|_| overflow())?;
        if shift > 76 {
            if x != i256::ZERO {
                return Err(overflow());
            }
        } else {
            x = x.checked_mul(ten_pow(shift)).ok_or_else(overflow)?;
        }
    }
    Ok(if negative { x.wrapping_neg() } else { x })
}

/// `obj` (a `decimal.Decimal` or an `int`) for a column of declared type
/// `t`, `decimal(p, s)`: an exact count of 10^-s of at most `p` digits, or
/// why not.
pub(super) fn fit(
    kit: &PyKit,
    t: &DataType,
    obj: &Bound<'_, PyAny>,
    p: u8,
    s: i8,
) -> Result<i256, String> {
    let x = scaled(kit, obj, s).map_err(|e| refuse(t, obj, &e))?;
    if x.wrapping_abs() >= ten_pow(u32::from(p)) {
        return Err(refuse(t, obj, &format!("more than {p} digits")));
    }
    Ok(x)
}
