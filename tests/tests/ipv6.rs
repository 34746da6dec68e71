//! Addresses as ftptrace must write them: IPv6 compressed, and IPv4 clients
//! of an IPv6 wildcard listener (IPv4-mapped inside the kernel) as IPv4.

use tests::{
    checks::{Endpoints, assert_clean_download},
    client::{Curl, ftp_url},
    netns::{CLIENT_V4, CLIENT_V6, NsPair, SERVER_V4, SERVER_V6},
    observe::observe,
    tracer::Tracer,
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

#[test]
fn clean_passive_download_ipv6_matches_kernel_counters() {
    tests::root_test(
        "clean_passive_download_ipv6_matches_kernel_counters",
        || {
            let net = NsPair::new();
            let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V6(SERVER_V6)));
            let run = observe(&net, Tracer::start(), || {
                Curl::new(ftp_url(SERVER_V6, 21, "file")).run(&net.client)
            });
            assert_clean_download(
                &run,
                &ftp.expected("file"),
                &Endpoints {
                    server_addr: "2001:db8::1",
                    client_addr: "2001:db8::2",
                    control_port: 21,
                    passive: PASSIVE_PORTS,
                },
            );
            assert_eq!(SERVER_V6.to_string(), "2001:db8::1");
            assert_eq!(CLIENT_V6.to_string(), "2001:db8::2");
        },
    );
}

#[test]
fn ipv4_client_of_ipv6_wildcard_listener_shows_ipv4_addresses() {
    tests::root_test(
        "ipv4_client_of_ipv6_wildcard_listener_shows_ipv4_addresses",
        || {
            let net = NsPair::new();
            let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V6Any));
            let run = observe(&net, Tracer::start(), || {
                Curl::new(ftp_url(SERVER_V4, 21, "file")).run(&net.client)
            });
            // The server's sockets are AF_INET6 with ::ffff:192.0.2.x addresses.
            assert_clean_download(
                &run,
                &ftp.expected("file"),
                &Endpoints {
                    server_addr: "192.0.2.1",
                    client_addr: "192.0.2.2",
                    control_port: 21,
                    passive: PASSIVE_PORTS,
                },
            );
            assert_eq!(
                (SERVER_V4.to_string(), CLIENT_V4.to_string()),
                ("192.0.2.1".into(), "192.0.2.2".into())
            );
        },
    );
}
