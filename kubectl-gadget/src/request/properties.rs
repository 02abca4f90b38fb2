//! Property tests of `--node-address`: every address written as the help
//! says reads as its parts; whatever else is given reads as an address
//! that prints back the same, or is refused in one line naming the flag;
//! a TCP address that is accepted can be dialed (it makes a valid URI).

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// A host as `tcp://HOST:PORT` takes it: an IPv4 address, an IPv6 one in
/// brackets, or a DNS name.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|ip| Ipv4Addr::from(ip).to_string()),
        any::<u128>().prop_map(|ip| format!("[{}]", Ipv6Addr::from(ip))),
        proptest::collection::vec(
            proptest::string::string_regex("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?").unwrap(),
            1..4
        )
        .prop_map(|labels| labels.join(".")),
    ]
}

/// A node name as `NAME=` gives it: anything but empty, with no `=`.
fn name() -> impl Strategy<Value = String> {
    "[^=]{1,20}".prop_filter("an address's scheme is not a name", |name| {
        !name.starts_with("unix://") && !name.starts_with("tcp://")
    })
}

/// Text shaped like node addresses, and anything.
fn address_like() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "unix://",
        "tcp://",
        "node-1",
        "=",
        "127.0.0.1",
        "[::1]",
        "::1",
        "[",
        "]",
        ":",
        "/",
        "7100",
        "0",
        "65536",
        "+",
        "@",
        "?",
        "#",
        "%",
        " ",
        "\n",
        "é",
        "a",
    ];
    let pieces = proptest::collection::vec(any::<u8>(), 0..12).prop_map(|codes| {
        codes
            .into_iter()
            .map(|code| PIECES[usize::from(code) % PIECES.len()])
            .collect::<String>()
    });
    // A scheme and a port around any host, to test what hosts are taken.
    let hosts =
        (pieces.clone(), any::<u16>()).prop_map(|(host, port)| format!("tcp://{host}:{port}"));
    // Valid addresses with a piece put in or a character taken out.
    let edits = proptest::collection::vec((any::<usize>(), any::<Option<u8>>()), 1..3);
    let near = (address(), edits).prop_map(|(address, edits)| {
        let mut text = written(&address);
        for (at, piece) in edits {
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let at = boundaries[at % boundaries.len()];
            match piece {
                Some(code) => text.insert_str(at, PIECES[usize::from(code) % PIECES.len()]),
                None if at < text.len() => {
                    text.remove(at);
                }
                None => {}
            }
        }
        text
    });
    prop_oneof![2 => pieces, 2 => hosts, 3 => near, 1 => any::<String>()]
}

/// An address as the help writes it: `[NAME=]tcp://HOST:PORT` or
/// `[NAME=]unix:///PATH`.
fn address() -> impl Strategy<Value = NodeAddress> {
    let endpoint = prop_oneof![
        (host(), 1u16..).prop_map(|(host, port)| NodeEndpoint::Tcp { host, port }),
        "/[^\0]{0,30}".prop_map(|path| NodeEndpoint::Unix(PathBuf::from(path))),
    ];
    (proptest::option::of(name()), endpoint)
        .prop_map(|(name, endpoint)| NodeAddress { name, endpoint })
}

/// The text that reads as `address`.
fn written(address: &NodeAddress) -> String {
    match &address.name {
        Some(name) => format!("{name}={}", address.endpoint),
        None => address.endpoint.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// `[NAME=]tcp://HOST:PORT` and `[NAME=]unix:///PATH` read as their
    /// parts.
    #[test]
    fn addresses_read_as_their_parts(address in address()) {
        let text = written(&address);
        let parsed: NodeAddress = text.parse().map_err(|e: RequestError| {
            TestCaseError::fail(format!("{text:?} refused: {e}"))
        })?;
        prop_assert_eq!(parsed, address);
    }

    /// Anything: an address that is written back as text reading as
    /// itself and, over TCP, makes a URI the client can dial; or a
    /// one-line refusal naming the flag and quoting what was given.
    #[test]
    fn anything_reads_back_or_is_refused_in_one_line(text in address_like()) {
        match text.parse::<NodeAddress>() {
            Ok(address) => {
                prop_assert_eq!(written(&address).parse::<NodeAddress>(), Ok(address.clone()));
                if let NodeEndpoint::Tcp { host, port } = &address.endpoint {
                    let uri = format!("http://{host}:{port}");
                    prop_assert!(
                        tonic::transport::Endpoint::from_shared(uri.clone()).is_ok(),
                        "{:?} was accepted, but {:?} cannot be dialed", text, uri
                    );
                }
            }
            Err(err) => {
                let message = err.to_string();
                let expected = format!("invalid --node-address {text:?}: ");
                prop_assert!(message.starts_with(&expected), "{}", message);
                prop_assert!(!message.contains('\n'), "{}", message);
            }
        }
    }
}
