//! A minimal axum "hello world" server: the baseline `scripts/load_test.sh` measures
//! `fibo serve` against.
//!
//! `GET /` answers `hello\n`. The first line on stderr is `listening on http://HOST:PORT`, as
//! `fibo serve` prints its own, so the script reads the address the same way (`--listen
//! 127.0.0.1:0` lets the system pick the port). Tokio's multi-thread runtime with one worker
//! per core, the default `fibo serve` uses too.
//!
//! ```text
//! cargo run --release --example hello_server -- --listen 127.0.0.1:8081
//! ```

use std::net::SocketAddr;

use axum::{Router, routing::get};

/// Where to listen: `--listen ADDR` (or `--listen=ADDR`), default `127.0.0.1:8081`.
fn listen_addr() -> Result<SocketAddr, String> {
    let mut addr = String::from("127.0.0.1:8081");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            addr = args.next().ok_or("--listen needs an address")?;
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            addr = value.to_owned();
        } else {
            return Err(format!(
                "unknown argument '{arg}' (usage: hello_server [--listen ADDR])"
            ));
        }
    }
    addr.parse()
        .map_err(|e| format!("invalid address '{addr}': {e}"))
}

fn main() {
    let addr = match listen_addr() {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("hello_server: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("hello_server: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().expect("bound address");
        eprintln!("listening on http://{local}");
        let app = Router::new().route("/", get(|| async { "hello\n" }));
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("hello_server: {e}");
            std::process::exit(1);
        }
    });
}
