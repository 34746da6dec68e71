//! A name server for the client's namespace (`tests/scripts/dns_flip.py`):
//! one name whose A answers take turns among addresses. `ip netns exec`
//! bind-mounts `/etc/netns/<namespace>/resolv.conf` over the resolver
//! configuration of what it runs, so the client's own resolver (glibc,
//! curl's) asks it, over UDP, as on a real host.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdout, Stdio},
    sync::{Arc, Mutex},
};

use crate::{netns::NetNs, process::kill_and_reap};

const SCRIPT: &str = include_str!("../scripts/dns_flip.py");

/// The running name server; its configuration is removed when dropped.
pub struct Resolver {
    child: Child,
    conf_dir: PathBuf,
    answered: Arc<Mutex<Vec<String>>>,
}

impl Resolver {
    /// Serves `name` in `ns`, answering its A queries with `addresses` in
    /// turn; returns once it listens.
    #[track_caller]
    pub fn start(ns: &NetNs, name: &str, addresses: &[std::net::IpAddr]) -> Self {
        let conf_dir = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&conf_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", conf_dir.display()));
        // One query at a time, one try each: the answers come in order.
        std::fs::write(
            conf_dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions single-request attempts:1 timeout:2\n",
        )
        .expect("write resolv.conf");
        let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        let mut args = vec!["-c", SCRIPT, name];
        args.extend(addresses.iter().map(String::as_str));
        let mut child = ns
            .command("python3")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the name server: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut ready = String::new();
        stdout
            .read_line(&mut ready)
            .expect("the name server's first line");
        assert_eq!(ready.trim(), "ready", "the name server did not start");
        let answered = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&answered);
        std::thread::spawn(move || read_answers(stdout, &log));
        Self {
            child,
            conf_dir,
            answered,
        }
    }

    /// The addresses it answered so far, in order.
    pub fn answered(&self) -> Vec<String> {
        self.answered.lock().expect("answers").clone()
    }
}

fn read_answers(stdout: BufReader<ChildStdout>, log: &Mutex<Vec<String>>) {
    for line in stdout.lines().map_while(Result::ok) {
        if let Some(address) = line.split_whitespace().nth(2) {
            log.lock().expect("answers").push(address.to_owned());
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.conf_dir);
    }
}
