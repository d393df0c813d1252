//! The rules for each type's values: which Python objects a declared
//! type takes, and how they are checked to fit.

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

use super::{ResultColumn, Values};
use crate::arrow::{decimal, kit_or, py_err, refuse, temporal, PyKit};

impl ResultColumn {
    pub(super) fn push_value(
        &mut self,
        kit: Option<&PyKit>,
        obj: &Bound<'_, PyAny>,
    ) -> Result<(), String> {
        let t = &self.t;
        if obj.is_none() {
            if !self.nullable {
                return Err(format!(
                    "None where the declared type {} holds no nulls",
                    self.t
                ));
            }
            self.push_null();
            return Ok(());
        }
        macro_rules! int {
            ($v:expr, $t:ty) => {{
                if !obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
                    return Err(refuse(t, obj, ""));
                }
                let x: $t = obj.extract().map_err(|_| refuse(t, obj, "out of range"))?;
                $v.push(x);
            }};
        }
        match &mut self.values {
            Values::Null => return Err(refuse(t, obj, "the null type holds only None")),
            Values::Bool(v) => match obj.cast::<PyBool>() {
                Ok(b) => v.push(b.is_true()),
                Err(_) => return Err(refuse(t, obj, "")),
            },
            Values::I8(v) => int!(v, i8),
            Values::I16(v) => int!(v, i16),
            Values::I32(v) => int!(v, i32),
            Values::I64(v) => int!(v, i64),
            Values::U8(v) => int!(v, u8),
            Values::U16(v) => int!(v, u16),
            Values::U32(v) => int!(v, u32),
            Values::U64(v) => int!(v, u64),
            Values::F32(_) | Values::F64(_) => {
                let f = if let Ok(f) = obj.cast::<PyFloat>() {
                    f.value()
                } else if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
                    // An int is exact in a float up to 2^53: beyond,
                    // refused rather than rounded.
                    let i: i64 = obj.extract().map_err(|_| refuse(t, obj, "out of range"))?;
                    if i.unsigned_abs() > 1 << 53 {
                        return Err(refuse(t, obj, "not exact as a float"));
                    }
                    i as f64
                } else {
                    return Err(refuse(t, obj, ""));
                };
                match &mut self.values {
                    Values::F32(v) => v.push(f as f32),
                    Values::F64(v) => v.push(f),
                    _ => unreachable!("matched above"),
                }
            }
            Values::Bytes {
                text,
                offsets,
                data,
            } => {
                if *text {
                    let s = obj
                        .cast::<PyString>()
                        .map_err(|_| refuse(t, obj, ""))?
                        .to_str()
                        .map_err(|e| format!("a str that is not valid UTF-8: {e}"))?;
                    data.extend_from_slice(s.as_bytes());
                } else if let Ok(b) = obj.cast::<PyBytes>() {
                    data.extend_from_slice(b.as_bytes());
                } else if let Ok(b) = obj.cast::<PyByteArray>() {
                    data.extend_from_slice(&b.to_vec());
                } else {
                    return Err(refuse(t, obj, ""));
                }
                offsets.push(data.len());
            }
            Values::Date32(_) | Values::Date64(_) => {
                let days = temporal::date_days(kit_or(kit)?, t, obj)?;
                match &mut self.values {
                    Values::Date32(v) => v.push(days as i32),
                    Values::Date64(v) => v.push(days * 86_400_000),
                    _ => unreachable!("matched above"),
                }
            }
            Values::Time32(u, v) => v.push(temporal::time_ticks(kit_or(kit)?, t, obj, u)? as i32),
            Values::Time64(u, v) => v.push(temporal::time_ticks(kit_or(kit)?, t, obj, u)?),
            Values::Timestamp { unit, aware, ticks } => ticks.push(temporal::timestamp_ticks(
                kit_or(kit)?,
                t,
                obj,
                unit,
                *aware,
            )?),
            Values::Duration(unit, v) => {
                v.push(temporal::duration_ticks(kit_or(kit)?, t, obj, unit)?)
            }
            Values::Decimal128(p, s, v) => {
                let x = decimal::fit(kit_or(kit)?, t, obj, *p, *s)?;
                v.push(x.to_i128().ok_or_else(|| refuse(t, obj, "out of range"))?)
            }
            Values::Decimal256(p, s, v) => v.push(decimal::fit(kit_or(kit)?, t, obj, *p, *s)?),
            Values::List {
                offsets,
                fixed,
                child,
            } => {
                if !(obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()) {
                    return Err(refuse(t, obj, "a list or tuple is expected"));
                }
                let fixed = *fixed;
                let mut n = 0;
                for item in obj.try_iter().map_err(py_err)? {
                    let item = item.map_err(py_err)?;
                    child
                        .push_inner(kit, &item)
                        .map_err(|e| format!("item {n}: {e}"))?;
                    n += 1;
                }
                if let Some(size) = fixed.filter(|&s| s != n) {
                    return Err(format!(
                        "a list of {n} items where the declared type {t} holds {size}"
                    ));
                }
                offsets.push(child.len());
            }
            Values::Struct(children)
                if obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyList>() =>
            {
                // Positional: one item per field, in order.
                let items: Vec<Bound<'_, PyAny>> = obj.extract().map_err(py_err)?;
                if items.len() != children.len() {
                    return Err(format!(
                        "{} values for a struct of {} fields",
                        items.len(),
                        children.len()
                    ));
                }
                for ((name, c), v) in children.iter_mut().zip(&items) {
                    c.push_inner(kit, v)
                        .map_err(|e| format!("field {name:?}: {e}"))?;
                }
            }
            Values::Struct(children) => {
                let d = obj.cast::<PyDict>().map_err(|_| {
                    "a struct's value must be a dict, or a tuple or list of its fields".to_string()
                })?;
                let mut found = 0;
                for (name, c) in children.iter_mut() {
                    match d.get_item(name.as_str()).map_err(py_err)? {
                        Some(v) => {
                            found += 1;
                            c.push_inner(kit, &v)
                                .map_err(|e| format!("field {name:?}: {e}"))?
                        }
                        None if c.nullable => c.push_null(),
                        None => return Err(format!("no field {name:?}, which holds no nulls")),
                    }
                }
                if found != d.len() {
                    let names: Vec<String> =
                        children.iter().map(|(n, _)| format!("{n:?}")).collect();
                    return Err(format!(
                        "a dict with keys other than the struct's fields ({})",
                        names.join(", ")
                    ));
                }
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                let d = obj
                    .cast::<PyDict>()
                    .map_err(|_| "a map's value must be a dict".to_string())?;
                for (k, v) in d.iter() {
                    keys.push_inner(kit, &k)
                        .map_err(|e| format!("a key: {e}"))?;
                    values
                        .push_inner(kit, &v)
                        .map_err(|e| format!("the value of a key: {e}"))?;
                }
                offsets.push(keys.len());
            }
        }
        self.valid.append_non_null();
        Ok(())
    }
}
