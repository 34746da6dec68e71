//! Traffic on a port outside the traced set costs nothing and prints
//! nothing.

use tests::{
    client::{Curl, http_url},
    netns::{NsPair, SERVER_V4},
    observe::observe,
    process::Daemon,
    tmp::TempDir,
    tracer::Tracer,
};

/// Not in `--ports 21,2121`, not 20, not in `--passive-ports 30000-30009`.
const HTTP_PORT: u16 = 8080;

#[test]
fn traffic_on_other_ports_yields_no_events() {
    tests::root_test("traffic_on_other_ports_yields_no_events", || {
        let net = NsPair::new();
        let dir = TempDir::new("http");
        std::fs::write(dir.path().join("index.html"), "not ftp\n").expect("write index.html");
        let mut server = Daemon::spawn(
            net.server
                .command("python3")
                .args([
                    "-m",
                    "http.server",
                    &HTTP_PORT.to_string(),
                    "--bind",
                    &SERVER_V4.to_string(),
                    "--directory",
                ])
                .arg(dir.path()),
            &dir.path().join("http.log"),
        );
        net.server
            .wait_listening(&mut server, HTTP_PORT, "the web server");
        let run = observe(&net, Tracer::start(), || {
            Curl::new(http_url(SERVER_V4, HTTP_PORT, "index.html")).run(&net.client)
        });
        let ctx = run.context();
        run.outcome.assert_downloaded(b"not ftp\n");
        assert!(
            run.server.get("Tcp.PassiveOpens") >= 1,
            "no connection was accepted, the test proves nothing{ctx}"
        );
        let on_port: Vec<&str> = run
            .trace
            .events
            .iter()
            .filter(|e| e.has_port(HTTP_PORT))
            .map(|e| e.line.as_str())
            .collect();
        assert!(
            on_port.is_empty(),
            "events on port {HTTP_PORT}: {on_port:#?}"
        );
        assert!(
            run.server_events().is_empty() && run.client_events().is_empty(),
            "events in namespaces with no FTP traffic{ctx}"
        );
    });
}
