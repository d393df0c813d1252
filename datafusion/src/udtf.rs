//! A Python table function (a generator UDF) in `FROM`, with constant
//! arguments: `SELECT * FROM words('a b c')`. The function runs once when
//! the query is planned, and its rows become the table (columns `c0`,
//! `c1`... for a tuple annotation, or the declared struct's fields).

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use coil_host::Runner;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;

use crate::udf::{PythonFunction, SharedRunner};
use crate::{Error, PythonOptions};

/// A Python generator UDF as a DataFusion table function.
pub struct PythonUdtf {
    function: PythonFunction,
    runner: SharedRunner,
    options: PythonOptions,
}

crate::by_function!(PythonUdtf);

impl PythonUdtf {
    /// The table function for `function` (of kind
    /// [`UdfKind::Table`](coil_host::UdfKind::Table)) under `options`, with
    /// `runner` if one is started for it.
    pub fn new(function: PythonFunction, runner: Option<Runner>, options: PythonOptions) -> Self {
        PythonUdtf {
            function,
            runner: SharedRunner::with(runner),
            options,
        }
    }

    /// What it is.
    pub fn function(&self) -> &PythonFunction {
        &self.function
    }

    /// Where it keeps its runner (its row form shares it).
    pub fn shared_runner(&self) -> SharedRunner {
        self.runner.clone()
    }

    fn constant(&self, i: usize, e: &Expr) -> Result<ScalarValue> {
        match e {
            Expr::Literal(v, _) => Ok(v.clone()),
            other => Err(DataFusionError::Plan(format!(
                "table function {} takes constant arguments in FROM; argument {} is {other}",
                self.function.name,
                i + 1
            ))),
        }
    }
}

impl TableFunctionImpl for PythonUdtf {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let values = args
            .exprs()
            .iter()
            .enumerate()
            .map(|(i, e)| self.constant(i, e))
            .collect::<Result<Vec<_>>>()?;
        // The declared argument types, where there are, else the literal's.
        let columns: Vec<ArrayRef> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let declared = self
                    .function
                    .args
                    .as_ref()
                    .and_then(|a| a.get(i).cloned().flatten());
                let v = match declared {
                    Some(t) if t != v.data_type() => v.cast_to(&t)?,
                    _ => v.clone(),
                };
                v.to_array_of_size(1)
            })
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("arg{i}"), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let runner = self.runner.get(&self.function, &self.options)?;
        let rows = runner.call_arrow_table(&batch).map_err(|e| Error::Udf {
            name: self.function.name.clone(),
            row: Some(crate::describe_row(&batch, &self.function.arg_names, 0)),
            error: Box::new(e),
        })?;
        // Without the input row's index (there is one input row).
        let rows = rows.project(&(1..rows.num_columns()).collect::<Vec<_>>())?;
        let table = MemTable::try_new(rows.schema(), vec![vec![rows]])?;
        Ok(Arc::new(table))
    }
}
