//! The Arrow type a UDF's annotation names, as the loader (`udf.py`)
//! names it: coil's one type grammar ([`coil_proto::TypeName`]).

use arrow_schema::DataType;
use pyo3::prelude::*;

/// The Arrow type the loader named (`"int64"`, `"list<utf8>"`,
/// `"timestamp[us]"`, `"struct<c0:int64,c1:utf8>"`), or `None` for
/// `None` or anything the grammar does not read.
pub(crate) fn type_of_name(name: &Bound<'_, PyAny>) -> Option<DataType> {
    let name: String = name.extract().ok()?;
    name.parse::<coil_proto::TypeName>()
        .ok()
        .map(coil_proto::TypeName::into_data_type)
}
