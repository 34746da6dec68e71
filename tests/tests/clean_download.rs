//! A clean passive FTP download over IPv4: every connection, and nothing
//! else, shows up, attributed to the right side and process.

use tests::{
    checks::{Endpoints, assert_clean_download},
    client::{Curl, ftp_url},
    netns::{CLIENT_V4, NsPair, SERVER_V4},
    observe::observe,
    tracer::Tracer,
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

#[test]
fn clean_passive_download_ipv4_matches_kernel_counters() {
    tests::root_test(
        "clean_passive_download_ipv4_matches_kernel_counters",
        || {
            let net = NsPair::new();
            let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            let run = observe(&net, Tracer::start(), || {
                Curl::new(ftp_url(SERVER_V4, 21, "file")).run(&net.client)
            });
            assert_clean_download(
                &run,
                &ftp.expected("file"),
                &Endpoints {
                    server_addr: &SERVER_V4.to_string(),
                    client_addr: &CLIENT_V4.to_string(),
                    control_port: 21,
                    passive: PASSIVE_PORTS,
                },
            );
        },
    );
}
