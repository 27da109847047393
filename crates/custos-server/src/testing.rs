//! Test support shared by this crate's API tests and the binary's end-to-end tests: a
//! real RFC 3161 time-stamping authority, OpenSSL's `openssl ts -reply` behind a small
//! HTTP handler. Not for production use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A running test TSA.
#[derive(Debug)]
pub struct TestTsa {
    /// Where it answers `application/timestamp-query` POSTs.
    pub url: String,
    /// Its certificate, PEM (`tsa.crt` in its directory).
    pub certificate: PathBuf,
    pub certificates: Vec<custos_ledger::tsa::Certificate>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Makes a TSA in `dir` (a P-256 key, a certificate with the critical `timeStamping`
/// extended key usage, `config`: `test-data/tsa/openssl-tsa.cnf`) and serves it.
///
/// # Panics
///
/// When `openssl` fails or is missing: the tests that use it need it.
pub async fn start_tsa(dir: &Path, config: &str) -> TestTsa {
    std::fs::write(dir.join("tsa.cnf"), config).expect("writing the TSA's config");
    std::fs::write(dir.join("serial"), "01\n").expect("writing the TSA's serial");
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tsa.key"]);
    let certificate_args =
        ["req", "-new", "-x509", "-key", "tsa.key", "-out", "tsa.crt", "-days", "30", "-config", "tsa.cnf"];
    openssl(dir, &[&certificate_args[..], &["-extensions", "tsa_ext"]].concat());
    let certificate = dir.join("tsa.crt");
    let pem = std::fs::read_to_string(&certificate).expect("reading the TSA's certificate");
    let certificates = custos_ledger::tsa::parse_certificates(&pem).expect("the TSA's certificate parses");
    let (path, lock) = (dir.to_path_buf(), Arc::new(Mutex::new(())));
    let reply = move |body: axum::body::Bytes| {
        let (path, lock) = (path.clone(), lock.clone());
        async move {
            let token = tokio::task::spawn_blocking(move || {
                let _one_at_a_time = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                std::fs::write(path.join("q.tsq"), &body).expect("writing the query");
                let reply = ["ts", "-reply", "-queryfile", "q.tsq", "-config", "tsa.cnf", "-section", "tsa_config"];
                openssl(&path, &[&reply[..], &["-out", "r.tsr"]].concat());
                std::fs::read(path.join("r.tsr")).expect("reading the reply")
            })
            .await
            .expect("the TSA answered");
            ([("content-type", "application/timestamp-reply")], token)
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port for the TSA");
    let url = format!("http://{}/tsa", listener.local_addr().expect("its address"));
    let app = axum::Router::new().route("/tsa", axum::routing::post(reply));
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestTsa { url, certificate, certificates }
}
