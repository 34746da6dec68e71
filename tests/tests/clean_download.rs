//! A clean passive FTP download over IPv4: every connection, and nothing
//! else, shows up, attributed to the right side and process.

use tests::{
    checks::clean_download,
    netns::{CLIENT_V4, SERVER_V4},
    vsftpd::Listen,
};

#[test]
fn clean_passive_download_ipv4_matches_kernel_counters() {
    tests::root_test(
        "clean_passive_download_ipv4_matches_kernel_counters",
        || {
            clean_download(
                Listen::V4(SERVER_V4),
                SERVER_V4,
                &SERVER_V4.to_string(),
                &CLIENT_V4.to_string(),
            );
        },
    );
}
