//! FTP bulk transfer through real vsftpd, with and without the tracer:
//! curl downloads one large file over the benchmark's veth pair, and its
//! own speed figure is the measurement. The tracer sees the control
//! channel, reads the `229`, and traces the data connection by the port it
//! announces: every packet of the transfer passes its programs.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// The downloaded file: big enough that a transfer takes a second or so.
pub const FILE_BYTES: u64 = 2 << 30;
const FILE: &str = "bulk";
/// vsftpd refuses to start without its secure chroot directory.
const SECURE_CHROOT_DIR: &str = "/var/run/vsftpd/empty";

/// vsftpd's configuration and served directory, under `scratch`.
pub fn prepare(scratch: &Path, server: &str) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(SECURE_CHROOT_DIR)
        .with_context(|| format!("creating {SECURE_CHROOT_DIR}"))?;
    let root = scratch.join("ftp");
    fs::create_dir_all(&root)?;
    // Sparse: its bytes come from the page cache, so the disk is not what
    // is measured.
    fs::File::create(root.join(FILE))?.set_len(FILE_BYTES)?;
    let conf = scratch.join("vsftpd.conf");
    fs::write(
        &conf,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address={server}\nlisten_port=21\n\
             anon_root={}\npasv_min_port=30000\npasv_max_port=30009\nno_anon_password=YES\n\
             xferlog_enable=NO\nbackground=NO\nanonymous_enable=YES\nlocal_enable=NO\n\
             write_enable=NO\npasv_enable=YES\nseccomp_sandbox=NO\nisolate=NO\n\
             isolate_network=NO\n",
            root.display()
        ),
    )?;
    Ok(conf)
}

/// curl's download command for the file, to run in the client namespace.
pub fn download_args(server: &str) -> Vec<String> {
    [
        "-s",
        "-S",
        "--fail",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{speed_download}",
        &format!("ftp://{server}/{FILE}"),
    ]
    .map(String::from)
    .to_vec()
}

/// Bytes per second from curl's `-w` output, checking it got the whole file.
pub fn speed(curl_output: &str) -> anyhow::Result<f64> {
    let mut fields = curl_output.split_whitespace();
    let size: u64 = fields
        .next()
        .context("curl printed no size")?
        .parse()
        .context("curl's size")?;
    anyhow::ensure!(
        size == FILE_BYTES,
        "curl downloaded {size} bytes of {FILE_BYTES}"
    );
    fields
        .next()
        .context("curl printed no speed")?
        .parse()
        .context("curl's speed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curls_figures() {
        let out = format!("{FILE_BYTES} 2147483648");
        assert_eq!(speed(&out).unwrap(), 2147483648.0);
        assert!(speed("1000 5").is_err(), "a short download is an error");
        assert!(speed("").is_err());
    }
}
