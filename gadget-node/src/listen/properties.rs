//! Property tests of `--listen`: every socket address and socket path
//! reads as itself; whatever else is given reads as an address that prints
//! back the same, or is refused in one line; `localhost` is read exactly
//! as `127.0.0.1`.

use std::net::{Ipv6Addr, SocketAddrV6};

use proptest::prelude::*;

use super::*;

/// Socket addresses of every kind: IPv4, IPv6 (with a scope id for
/// link-local ones), loopback or not, any port.
fn socket_address() -> impl Strategy<Value = SocketAddr> {
    let v4 = (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port));
    let v6 = (
        any::<[u16; 8]>(),
        any::<u16>(),
        prop_oneof![Just(0u32), any::<u32>()],
    )
        .prop_map(|(segments, port, scope_id)| {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(segments),
                port,
                0,
                scope_id,
            ))
        });
    let loopback = any::<u16>().prop_map(|port| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    prop_oneof![v4, v6, loopback]
}

/// Text shaped like listen addresses, to get past the scheme, and
/// anything.
fn address_like() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "unix:",
        "unix://",
        "tcp://",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "::1",
        "[",
        "]",
        ":",
        "/",
        "7100",
        "0",
        "+",
        "-",
        "%",
        "65536",
        "a",
        " ",
        "\n",
        "é",
    ];
    let pieces = proptest::collection::vec(any::<u8>(), 0..10).prop_map(|codes| {
        codes
            .into_iter()
            .map(|code| PIECES[usize::from(code) % PIECES.len()])
            .collect::<String>()
    });
    // Valid addresses with a piece put in or a character taken out.
    let edits = proptest::collection::vec((any::<usize>(), any::<Option<u8>>()), 1..3);
    let near = (socket_address(), edits).prop_map(|(address, edits)| {
        let mut text = format!("tcp://{address}");
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
    prop_oneof![3 => pieces, 3 => near, 1 => any::<String>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// `tcp://ADDRESS` reads as that address, prints as it was written,
    /// and is local exactly when its IP is a loopback one.
    #[test]
    fn socket_addresses_read_as_themselves(address in socket_address()) {
        let text = format!("tcp://{address}");
        let parsed: ListenAddress = text.parse().unwrap();
        prop_assert_eq!(&parsed, &ListenAddress::Tcp(address));
        prop_assert_eq!(parsed.to_string(), text);
        prop_assert_eq!(parsed.is_local(), address.ip().is_loopback());
    }

    /// `unix://PATH` and `unix:PATH` read as that path, whatever it holds.
    #[test]
    fn socket_paths_read_as_themselves(path in "/?[^\0]{1,40}") {
        let expected = ListenAddress::Unix(PathBuf::from(&path));
        let absolute = format!("unix://{path}");
        prop_assert_eq!(absolute.parse::<ListenAddress>().unwrap(), expected.clone());
        if !path.starts_with("//") {
            let short = format!("unix:{path}");
            prop_assert_eq!(short.parse::<ListenAddress>().unwrap(), expected.clone());
        }
        prop_assert!(expected.is_local());
    }

    /// `localhost` is `127.0.0.1`, for every port text: accepted and
    /// refused alike.
    #[test]
    fn localhost_is_127_0_0_1(port in prop_oneof!["[+-]?[0-9]{0,6}", any::<String>()]) {
        let by_name = format!("tcp://localhost:{port}").parse::<ListenAddress>();
        let by_ip = format!("tcp://127.0.0.1:{port}").parse::<ListenAddress>();
        prop_assert_eq!(by_name.is_ok(), by_ip.is_ok(), "port {:?}", port);
        if let (Ok(by_name), Ok(by_ip)) = (by_name, by_ip) {
            prop_assert_eq!(by_name, by_ip);
        }
    }

    /// Anything: an address that prints as text reading back as itself,
    /// or a one-line refusal quoting what was given.
    #[test]
    fn anything_reads_back_or_is_refused_in_one_line(text in address_like()) {
        match text.parse::<ListenAddress>() {
            Ok(address) => {
                let printed = address.to_string();
                prop_assert_eq!(printed.parse::<ListenAddress>(), Ok(address));
            }
            Err(err) => {
                let message = err.to_string();
                prop_assert!(message.contains(&format!("{text:?}")), "{}", message);
                prop_assert!(!message.contains('\n'), "{}", message);
            }
        }
    }
}
