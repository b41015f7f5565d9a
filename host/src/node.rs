//! A node directory: `tahoe.cfg`, the TLS identity and the swissnum under `private/`.
//!
//! The TLS key and certificate live together in `private/node.pem`, as in a stock Tahoe
//! node, so `gbs` can serve a stock node's directory with the same NURL. The swissnum lives
//! in `private/swissnum`; a stock node's `private/storage.furl` is read when that is absent.

use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::protocol::{Nurl, NurlScheme, SpkiHash, Swissnum};

/// Why a node directory could not be created or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `create-node` on a directory that already has a `tahoe.cfg`.
    #[error("{0} already holds a node (tahoe.cfg exists); refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// `node.pem` lacks a certificate or key, or they cannot be parsed.
    #[error("{path}: {problem}")]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The TLS key and certificate, swissnum and node id of a storage server.
#[derive(Debug)]
pub struct NodeIdentity {
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    spki_hash: SpkiHash,
    swissnum: Swissnum,
}

impl NodeIdentity {
    /// Makes a new identity: an ECDSA P-256 self-signed certificate and a fresh swissnum.
    pub fn generate() -> Result<Self, NodeError> {
        let bad = |e: rcgen::Error| NodeError::BadIdentity {
            path: PathBuf::new(),
            problem: e.to_string(),
        };
        let key_pair = rcgen::KeyPair::generate().map_err(bad)?;
        let params = rcgen::CertificateParams::new(vec!["gbs".to_owned()]).map_err(bad)?;
        let certificate = params.self_signed(&key_pair).map_err(bad)?;
        let key = PrivateKeyDer::try_from(key_pair.serialize_der()).map_err(|problem| {
            NodeError::BadIdentity {
                path: PathBuf::new(),
                problem: problem.to_owned(),
            }
        })?;
        Self::from_parts(
            certificate.der().clone(),
            key,
            Swissnum::generate(),
            Path::new(""),
        )
    }

    fn from_parts(
        certificate: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        swissnum: Swissnum,
        path: &Path,
    ) -> Result<Self, NodeError> {
        let spki_hash = spki_hash_of(&certificate).map_err(|problem| NodeError::BadIdentity {
            path: path.to_owned(),
            problem,
        })?;
        Ok(Self {
            certificate,
            key,
            spki_hash,
            swissnum,
        })
    }

    /// Writes `node.pem` (certificate then key) and `swissnum` into `private_dir`, readable
    /// by the owner only (the directory too: it also holds the admin socket).
    pub fn write(&self, private_dir: &Path) -> Result<(), NodeError> {
        std::fs::create_dir_all(private_dir).map_err(io_error(private_dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(private_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_error(private_dir))?;
        }
        let pem = format!(
            "{}{}",
            pem_block("CERTIFICATE", self.certificate.as_ref()),
            pem_block("PRIVATE KEY", self.key.secret_der())
        );
        write_private(&private_dir.join("node.pem"), pem.as_bytes())?;
        write_private(
            &private_dir.join("swissnum"),
            format!("{}\n", self.swissnum.expose()).as_bytes(),
        )
    }

    /// Reads the identity from `private_dir`.
    pub fn load(private_dir: &Path) -> Result<Self, NodeError> {
        let pem_path = private_dir.join("node.pem");
        let pem = std::fs::read(&pem_path).map_err(io_error(&pem_path))?;
        let bad = |problem: &str| NodeError::BadIdentity {
            path: pem_path.clone(),
            problem: problem.to_owned(),
        };
        let certificate = CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or_else(|| bad("no CERTIFICATE block"))?
            .map_err(|_| bad("unreadable CERTIFICATE block"))?;
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|_| bad("no readable private key block"))?;
        let swissnum = read_swissnum(private_dir)?;
        Self::from_parts(certificate, key, swissnum, &pem_path)
    }

    /// Foolscap's Tub ID for this certificate: the SHA-1 of its DER, in Tahoe's base32.
    pub fn tub_id(&self) -> String {
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            self.certificate.as_ref(),
        );
        crate::protocol::base32_encode(digest.as_ref())
    }

    /// The hash of the certificate's public key, which the NURL pins.
    pub fn spki_hash(&self) -> SpkiHash {
        self.spki_hash
    }

    /// The swissnum.
    pub fn swissnum(&self) -> &Swissnum {
        &self.swissnum
    }

    /// A stable 20-byte id for this node, written into mutable containers and leases where
    /// stock Tahoe puts its Foolscap tub id. Derived from the key, so it lasts as long as it.
    pub fn nodeid(&self) -> [u8; 20] {
        let digest = Sha256::digest(self.spki_hash.to_string().as_bytes());
        let mut id = [0; 20];
        id.copy_from_slice(&digest[..20]);
        id
    }

    /// The NURL clients use to reach this node at `host:port`.
    pub fn nurl(&self, host: &str, port: u16) -> Nurl {
        Nurl {
            scheme: NurlScheme::Tcp,
            spki_hash: self.spki_hash,
            host: host.to_owned(),
            port,
            swissnum: self.swissnum.clone(),
        }
    }

    /// The certificate chain and key for the TLS server.
    pub fn tls_parts(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![self.certificate.clone()], self.key.clone_key())
    }
}

/// SHA-256 of the certificate's `SubjectPublicKeyInfo`.
pub fn spki_hash_of(certificate: &CertificateDer<'_>) -> Result<SpkiHash, String> {
    spki_of(certificate).map(|spki| SpkiHash::of_spki_der(&spki))
}

/// The certificate's `SubjectPublicKeyInfo` (DER), parsed with a parser that accepts the
/// X.509 v1 certificates stock Tahoe makes.
pub(crate) fn spki_of(certificate: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    Ok(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

fn read_swissnum(private_dir: &Path) -> Result<Swissnum, NodeError> {
    let path = private_dir.join("swissnum");
    match std::fs::read_to_string(&path) {
        Ok(text) => valid_swissnum(text.trim(), &path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A stock node keeps the swissnum as the last path segment of its storage fURL.
            let furl_path = private_dir.join("storage.furl");
            let furl = std::fs::read_to_string(&furl_path)
                .map_err(|_| NodeError::Io { path, source: e })?;
            let swissnum = furl.trim().rsplit('/').next().unwrap_or_default();
            valid_swissnum(swissnum, &furl_path)
        }
        Err(source) => Err(NodeError::Io { path, source }),
    }
}

fn valid_swissnum(text: &str, path: &Path) -> Result<Swissnum, NodeError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(NodeError::BadIdentity {
            path: path.to_owned(),
            problem: "the swissnum must be one non-empty word of letters and digits".to_owned(),
        });
    }
    Ok(Swissnum::new(text))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), NodeError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

/// Settings for `gbs create-node`.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Host name or address published in the NURL.
    pub hostname: String,
    /// Address to listen on.
    pub listen: std::net::IpAddr,
    /// Port; `None` picks a free one now so that the NURL stays fixed.
    pub port: Option<u16>,
    /// A directory holding the sample plugin libraries (as `cargo build` leaves them beside
    /// the `gbs` binary): when they are there, they are copied into `<node>/plugins/` and
    /// the config enables `access-log` and prepares `allow-list`.
    pub sample_plugins_from: Option<PathBuf>,
}

/// The sample plugins a new node can start with, by plugin name and library stem.
const SAMPLE_PLUGINS: [(&str, &str); 2] = [
    ("access-log", "gbs_sample_access_log"),
    ("allow-list", "gbs_sample_allow_list"),
];

/// Copies the sample plugin libraries found in `from` into `<dir>/plugins/`; returns
/// whether all of them were there.
fn install_sample_plugins(dir: &Path, from: &Path) -> Result<bool, NodeError> {
    let file = |stem: &str| {
        format!(
            "{}{stem}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )
    };
    if !SAMPLE_PLUGINS
        .iter()
        .all(|(_, stem)| from.join(file(stem)).is_file())
    {
        return Ok(false);
    }
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).map_err(io_error(&plugins))?;
    for (_, stem) in SAMPLE_PLUGINS {
        let target = plugins.join(file(stem));
        std::fs::copy(from.join(file(stem)), &target).map_err(io_error(&target))?;
    }
    Ok(true)
}

/// Creates a node directory and returns its NURL.
pub fn create_node(dir: &Path, options: &CreateOptions) -> Result<Nurl, NodeError> {
    let cfg_path = dir.join("tahoe.cfg");
    if cfg_path.exists() {
        return Err(NodeError::AlreadyExists(dir.to_owned()));
    }
    std::fs::create_dir_all(dir.join("storage")).map_err(io_error(dir))?;
    let port = match options.port {
        Some(port) => port,
        None => std::net::TcpListener::bind((options.listen, 0))
            .and_then(|l| l.local_addr())
            .map_err(io_error(dir))?
            .port(),
    };
    let identity = NodeIdentity::generate()?;
    identity.write(&dir.join("private"))?;
    let listen = match options.listen {
        std::net::IpAddr::V6(ip) => ip.to_string().replace(':', "\\:"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let host = if options.hostname.contains(':') {
        format!("[{}]", options.hostname)
    } else {
        options.hostname.clone()
    };
    let samples = match &options.sample_plugins_from {
        Some(from) => install_sample_plugins(dir, from)?,
        None => false,
    };
    let plugins = if samples {
        // allow-list would refuse every client without its token, stock Tahoe's included,
        // so it is prepared with a fresh token but left for the operator to enable.
        let token = crate::protocol::base32_encode(&rand::random::<[u8; 16]>());
        format!(
            "# Sample plugins, loaded by name from plugins/. To admit only clients that\n\
             # present the token, add allow-list here (their [client] section then needs\n\
             # storage.plugins = allow-list and [storageclient.plugins.allow-list] token = ...).\n\
             plugins = access-log\n\
             \n\
             [storageserver.plugins.access-log]\n\
             interval-seconds = 300\n\
             \n\
             [storageserver.plugins.allow-list]\n\
             tokens = {token}\n"
        )
    } else {
        "# plugins = name1, name2\n".to_owned()
    };
    let cfg = format!(
        "# Written by gbs create-node. Keys follow Tahoe-LAFS's tahoe.cfg.\n\
         [node]\n\
         nickname = gbs\n\
         tub.port = tcp:{port}:interface={listen}\n\
         tub.location = tcp:{host}:{port}\n\
         \n\
         [storage]\n\
         enabled = true\n\
         reserved_space = 1G\n\
         {plugins}\
         \n\
         [client]\n\
         # storage.plugins = name1\n"
    );
    std::fs::write(&cfg_path, cfg).map_err(io_error(&cfg_path))?;
    write_stock_files(dir, &identity, &format!("tcp:{host}:{port}"))?;
    Ok(identity.nurl(&options.hostname, port))
}

/// What stock Tahoe needs to run this directory as the same node: the file by which
/// `tahoe run` knows a client node's directory, and `private/storage.furl`, from which
/// Foolscap keeps the swissnum (its last segment) as long as the Tub ID in it is the one
/// the certificate gives. Without it, stock Tahoe made a new swissnum, and every NURL
/// handed out stopped working.
fn write_stock_files(dir: &Path, identity: &NodeIdentity, location: &str) -> Result<(), NodeError> {
    let tac = dir.join("tahoe-client.tac");
    std::fs::write(
        &tac,
        "# Marks a Tahoe-LAFS client node directory for `tahoe run`; written by gbs.\n",
    )
    .map_err(io_error(&tac))?;
    let furl = format!(
        "pb://{}@{location}/{}\n",
        identity.tub_id(),
        identity.swissnum.expose()
    );
    write_private(&dir.join("private").join("storage.furl"), furl.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_a_round_trip_through_private() {
        let dir = tempfile::tempdir().unwrap();
        let identity = NodeIdentity::generate().unwrap();
        identity.write(dir.path()).unwrap();
        let loaded = NodeIdentity::load(dir.path()).unwrap();
        assert_eq!(loaded.spki_hash(), identity.spki_hash());
        assert_eq!(loaded.swissnum(), identity.swissnum());
        assert_eq!(loaded.nodeid(), identity.nodeid());
        assert_eq!(identity.swissnum().expose().len(), 32);
        // Writing again must not overwrite an existing key.
        assert!(identity.write(dir.path()).is_err());
    }

    #[test]
    fn swissnum_falls_back_to_a_stock_storage_furl() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::generate().unwrap().write(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("swissnum")).unwrap();
        std::fs::write(
            dir.path().join("storage.furl"),
            "pb://tubid@tcp:h:1/abcdefghijklmnopqrstuvwxyz234567\n",
        )
        .unwrap();
        let loaded = NodeIdentity::load(dir.path()).unwrap();
        assert_eq!(
            loaded.swissnum().expose(),
            "abcdefghijklmnopqrstuvwxyz234567"
        );
    }

    #[test]
    fn create_node_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let options = CreateOptions {
            hostname: "127.0.0.1".into(),
            listen: [127, 0, 0, 1].into(),
            port: None,
            sample_plugins_from: None,
        };
        let nurl = create_node(dir.path(), &options).unwrap();
        let cfg = crate::config::NodeConfig::load(dir.path()).unwrap();
        assert_eq!(cfg.location, ("127.0.0.1".to_owned(), nurl.port));
        assert!(matches!(
            create_node(dir.path(), &options),
            Err(NodeError::AlreadyExists(_))
        ));
    }
}
