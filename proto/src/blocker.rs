//! Why a UDF cannot run in a sub-interpreter: CPython refuses to import a
//! single-phase-init extension module in an isolated sub-interpreter, with
//! an `ImportError` whose message says so. The executor classifies the
//! error (at load time and at call time) and names the blocking package in
//! its answer ([`Answer::LoadFailed`](crate::Answer::LoadFailed)'s
//! `blocker`, [`Answer::Incompatible`](crate::Answer::Incompatible)), so the
//! host falls back to process mode without reading exception text.

/// The message CPython gives when a single-phase-init extension module is
/// imported in an isolated sub-interpreter.
pub const INCOMPATIBLE: &str = "does not support loading in subinterpreters";

/// The top-level package named in an [`INCOMPATIBLE`] import error, if
/// `text` (an exception message or traceback) holds one.
///
/// # Examples
///
/// ```
/// let msg = "ImportError: module numpy._core._multiarray_umath does not support loading in subinterpreters";
/// assert_eq!(coil_proto::incompatible_module(msg).as_deref(), Some("numpy"));
/// assert_eq!(coil_proto::incompatible_module("ImportError: no module named x"), None);
/// ```
pub fn incompatible_module(text: &str) -> Option<String> {
    let at = text.find(INCOMPATIBLE)?;
    let before = text[..at].trim_end();
    let module = before.rsplit(' ').next()?;
    let top = module
        .split('.')
        .next()?
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
    (!top.is_empty()).then(|| top.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incompatible_module_is_named_from_cpythons_message() {
        let msg = "ImportError: module numpy._core._multiarray_umath does not support loading in subinterpreters";
        assert_eq!(incompatible_module(msg).as_deref(), Some("numpy"));
        assert_eq!(incompatible_module("ImportError: no module named x"), None);
    }

    #[test]
    fn a_message_without_a_module_names_none() {
        assert_eq!(incompatible_module(INCOMPATIBLE), None);
        assert_eq!(
            incompatible_module(&format!("module 'x.y' {INCOMPATIBLE}")).as_deref(),
            Some("x")
        );
    }
}
