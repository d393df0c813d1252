use std::sync::Arc;

use super::*;
use arrow_array::{Int64Array, StringArray};
use proptest::prelude::*;

#[test]
fn a_shelved_frame_hands_over_the_very_arrays_and_only_with_its_shelf() {
    let shelf = Shelf::new();
    let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let mut out = Vec::new();
    Columns::shelve(7, 3, std::slice::from_ref(&a), &shelf, &mut out).unwrap();
    assert!(
        out.len() <= 8 + 4 + 4 + 8,
        "the frame carries a key, not the bytes"
    );
    // Without the shelf (a worker process's frame) it is refused, and
    // the arrays stay put.
    let e = Columns::decode(&out[..]).unwrap_err().to_string();
    assert!(e.contains("shelved"), "{e}");
    assert_eq!(shelf.len(), 1);
    let d = Columns::decode_from(
        &out[..],
        Refs {
            shelf: Some(&shelf),
            ..Refs::default()
        },
    )
    .unwrap();
    assert_eq!((d.seq, d.rows), (7, 3));
    assert!(Arc::ptr_eq(&d.columns[0], &a));
    assert!(shelf.is_empty());
    // Taken once: the same frame again names nothing.
    let e = Columns::decode_from(
        &out[..],
        Refs {
            shelf: Some(&shelf),
            ..Refs::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("no columns on the shelf"), "{e}");
    // What encode refuses, shelve refuses, shelving nothing.
    let short: ArrayRef = Arc::new(Int64Array::from(vec![1]));
    let e = Columns::shelve(8, 3, &[short], &shelf, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ColumnError::Length { .. }), "{e}");
    assert!(shelf.is_empty());
}

fn round_trip(columns: &[ArrayRef]) -> Vec<ArrayRef> {
    let mut out = Vec::new();
    let rows = columns.first().map_or(0, |c| c.len());
    Columns::encode(9, rows, columns, &mut out).unwrap();
    let d = Columns::decode(&out[..]).unwrap();
    assert_eq!((d.seq, d.rows), (9, columns.first().map_or(0, |c| c.len())));
    d.columns
}

/// One column of every type a column frame carries, with nulls, edge
/// values and parameters: the test kit's one copy.
fn every_type() -> Vec<ArrayRef> {
    coil_testkit::arrow::every_type()
}

#[test]
fn every_supported_type_round_trips_with_its_nulls_and_parameters() {
    let columns = every_type();
    let back = round_trip(&columns);
    assert_eq!(back.len(), columns.len());
    for (a, b) in columns.iter().zip(&back) {
        assert_eq!(a.to_data(), b.to_data(), "{}", a.data_type());
    }
}

#[test]
fn sliced_arrays_travel_as_their_slice() {
    let columns = every_type();
    let sliced: Vec<ArrayRef> = columns.iter().map(|c| c.slice(1, 3)).collect();
    for (a, b) in sliced.iter().zip(round_trip(&sliced)) {
        assert_eq!(a.as_ref(), b.as_ref(), "{}", a.data_type());
    }
}

#[test]
fn unsupported_types_and_ragged_columns_are_refused() {
    let view: ArrayRef = Arc::new(arrow_array::StringViewArray::from(vec!["a"]));
    let mut out = Vec::new();
    assert!(matches!(
        Columns::encode(0, 1, &[view], &mut out),
        Err(ColumnError::Unsupported { column: 0, .. })
    ));
    let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let b: ArrayRef = Arc::new(Int64Array::from(vec![1]));
    assert!(matches!(
        Columns::encode(0, 2, &[a, b], &mut out),
        Err(ColumnError::Length { column: 1, .. })
    ));
}

#[test]
fn types_travel_by_themselves_and_deep_nesting_is_refused() {
    for c in every_type() {
        let bytes = Columns::type_to_bytes(c.data_type()).unwrap();
        assert_eq!(&Columns::type_from_bytes(&bytes).unwrap(), c.data_type());
    }
    let mut t = DataType::Int8;
    for _ in 0..40 {
        t = DataType::List(Arc::new(Field::new("item", t, true)));
    }
    assert!(!Columns::supports(&t));
    // A peer's list of lists nesting past the limit: refused, not a
    // stack overflow.
    let mut bytes = vec![25u8; 0];
    for _ in 0..10_000 {
        bytes.extend([25, 4, 0, b'i', b't', 1, 0, 0]);
    }
    bytes.push(5);
    assert!(Columns::type_from_bytes(&bytes).is_err());
}

#[test]
fn lies_about_lengths_offsets_and_text_are_protocol_errors() {
    let s: ArrayRef = Arc::new(StringArray::from(vec!["ab", "c"]));
    let mut out = Vec::new();
    Columns::encode(1, 2, &[s], &mut out).unwrap();
    // Layout: seq 8, rows 4, columns 4, type 1, flags 1, offsets 12,
    // data length 8, data 3.
    let offsets = 8 + 4 + 4 + 2;
    let mut bad_offset = out.clone();
    bad_offset[offsets + 4] = 9; // the second offset past the data
    assert!(Columns::decode(&bad_offset[..]).is_err());
    let mut bad_text = out.clone();
    let data = offsets + 12 + 8;
    bad_text[data] = 0xff; // not UTF-8
    assert!(Columns::decode(&bad_text[..]).is_err());
    let mut more_rows = out.clone();
    more_rows[8] = 200;
    assert!(Columns::decode(&more_rows[..]).is_err());
    let mut many_columns = out.clone();
    many_columns[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Columns::decode(&many_columns[..]).is_err());
    let mut trailing = out.clone();
    trailing.push(0);
    assert!(Columns::decode(&trailing[..]).is_err());
    assert!(Columns::decode(&out[..out.len() - 1]).is_err());
}

proptest! {
    /// Any bytes at all decode to columns or a `ProtoError`: never a
    /// panic, never an out-of-bounds read.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Columns::decode(&bytes[..]);
    }

    /// Any byte of a valid frame of every type, scribbled over, gives
    /// back columns or an error: never a panic.
    #[test]
    fn scribbled_frames_never_panic(at in 0usize..4096, byte in any::<u8>()) {
        let mut out = Vec::new();
        Columns::encode(3, 4, &every_type(), &mut out).unwrap();
        let at = at % out.len();
        out[at] = byte;
        let _ = Columns::decode(&out[..]);
    }

    /// Int64 and string columns of any values, nulls and slice round
    /// trip exactly.
    #[test]
    fn any_columns_round_trip(
        ints in proptest::collection::vec(proptest::option::of(any::<i64>()), 1..64),
        text in proptest::collection::vec(proptest::option::of(".{0,8}"), 1..64),
        cut in 0usize..8,
    ) {
        let n = ints.len().min(text.len());
        let a: ArrayRef = Arc::new(Int64Array::from(ints[..n].to_vec()));
        let b: ArrayRef = Arc::new(StringArray::from(text[..n].to_vec()));
        let cut = cut.min(n - 1);
        let columns = [a.slice(cut, n - cut), b.slice(cut, n - cut)];
        let back = round_trip(&columns);
        prop_assert_eq!(columns[0].as_ref(), back[0].as_ref());
        prop_assert_eq!(columns[1].as_ref(), back[1].as_ref());
    }
}
