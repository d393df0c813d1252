//! `CREATE FUNCTION ... LANGUAGE PYTHON`: DataFusion's function factory.

use async_trait::async_trait;
use coil_host::UdfSpec;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::{FunctionFactory, RegisterFunction, SessionState};
use datafusion::logical_expr::{CreateFunction, Expr, Volatility};

use crate::udf::{options_of, PythonFunction};
use crate::Error;

/// Makes `CREATE FUNCTION name(types) RETURNS type LANGUAGE PYTHON AS
/// 'body'` a Python UDF run by coil. The body is either where the
/// function is, `'path/to/file.py:name'` (or `'package.module:name'`), or
/// the function's Python source (`$$ def slug(title): ... $$`), which
/// must define a function of the SQL name. Argument and return types the
/// statement leaves out come from the function's annotations:
/// `CREATE FUNCTION slug() LANGUAGE PYTHON AS 'demo.py:slug'` for `def
/// slug(title: str) -> str` (empty parentheses: the annotations say). `IMMUTABLE` or `STABLE` let DataFusion fold
/// calls with literal arguments while it plans; the default is
/// `VOLATILE`. The function starts (and must load) when the statement
/// runs, under the session's `python.*` options.
///
/// Install it with [`crate::python_session`] or
/// `SessionContext::with_function_factory`.
#[derive(Debug, Default)]
pub struct PythonFunctionFactory;

#[async_trait]
impl FunctionFactory for PythonFunctionFactory {
    async fn create(
        &self,
        state: &SessionState,
        statement: CreateFunction,
    ) -> Result<RegisterFunction> {
        let name = statement.name.clone();
        match &statement.params.language {
            Some(l) if l.value.eq_ignore_ascii_case("python") => {}
            other => {
                return Err(Error::NotPython {
                    name,
                    language: other.as_ref().map(|l| l.value.clone()),
                }
                .into())
            }
        }
        // PostgreSQL's and DataFusion's rule: only OR REPLACE replaces.
        let exists = state.scalar_functions().contains_key(&name)
            || state.aggregate_functions().contains_key(&name)
            || state.window_functions().contains_key(&name)
            || state.table_functions().contains_key(&name);
        if exists && !statement.or_replace {
            return Err(Error::Exists { name }.into());
        }
        let body = match &statement.params.function_body {
            Some(Expr::Literal(
                ScalarValue::Utf8(Some(b))
                | ScalarValue::LargeUtf8(Some(b))
                | ScalarValue::Utf8View(Some(b)),
                _,
            )) => b.clone(),
            _ => return Err(Error::NoBody { name }.into()),
        };
        let spec = spec_of_body(&name, &body)?;
        // `name()`: no types in SQL, the annotations give them (a function
        // without parameters reads as one that takes none).
        let args = statement
            .args
            .as_ref()
            .filter(|args| !args.is_empty())
            .map(|args| args.iter().map(|a| a.data_type.clone()).collect());
        let sql_names: Option<Vec<String>> = statement.args.as_ref().map(|args| {
            args.iter()
                .filter_map(|a| a.name.as_ref().map(|n| n.value.clone()))
                .collect()
        });
        let returns = statement.return_type.clone();
        let volatility = statement.params.behavior.unwrap_or(Volatility::Volatile);
        let options = options_of(state.config().options());
        let options_now = options.clone();
        // Reading the definition needs one executor, not the pool: a
        // script of many CREATE FUNCTIONs starts none of their workers
        // until a query calls them.
        let mut one = options.config().clone();
        one.set(coil_host::WORKER_COUNT, "1")
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let options = options.with_config(one);
        // Starting the UDF blocks (a requirements file may even be
        // installed): keep it off the async runtime's threads.
        let task = SpawnedTask::spawn_blocking(move || {
            PythonFunction::describe(&name, spec, args, returns, volatility, &options).map(
                |(function, runner)| {
                    // Its worker ends here.
                    drop(runner);
                    function
                },
            )
        });
        let mut function = task
            .join()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        if let Some(names) = sql_names.filter(|n| n.len() == function.arg_names.len()) {
            function.arg_names = names;
        }
        crate::registered(function, None, options_now)
    }
}

/// The UDF a `CREATE FUNCTION` body names: a target (`file.py:name`,
/// `package.module:name`: one word with a colon before an identifier), or
/// else Python source defining `name`.
pub(crate) fn spec_of_body(name: &str, body: &str) -> Result<UdfSpec, Error> {
    let trimmed = body.trim();
    let is_target = !trimmed.is_empty()
        && !trimmed.contains(char::is_whitespace)
        && trimmed.rsplit_once(':').is_some_and(|(file, func)| {
            !file.is_empty()
                && func
                    .chars()
                    .next()
                    .is_some_and(|c| c == '_' || c.is_alphabetic())
                && func.chars().all(|c| c == '_' || c.is_alphanumeric())
        });
    if is_target {
        return Ok(UdfSpec::new(trimmed));
    }
    coil_host::udf_from_source(body, name).map_err(|error| Error::Source {
        name: name.to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_a_target_or_source() {
        assert_eq!(
            spec_of_body("slug", " examples/udfs/demo.py:slug ")
                .unwrap()
                .target,
            "examples/udfs/demo.py:slug"
        );
        assert_eq!(spec_of_body("f", "pkg.mod:f").unwrap().target, "pkg.mod:f");
        let inline = spec_of_body("slug", "def slug(t): return t.lower()").unwrap();
        assert!(inline.target.ends_with(".py:slug"), "{}", inline.target);
        let inline = spec_of_body("slug", "\ndef slug(t):\n    return t\n").unwrap();
        assert!(inline.target.ends_with(".py:slug"), "{}", inline.target);
    }
}
