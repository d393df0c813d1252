//! The column path's pure parts: columns to and from their wire types, a
//! batch's slices joined, a table UDF's lists flattened.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringViewBuilder};
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    DictionaryArray, Int64Array, ListArray, StringArray, StringViewArray, StructArray, UInt64Array,
};
use arrow_schema::Field;

use super::*;

fn returns(declared: DataType, wire: DataType, table: bool) -> Returns {
    Returns {
        declared,
        wire,
        table,
    }
}

#[test]
fn views_and_dictionaries_travel_as_the_plain_arrays_they_stand_for() {
    let views: ArrayRef = Arc::new(StringViewArray::from(vec![Some("a"), None, Some("ccc")]));
    let plain = to_wire(&views).unwrap();
    assert_eq!(plain.data_type(), &DataType::Utf8);
    assert_eq!(
        plain.as_ref(),
        &StringArray::from(vec![Some("a"), None, Some("ccc")]) as &dyn Array
    );
    let dict: DictionaryArray<Int32Type> = vec![Some("x"), None, Some("y"), Some("x")]
        .into_iter()
        .collect();
    let dict: ArrayRef = Arc::new(dict);
    let plain = to_wire(&dict).unwrap();
    assert_eq!(
        plain.as_ref(),
        &StringArray::from(vec![Some("x"), None, Some("y"), Some("x")]) as &dyn Array
    );
    let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    assert!(
        Arc::ptr_eq(&to_wire(&ints).unwrap(), &ints),
        "a plain array travels as it is"
    );
}

#[test]
fn a_list_of_views_travels_as_a_list_of_strings_and_comes_back_as_declared() {
    let mut b = ListBuilder::new(StringViewBuilder::new());
    b.values().append_value("p");
    b.values().append_null();
    b.append(true);
    b.append(false);
    b.values().append_value("q");
    b.append(true);
    let lists: ArrayRef = Arc::new(b.finish());
    let declared = lists.data_type().clone();
    let wire = to_wire(&lists).unwrap();
    let DataType::List(item) = wire.data_type() else {
        panic!("{}", wire.data_type())
    };
    assert_eq!(item.data_type(), &DataType::Utf8);
    assert_eq!(wire_type(&declared).as_ref(), Some(wire.data_type()));
    let back = from_wire(wire, &declared).unwrap();
    assert_eq!(back.data_type(), &declared);
    assert_eq!(back.as_ref(), lists.as_ref());
}

#[test]
fn results_of_a_view_type_are_built_from_their_plain_arrays() {
    let plain: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
    let back = from_wire(plain, &DataType::Utf8View).unwrap();
    assert_eq!(
        back.as_ref(),
        &StringViewArray::from(vec![Some("a"), None]) as &dyn Array
    );
}

#[test]
fn slices_join_into_one_array_of_the_declared_type_with_every_row() {
    let r = returns(DataType::Utf8View, DataType::Utf8, false);
    let parts: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b"])),
        Arc::new(StringArray::from(vec![None, Some("c")])),
    ];
    let joined = r.join(parts.clone(), 4).unwrap();
    assert_eq!(
        joined.as_ref(),
        &StringViewArray::from(vec![Some("a"), Some("b"), None, Some("c")]) as &dyn Array
    );
    let short = r.join(parts, 5).unwrap_err().to_string();
    assert!(short.contains("4 results for a batch of 5 rows"), "{short}");
    let none = r.join(Vec::new(), 0).unwrap();
    assert_eq!((none.len(), none.data_type()), (0, &DataType::Utf8View));
}

#[test]
fn a_slice_of_another_type_than_declared_fails_the_join_naming_both() {
    let r = returns(DataType::Int64, DataType::Int64, false);
    let parts: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["a"]))];
    let e = r.join(parts, 1).unwrap_err().to_string();
    assert!(e.contains("Utf8") && e.contains("Int64"), "{e}");
}

#[test]
fn a_table_udfs_lists_flatten_into_rows_led_by_their_input_row() {
    // Row 0 emits two rows, row 1 none, row 2 one; each a struct {w, n}.
    let fields = [
        Field::new("w", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ];
    let values = StructArray::from(vec![
        (
            Arc::new(fields[0].clone()),
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
        ),
        (
            Arc::new(fields[1].clone()),
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
    ]);
    let item = Arc::new(Field::new("item", values.data_type().clone(), true));
    let lists: ArrayRef = Arc::new(lists_of(&[2, 0, 1], item, Arc::new(values)));
    let batch = flatten(&lists).unwrap();
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["row", "w", "n"]);
    assert_eq!(
        batch.column(0).as_ref(),
        &UInt64Array::from(vec![0, 0, 2]) as &dyn Array
    );
    assert_eq!(
        batch.column(1).as_ref(),
        &StringArray::from(vec!["a", "b", "c"]) as &dyn Array
    );
}

#[test]
fn a_table_udf_emitting_plain_values_flattens_into_a_value_column() {
    let item = Arc::new(Field::new("item", DataType::Int64, true));
    let values: ArrayRef = Arc::new(Int64Array::from(vec![7, 8]));
    let lists: ArrayRef = Arc::new(lists_of(&[1, 1], item, values));
    let batch = flatten(&lists).unwrap();
    assert_eq!(batch.schema_ref().field(1).name(), "value");
    assert_eq!(batch.num_rows(), 2);
    let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
    assert!(flatten(&ints)
        .unwrap_err()
        .to_string()
        .contains("table results of type Int64"));
}

/// A list array whose lists hold `lens` items of `values`, in order.
fn lists_of(lens: &[usize], item: arrow_schema::FieldRef, values: ArrayRef) -> ListArray {
    let shape = ListArray::from_iter_primitive::<Int64Type, _, _>(
        lens.iter().map(|&n| Some(vec![Some(0i64); n])),
    );
    ListArray::new(item, shape.offsets().clone(), values, None)
}
