//! Addresses as ftptrace must write them: IPv6 compressed, and IPv4 clients
//! of an IPv6 wildcard listener (IPv4-mapped inside the kernel) as IPv4.

use tests::{
    checks::clean_download,
    netns::{CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6},
    vsftpd::Listen,
};

#[test]
fn clean_passive_download_ipv6_matches_kernel_counters() {
    tests::root_test(
        "clean_passive_download_ipv6_matches_kernel_counters",
        || {
            assert_eq!(
                (SERVER_V6.to_string(), CLIENT_V6.to_string()),
                ("2001:db8::1".into(), "2001:db8::2".into())
            );
            clean_download(
                Listen::V6(SERVER_V6),
                SERVER_V6,
                "2001:db8::1",
                "2001:db8::2",
            );
        },
    );
}

#[test]
fn ipv4_client_of_ipv6_wildcard_listener_shows_ipv4_addresses() {
    tests::root_test(
        "ipv4_client_of_ipv6_wildcard_listener_shows_ipv4_addresses",
        || {
            assert_eq!(
                (SERVER_V4.to_string(), CLIENT_V4.to_string()),
                ("192.0.2.1".into(), "192.0.2.2".into())
            );
            // The server's sockets are AF_INET6 with ::ffff:192.0.2.x addresses.
            clean_download(Listen::V6Any, SERVER_V4, "192.0.2.1", "192.0.2.2");
        },
    );
}
