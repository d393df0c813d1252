//! Columns as they travel: views as their plain arrays, dictionaries as
//! their values, at any depth ([`to_wire`]), and back into a declared view
//! type ([`from_wire`]).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BinaryArray, BinaryViewArray, StringArray, StringViewArray};
use arrow_data::transform::MutableArrayData;
use arrow_schema::DataType;

use crate::{ArrowError, RunError};

/// `a` as the plain array its type travels as (see [`coil_proto::wire_type`]).
pub(super) fn to_wire(a: &ArrayRef) -> Result<ArrayRef, RunError> {
    let plain = coil_proto::plain_type(a.data_type(), true);
    if &plain == a.data_type() {
        return Ok(a.clone());
    }
    let overflow = |e| RunError::Arrow(ArrowError::Build(e));
    Ok(match a.data_type() {
        DataType::Utf8View => Arc::new(StringArray::from_iter(a.as_string_view().iter())),
        DataType::BinaryView => Arc::new(BinaryArray::from_iter(a.as_binary_view().iter())),
        DataType::Dictionary(..) => {
            let d = a.as_any_dictionary();
            let values = to_wire(d.values())?;
            let keys = d.normalized_keys();
            let data = values.to_data();
            let mut out = MutableArrayData::new(vec![&data], true, a.len());
            for (row, &k) in keys.iter().enumerate() {
                // Keys were validated against the values when the array was
                // built; a null row's key may be anything.
                if d.keys().is_valid(row) && k < values.len() {
                    out.try_extend(0, k, k + 1).map_err(overflow)?;
                } else {
                    out.try_extend_nulls(1).map_err(overflow)?;
                }
            }
            arrow_array::make_array(out.freeze())
        }
        // A nested type holding views or dictionaries: its children
        // converted, its own buffers kept.
        _ => {
            let data = a.to_data();
            let children = data
                .child_data()
                .iter()
                .map(|c| to_wire(&arrow_array::make_array(c.clone())).map(|c| c.to_data()))
                .collect::<Result<Vec<_>, _>>()?;
            let data = data
                .into_builder()
                .data_type(plain)
                .child_data(children)
                .build()
                .map_err(overflow)?;
            arrow_array::make_array(data)
        }
    })
}

/// The array `a` (of the wire type of `declared`) as `declared`: views,
/// at any depth, built from their plain arrays.
pub(super) fn from_wire(a: ArrayRef, declared: &DataType) -> Result<ArrayRef, RunError> {
    if a.data_type() == declared {
        return Ok(a);
    }
    Ok(match declared {
        DataType::Utf8View => Arc::new(StringViewArray::from_iter(a.as_string::<i32>().iter())),
        DataType::BinaryView => Arc::new(BinaryViewArray::from_iter(a.as_binary::<i32>().iter())),
        t => {
            let fields = coil_proto::child_types(t);
            if fields.is_empty() {
                return Ok(a);
            }
            let data = a.to_data();
            let children = data
                .child_data()
                .iter()
                .zip(&fields)
                .map(|(c, t)| from_wire(arrow_array::make_array(c.clone()), t).map(|c| c.to_data()))
                .collect::<Result<Vec<_>, _>>()?;
            let data = data
                .into_builder()
                .data_type(t.clone())
                .child_data(children)
                .build()
                .map_err(|e| RunError::Arrow(ArrowError::Build(e)))?;
            arrow_array::make_array(data)
        }
    })
}
