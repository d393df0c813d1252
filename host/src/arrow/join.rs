//! A call's results joined as they come back: `Runner::call_arrow` cuts a
//! record batch into batches, and their arrays are one array in the end.
//! Fixed-width values are appended to one buffer as each batch is
//! answered, while the executors work on the next ones, instead of all at
//! once after the last answer (and each answer's memory, an arena run in
//! process mode, is let go at once). Other types are kept and joined at
//! the end.

use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::{MutableBuffer, NullBufferBuilder};
use arrow_data::ArrayDataBuilder;
use arrow_schema::DataType;

/// The results of a call's batches so far, in order.
pub(super) struct Joiner {
    wire: DataType,
    /// A fixed-width wire type's width, while every array so far was of
    /// it and appended to `values`.
    width: Option<usize>,
    values: MutableBuffer,
    nulls: NullBufferBuilder,
    len: usize,
    /// The first array, kept as it is until a second one comes (a call of
    /// one batch returns its array without a copy).
    first: Option<ArrayRef>,
    /// Arrays kept whole: of a type that is not fixed-width, or after an
    /// array of another type than `wire` (which the join then reports).
    kept: Vec<ArrayRef>,
}

impl Joiner {
    /// An empty join of results of type `wire`, `rows` of them expected.
    pub(super) fn new(wire: &DataType, rows: usize) -> Joiner {
        let width = match wire {
            DataType::Boolean | DataType::Null => None,
            t if t.is_primitive() => t.primitive_width(),
            _ => None,
        };
        Joiner {
            wire: wire.clone(),
            width,
            values: MutableBuffer::new(width.map_or(0, |w| w * rows)),
            nulls: NullBufferBuilder::new(rows),
            len: 0,
            first: None,
            kept: Vec::new(),
        }
    }

    /// Appends the next batch's results.
    pub(super) fn push(&mut self, a: ArrayRef) {
        if self.len == 0 && self.kept.is_empty() {
            match self.first.take() {
                None => {
                    self.first = Some(a);
                    return;
                }
                Some(first) => self.append(first),
            }
        }
        self.append(a);
    }

    fn append(&mut self, a: ArrayRef) {
        match self.width {
            Some(w) if self.kept.is_empty() && a.data_type() == &self.wire => {
                let data = a.to_data();
                let from = data.offset() * w;
                self.values
                    .extend_from_slice(&data.buffers()[0].as_slice()[from..from + data.len() * w]);
                match data.nulls() {
                    Some(n) => self.nulls.append_buffer(n),
                    None => self.nulls.append_n_non_nulls(data.len()),
                }
                self.len += data.len();
            }
            _ => self.kept.push(a),
        }
    }

    /// The results: the appended ones as one array (if any), then the ones
    /// kept whole.
    ///
    /// # Errors
    ///
    /// Arrow's, should the appended values not make an array (they were
    /// arrays of the type already).
    pub(super) fn finish(mut self) -> Result<Vec<ArrayRef>, arrow_schema::ArrowError> {
        if let Some(first) = self.first.take() {
            return Ok(vec![first]);
        }
        let mut out = Vec::with_capacity(self.kept.len() + 1);
        if self.width.is_some() && self.len > 0 {
            let data = ArrayDataBuilder::new(self.wire)
                .len(self.len)
                .nulls(self.nulls.finish())
                .add_buffer(self.values.into())
                .build()?;
            out.push(make_array(data));
        }
        out.extend(self.kept);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn fixed_width_results_join_as_they_come_and_others_are_kept_in_order() {
        let mut j = Joiner::new(&DataType::Int64, 5);
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![9, 4, 5]).slice(1, 2));
        j.push(a);
        j.push(b);
        let out = j.finish().unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].as_ref(),
            &Int64Array::from(vec![Some(1), None, Some(3), Some(4), Some(5)]) as &dyn Array
        );
        // One array alone is the answer itself, not a copy.
        let mut j = Joiner::new(&DataType::Int64, 3);
        let one: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        j.push(Arc::clone(&one));
        assert!(Arc::ptr_eq(&j.finish().unwrap()[0], &one));
        // Strings are kept whole, for the join at the end.
        let mut j = Joiner::new(&DataType::Utf8, 2);
        j.push(Arc::new(StringArray::from(vec!["x"])));
        j.push(Arc::new(StringArray::from(vec!["y"])));
        assert_eq!(j.finish().unwrap().len(), 2);
        // An array of another type stops the appending: it and what follows
        // are kept, after what was appended.
        let mut j = Joiner::new(&DataType::Int64, 3);
        j.push(Arc::new(Int64Array::from(vec![1])));
        j.push(Arc::new(StringArray::from(vec!["odd"])));
        j.push(Arc::new(Int64Array::from(vec![2])));
        let out = j.finish().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].data_type(), &DataType::Utf8);
    }
}
