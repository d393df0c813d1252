//! What the `process` and `modes` benches share: the direct-call floor over
//! the UDFs of `benches/udfs.py`.

use std::path::Path;

use coil_ipc::{Row, Value};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};

/// `udfs.<name>` from `benches/udfs.py`, imported into this process.
pub fn bench_udf<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyAny> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let sys = py.import("sys").unwrap();
    sys.getattr("path")
        .unwrap()
        .call_method1("insert", (0, dir.display().to_string()))
        .unwrap();
    py.import("udfs").unwrap().getattr(name).unwrap()
}

/// The floor: converts each row's one value to Python, calls `func` through
/// pyo3 and converts the result back, with no ring, no codec and no other
/// thread or process.
pub fn direct(py: Python<'_>, func: &Bound<'_, PyAny>, rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| match &r[0] {
            Value::Int(i) => Value::Int(
                func.call1((PyInt::new(py, *i),))
                    .unwrap()
                    .extract::<i64>()
                    .unwrap(),
            ),
            Value::Str(s) => {
                let out = func.call1((PyString::new(py, s),)).unwrap();
                Value::Str(out.cast::<PyString>().unwrap().to_str().unwrap().to_owned())
            }
            _ => unreachable!("the bench UDFs take an int or a string"),
        })
        .collect()
}
