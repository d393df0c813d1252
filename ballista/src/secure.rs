//! Who may talk to a coil cluster: mutual TLS between the scheduler, the
//! executors and the clients.
//!
//! Anyone who can submit a plan to a scheduler runs Python on every
//! executor, and anyone who registers as an executor is sent plans (with
//! the UDFs' sources) and data. A cluster reachable beyond loopback must
//! therefore know its members. Ballista's clients cannot add a header on
//! every connection it makes (an executor's calls to the scheduler carry
//! none), but every one of them passes through an endpoint hook, which can
//! make it a TLS connection presenting a certificate. So membership is a
//! key pair: [`ClusterTls::generate`] writes a cluster CA and one member
//! certificate signed by it, every program and client loads the same
//! directory ([`ClusterTls::load`]), and each side of every connection
//! checks that the other holds a certificate of that CA. The key file is
//! the secret: it is read from a file (never the command line) and refused
//! when another user could read it.
//!
//! Member certificates name the cluster (`coil-cluster`), not a host, so
//! one directory serves every machine whatever its address.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballista_core::extension::EndpointOverrideFn;
use ballista_core::utils::{create_grpc_client_endpoint, GrpcClientConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// The name member certificates carry and connections verify.
pub const CLUSTER_NAME: &str = "coil-cluster";
/// The cluster CA's certificate, in a TLS directory.
pub const CA_FILE: &str = "ca.pem";
/// The member certificate, in a TLS directory.
pub const CERT_FILE: &str = "member.pem";
/// The member key (the secret), in a TLS directory.
pub const KEY_FILE: &str = "member.key";

/// Why a cluster's TLS material could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A key another user could read or replace.
    #[error(
        "{path}: {reason}; the cluster key must be readable by its owner only \
         (chmod 600, owned by the user running coil)"
    )]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `generate` would overwrite a cluster's existing material.
    #[error("{path} exists: a new cluster CA would lock out every member holding the old one; choose an empty directory")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Generating the CA or the member certificate failed.
    #[error("generating the cluster's certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A program was asked to listen beyond loopback with no TLS.
    #[error(
        "refusing to listen on {host} without --tls: anyone who can reach this port could \
         run Python on every executor. Make a cluster key pair with `coil-scheduler make-tls \
         DIR`, copy DIR to each machine and pass --tls DIR to every program (and to clients), \
         or pass --insecure on a network you trust completely"
    )]
    Exposed {
        /// The address it was asked to bind.
        host: String,
    },
}

/// A cluster's TLS material: its CA and the member identity every
/// program and client presents.
#[derive(Clone)]
pub struct ClusterTls {
    dir: PathBuf,
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |error| TlsError::Io {
        path: path.to_owned(),
        error,
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))
}

impl ClusterTls {
    /// Writes a new cluster CA and a member certificate and key signed by
    /// it into `dir` (created mode 0700 when missing; the key mode 0600),
    /// and loads them. The CA's own key is not kept: a cluster that needs
    /// another member identity is given a new directory.
    ///
    /// # Errors
    ///
    /// When the files exist already, or cannot be written.
    pub fn generate(dir: &Path) -> Result<ClusterTls, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        for name in [CA_FILE, CERT_FILE, KEY_FILE] {
            let path = dir.join(name);
            if path.exists() {
                return Err(TlsError::Exists { path });
            }
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;

        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, format!("{CLUSTER_NAME} CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = rcgen::CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut member = CertificateParams::new(vec![CLUSTER_NAME.to_owned()])?;
        member
            .distinguished_name
            .push(DnType::CommonName, CLUSTER_NAME);
        member.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        member.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let member_key = KeyPair::generate()?;
        let member_cert = member.signed_by(&member_key, &issuer)?;

        write_new(&dir.join(CA_FILE), &issuer.pem(), 0o644)?;
        write_new(&dir.join(CERT_FILE), &member_cert.pem(), 0o644)?;
        write_new(&dir.join(KEY_FILE), &member_key.serialize_pem(), 0o600)?;
        ClusterTls::load(dir)
    }

    /// Loads a directory [`ClusterTls::generate`] wrote.
    ///
    /// # Errors
    ///
    /// A missing or unreadable file, or a key file that is not the
    /// running user's own, not a regular file, or that group or others
    /// may read or write.
    pub fn load(dir: &Path) -> Result<ClusterTls, TlsError> {
        let key_path = dir.join(KEY_FILE);
        let meta = fs::symlink_metadata(&key_path).map_err(io(&key_path))?;
        let unsafe_key = |reason: String| TlsError::Unsafe {
            path: key_path.clone(),
            reason,
        };
        if !meta.file_type().is_file() {
            return Err(unsafe_key("not a regular file".into()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(unsafe_key(format!(
                "owned by uid {}, not by this user (uid {me})",
                meta.uid()
            )));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(unsafe_key(format!(
                "mode {mode:03o} lets others read or write it"
            )));
        }
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(io(&path))
        };
        Ok(ClusterTls {
            dir: dir.to_owned(),
            ca: Certificate::from_pem(read(CA_FILE)?),
            identity: Identity::from_pem(read(CERT_FILE)?, read(KEY_FILE)?),
        })
    }

    /// The directory the material came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server's side: present the member certificate, and accept only
    /// peers presenting one the cluster's CA signed.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// A client's side: trust only the cluster's CA (for the name
    /// [`CLUSTER_NAME`], whatever the host), and present the member
    /// certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .domain_name(CLUSTER_NAME)
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }

    /// Ballista's endpoint hook, turning each of its connections (it
    /// names them all `http://`) into a mutual TLS one. Ballista's
    /// default client timeouts apply: the hook cannot read the ones the
    /// endpoint was made with.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let tls = self.client_config();
        Arc::new(move |endpoint: Endpoint| {
            let uri = endpoint.uri();
            let authority = uri
                .authority()
                .ok_or_else(|| format!("no host in {uri}"))?
                .clone();
            let config = GrpcClientConfig::default();
            let secure =
                create_grpc_client_endpoint(format!("https://{authority}"), Some(&config))?;
            Ok(secure.tls_config(tls.clone())?)
        })
    }
}

/// Whether a program may listen on `host`: loopback always; any other
/// address only with TLS, or when the user said `--insecure` (which logs
/// a warning naming the risk).
///
/// # Errors
///
/// [`TlsError::Exposed`] for a non-loopback address with neither.
pub fn check_exposure(
    program: &str,
    host: &str,
    tls: Option<&ClusterTls>,
    insecure: bool,
) -> Result<(), TlsError> {
    let loopback = host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if loopback || tls.is_some() {
        return Ok(());
    }
    if insecure {
        tracing::warn!(
            "{program} listens on {host} with no TLS (--insecure): anyone who can reach its \
             ports can run Python on the cluster's executors and read its data"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{program}: WARNING: listening on {host} with no TLS (--insecure): anyone who can \
             reach its ports can run Python on the cluster's executors and read its data"
        );
        return Ok(());
    }
    Err(TlsError::Exposed {
        host: host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coil-tls-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_material_loads_and_is_private() {
        let dir = scratch("gen");
        ClusterTls::generate(&dir).unwrap();
        let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let pem = fs::read_to_string(dir.join(CERT_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(ClusterTls::load(&dir).is_ok());
        // A second generate would lock out the members of the first.
        let again = ClusterTls::generate(&dir).unwrap_err();
        assert!(matches!(again, TlsError::Exists { .. }), "{again}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = scratch("mode");
        ClusterTls::generate(&dir).unwrap();
        let key = dir.join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClusterTls::load(&dir).unwrap_err();
        assert!(e.to_string().contains("mode 644"), "{e}");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        // A symlink to the key is not the key.
        fs::rename(&key, dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &key).unwrap();
        let e = ClusterTls::load(&dir).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_loopback_may_listen_without_tls() {
        for host in ["127.0.0.1", "::1", "localhost"] {
            assert!(check_exposure("t", host, None, false).is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "10.1.2.3", "::", "node7"] {
            let e = check_exposure("t", host, None, false).unwrap_err();
            assert!(e.to_string().contains("--tls"), "{e}");
            assert!(check_exposure("t", host, None, true).is_ok(), "{host}");
        }
    }
}
