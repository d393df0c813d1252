//! coil's keys in a DataFusion session: `SET python.execution-mode = ...`.

use std::any::Any;

use coil_host::{Config, Runner, StartError, UdfSpec, WorkerCommand, KEYS};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};

/// coil's configuration as a DataFusion config extension: every key of
/// [`coil_host::KEYS`] (they all start `python.`), set with SQL `SET` or
/// [`ConfigOptions::set`]. SQL cannot write `-` in an unquoted name, so
/// `SET python.worker_count = 4` (or `SET "python.worker-count" = 4`) sets
/// `python.worker-count`: a `_` in a key is read as `-`. Values are checked as
/// [`Config::set`] checks it, so an unknown key or a bad value is the same
/// error as anywhere else in coil. A Python UDF reads the options of the
/// session that planned its query: `SET` before a query applies to it.
///
/// Its [`entries`](ExtensionOptions::entries) carry whole keys
/// (`python.worker-count`), so the options survive a trip through
/// `to_key_value_pairs` / `update_from_key_value_pair` (as Ballista ships
/// a session's settings).
///
/// [`ConfigOptions::set`]: datafusion::config::ConfigOptions::set
///
/// # Examples
///
/// ```
/// use coil_datafusion::PythonOptions;
/// use datafusion::prelude::SessionConfig;
///
/// let mut session = SessionConfig::new().with_option_extension(PythonOptions::default());
/// session.options_mut().set("python.worker-count", "3").unwrap();
/// assert!(session.options_mut().set("python.worker-cnt", "3").is_err());
/// let options = session.options().extensions.get::<PythonOptions>().unwrap();
/// assert_eq!(options.config().worker_count(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonOptions {
    config: Config,
    /// The worker program for process mode; `None`: found with
    /// [`WorkerCommand::locate`].
    worker: Option<WorkerCommand>,
}

impl PythonOptions {
    /// Options starting from `config` (e.g. the `--conf` pairs of a command
    /// line), which `SET` then changes.
    pub fn new(config: Config) -> Self {
        PythonOptions {
            config,
            worker: None,
        }
    }

    /// These options, with process-mode workers running `worker` (e.g.
    /// `coil worker`, as the `coil` command line runs them) rather than
    /// the `coil-worker` program [`WorkerCommand::locate`] finds.
    pub fn with_worker(mut self, worker: WorkerCommand) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Starts a runner for `spec` under these options.
    pub(crate) fn start(&self, spec: UdfSpec) -> Result<Runner, StartError> {
        match &self.worker {
            Some(w) => Runner::with_worker_command(&self.config, spec, w.clone()),
            None => Runner::new(&self.config, spec),
        }
    }

    /// These options with `config` instead of their own.
    pub fn with_config(&self, config: Config) -> PythonOptions {
        PythonOptions {
            config,
            worker: self.worker.clone(),
        }
    }

    /// The coil configuration these options make.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl ConfigExtension for PythonOptions {
    const PREFIX: &'static str = "python";
}

impl ExtensionOptions for PythonOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        // DataFusion hands over the key without its prefix; a whole key
        // comes back from `entries` (and through Ballista) with it. SQL
        // cannot write a `-` in an unquoted name, and coil's keys have no
        // `_`: `SET python.execution_mode` is `python.execution-mode`.
        let key = key.replace('_', "-");
        let key = match key.strip_prefix("python.") {
            Some(_) => key,
            None => format!("python.{key}"),
        };
        self.config
            .set(&key, value)
            .map_err(|e| DataFusionError::Configuration(e.to_string()))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        KEYS.iter()
            .map(|k| ConfigEntry {
                key: k.name.to_string(),
                value: self.config.get(k.name).map(str::to_string),
                description: k.doc,
            })
            .collect()
    }
}
