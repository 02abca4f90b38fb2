//! Where the node service listens, and who may reach it.
//!
//! The node server runs as root with the power to trace every process on
//! the host, and has no authentication of its own: it listens only on
//! loopback or on a root-only unix socket. In a cluster, clients reach it
//! through the API server's port-forward, which connects to the pod's
//! loopback, so RBAC on `pods/portforward` is the access control. Any other
//! TCP address must be asked for explicitly (`--allow-non-loopback`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener, UnixSocket};

/// Where the node listens when not told: loopback only.
pub const DEFAULT_LISTEN: &str = "tcp://127.0.0.1:7100";

/// Connections a listener lets wait before the server accepts them.
const BACKLOG: u32 = 1024;

/// A listen address: `unix:///path/to.sock`, `tcp://127.0.0.1:PORT`,
/// `tcp://[::1]:PORT` or `tcp://localhost:PORT`.
///
/// # Examples
///
/// ```
/// use gadget_node::listen::ListenAddress;
///
/// let address: ListenAddress = "tcp://localhost:7100".parse().unwrap();
/// assert_eq!(address.to_string(), "tcp://127.0.0.1:7100");
/// assert!(address.is_local());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// A listen address that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidListenAddress {
    /// Neither `unix:` nor `tcp://`.
    #[error(
        "listen address {0:?} must start with unix:// or tcp:// \
         (e.g. unix:///run/gadget/gadget.sock or tcp://127.0.0.1:7100)"
    )]
    Scheme(String),
    /// `unix:` with no path.
    #[error("listen address {0:?} has no socket path")]
    EmptyPath(String),
    /// `tcp://` with something other than an IP address or `localhost`,
    /// or without a port.
    #[error(
        "listen address {0:?} is not tcp://IP:PORT, tcp://[IPv6]:PORT or tcp://localhost:PORT"
    )]
    Tcp(String),
}

/// The node could not listen where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A non-loopback address without `--allow-non-loopback`.
    #[error(
        "refusing to listen on {0}: it is not a loopback address, and the node service \
         has no authentication of its own; listen on 127.0.0.1, [::1] or a unix socket \
         (clients reach it through a port-forward), or pass --allow-non-loopback if \
         something else protects that address"
    )]
    NotLoopback(ListenAddress),
    /// Something other than a socket is at the unix socket's path.
    #[error("{0} exists and is not a socket; not removing it")]
    NotASocket(PathBuf),
    /// Another process serves on the unix socket.
    #[error("{0} is in use: another process accepts connections on it")]
    InUse(PathBuf),
    /// The socket could not be created, bound or listened on.
    #[error("cannot listen on {address}")]
    Bind {
        /// Where.
        address: ListenAddress,
        /// Why.
        source: std::io::Error,
    },
}

/// A listen address could not be reached as a client.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {address}")]
pub struct NodeUnreachable {
    /// Where.
    pub address: ListenAddress,
    /// Why.
    pub source: tonic::transport::Error,
}

impl FromStr for ListenAddress {
    type Err = InvalidListenAddress;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = text.strip_prefix("unix:") {
            // unix:///abs/path, or unix:path as gRPC names also allow.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(InvalidListenAddress::EmptyPath(text.to_string()));
            }
            return Ok(ListenAddress::Unix(PathBuf::from(path)));
        }
        let Some(host_port) = text.strip_prefix("tcp://") else {
            return Err(InvalidListenAddress::Scheme(text.to_string()));
        };
        let invalid = || InvalidListenAddress::Tcp(text.to_string());
        if let Some(port) = host_port.strip_prefix("localhost:") {
            // Resolved here, not by the resolver: "localhost" must not turn
            // into whatever /etc/hosts says, and a server binds one address.
            // Digits only, as after an IP: u16's parser also takes a sign.
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            let port = port.parse().map_err(|_| invalid())?;
            return Ok(ListenAddress::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        // Host names other than localhost are refused for the same reason.
        host_port
            .parse()
            .map(ListenAddress::Tcp)
            .map_err(|_| invalid())
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddress::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

impl ListenAddress {
    /// Whether only this host can connect: a unix socket or a loopback IP.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddress::Unix(_) => true,
            ListenAddress::Tcp(address) => address.ip().is_loopback(),
        }
    }

    /// Refuses a non-local address unless `allow_non_loopback`, and warns
    /// when it is allowed.
    pub fn check_exposure(&self, allow_non_loopback: bool) -> Result<(), ListenError> {
        if self.is_local() {
            return Ok(());
        }
        if !allow_non_loopback {
            return Err(ListenError::NotLoopback(self.clone()));
        }
        tracing::warn!(
            address = %self,
            "listening on a non-loopback address: anyone who can reach it can trace \
             every process on this node"
        );
        Ok(())
    }

    /// Starts listening. A unix socket replaces a stale socket file, is
    /// created root-only (mode 0600) and removed when the listener is
    /// dropped.
    ///
    /// Does not check the address's exposure: call
    /// [`check_exposure`](Self::check_exposure) first.
    pub async fn bind(&self) -> Result<Listener, ListenError> {
        let bind_error = |source| ListenError::Bind {
            address: self.clone(),
            source,
        };
        match self {
            ListenAddress::Tcp(address) => {
                let listener = TcpListener::bind(address).await.map_err(bind_error)?;
                let address = listener.local_addr().map_err(bind_error)?;
                Ok(Listener::Tcp { listener, address })
            }
            ListenAddress::Unix(path) => {
                remove_stale_socket(path)?;
                let socket = UnixSocket::new_stream().map_err(bind_error)?;
                socket.bind(path).map_err(bind_error)?;
                let socket_file = SocketFile::new(path).map_err(bind_error)?;
                // Before listen(): until then a connect is refused, so no
                // one gets in while the file still has the umask's mode.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(bind_error)?;
                let listener = socket.listen(BACKLOG).map_err(bind_error)?;
                Ok(Listener::Unix {
                    listener,
                    socket_file,
                })
            }
        }
    }

    /// A gRPC channel to a node listening here, connected within `timeout`.
    pub async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<tonic::transport::Channel, NodeUnreachable> {
        let uri = match self {
            // tonic dials `unix:` URIs itself.
            ListenAddress::Unix(path) => format!("unix://{}", path.display()),
            ListenAddress::Tcp(address) => format!("http://{address}"),
        };
        let connect_error = |source| NodeUnreachable {
            address: self.clone(),
            source,
        };
        tonic::transport::Endpoint::from_shared(uri)
            .map_err(connect_error)?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(connect_error)
    }
}

/// A bound, listening socket.
#[derive(Debug)]
pub enum Listener {
    /// On TCP.
    Tcp {
        /// The socket.
        listener: TcpListener,
        /// Its address; for port 0, with the port the kernel chose.
        address: SocketAddr,
    },
    /// On a unix socket; the file goes with `socket_file`.
    Unix {
        /// The socket.
        listener: UnixListener,
        /// Removes the socket file when dropped.
        socket_file: SocketFile,
    },
}

impl Listener {
    /// Where it listens; for TCP port 0, with the port the kernel chose.
    pub fn address(&self) -> ListenAddress {
        match self {
            Listener::Tcp { address, .. } => ListenAddress::Tcp(*address),
            Listener::Unix { socket_file, .. } => ListenAddress::Unix(socket_file.path.clone()),
        }
    }
}

/// A unix socket file this process created; removed when dropped, unless
/// another file has taken its place since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl SocketFile {
    fn new(path: &Path) -> std::io::Result<Self> {
        let metadata = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.device && m.ino() == self.inode);
        if ours {
            if let Err(err) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot remove the socket file");
            }
        }
    }
}

/// Removes a socket file left by a node that did not stop cleanly; refuses
/// to touch a socket someone still serves on, or a file that is no socket.
fn remove_stale_socket(path: &Path) -> Result<(), ListenError> {
    let bind_error = |source| ListenError::Bind {
        address: ListenAddress::Unix(path.to_path_buf()),
        source,
    };
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(bind_error(err)),
    };
    if !metadata.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse(path.to_path_buf())),
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(bind_error)
        }
        Err(err) => Err(bind_error(err)),
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ListenAddress, InvalidListenAddress> {
        text.parse()
    }

    #[test]
    fn unix_addresses() {
        assert_eq!(
            parse("unix:///run/gadget/gadget.sock").unwrap(),
            ListenAddress::Unix("/run/gadget/gadget.sock".into())
        );
        assert_eq!(
            parse("unix:gadget.sock").unwrap(),
            ListenAddress::Unix("gadget.sock".into())
        );
        assert!(matches!(
            parse("unix://"),
            Err(InvalidListenAddress::EmptyPath(_))
        ));
    }

    #[test]
    fn tcp_addresses() {
        assert_eq!(
            parse("tcp://127.0.0.1:7100").unwrap().to_string(),
            "tcp://127.0.0.1:7100"
        );
        assert_eq!(
            parse("tcp://[::1]:7100").unwrap().to_string(),
            "tcp://[::1]:7100"
        );
        assert_eq!(
            parse("tcp://localhost:7100").unwrap(),
            parse("tcp://127.0.0.1:7100").unwrap()
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for text in [
            "127.0.0.1:7100",
            "http://127.0.0.1:7100",
            "tcp://127.0.0.1",
            "tcp://localhost",
            "tcp://localhost:port",
            "tcp://node-1.example:7100",
            "tcp://::1:7100",
            "",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }

    /// Found by `localhost_is_127_0_0_1`: `tcp://localhost:+7100` was
    /// accepted while `tcp://127.0.0.1:+7100` was refused.
    #[test]
    fn a_signed_localhost_port_is_refused_as_an_ips_is() {
        for text in ["tcp://localhost:+7100", "tcp://127.0.0.1:+7100"] {
            assert!(
                matches!(parse(text), Err(InvalidListenAddress::Tcp(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn default_listen_address_is_loopback() {
        assert!(parse(DEFAULT_LISTEN).unwrap().is_local());
    }

    #[test]
    fn non_loopback_needs_to_be_allowed() {
        for text in [
            "tcp://0.0.0.0:7100",
            "tcp://[::]:7100",
            "tcp://10.0.0.1:7100",
        ] {
            let address = parse(text).unwrap();
            assert!(!address.is_local(), "{text}");
            let refused = address.check_exposure(false).unwrap_err().to_string();
            assert!(refused.contains("--allow-non-loopback"), "{refused}");
            assert!(address.check_exposure(true).is_ok());
        }
        for text in ["tcp://127.0.0.1:7100", "tcp://[::1]:7100", "unix:///x.sock"] {
            assert!(parse(text).unwrap().check_exposure(false).is_ok(), "{text}");
        }
    }

    #[tokio::test]
    async fn unix_socket_is_root_only_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sock");
        let listener = ListenAddress::Unix(path.clone()).bind().await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(listener);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sock");
        // A socket file with no one listening: what a killed node leaves.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let _listener = ListenAddress::Unix(path.clone()).bind().await.unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }

    #[tokio::test]
    async fn live_socket_and_other_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sock");
        let _first = ListenAddress::Unix(path.clone()).bind().await.unwrap();
        let second = ListenAddress::Unix(path.clone()).bind().await.unwrap_err();
        assert!(matches!(second, ListenError::InUse(_)), "{second}");

        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"keep me").unwrap();
        let err = ListenAddress::Unix(file.clone()).bind().await.unwrap_err();
        assert!(matches!(err, ListenError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn tcp_port_zero_reports_the_chosen_port() {
        let listener = parse("tcp://127.0.0.1:0").unwrap().bind().await.unwrap();
        let ListenAddress::Tcp(address) = listener.address() else {
            panic!("not tcp");
        };
        assert_ne!(address.port(), 0);
    }
}
