//! `plus serve`: the HTTP API and the live page on a loopback port, with a
//! fresh access token printed at start, until SIGINT or SIGTERM.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    http::{auth::random_token, router_until, serve, Auth, ServeError},
    ops::Launcher,
};

/// `plus serve`: binds `addr` (loopback only), makes a random access token
/// for `username`, prints where the page is (one JSON object with `json`),
/// and serves until SIGINT or SIGTERM.
///
/// # Errors
/// [`ServeError`] naming the problem and the fix.
pub async fn run(
    launcher: Launcher,
    username: &str,
    addr: SocketAddr,
    json: bool,
) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let token = random_token().map_err(ServeError::Random)?;
    let url = format!("http://{local}/");
    if json {
        println!(
            "{}",
            serde_json::json!({
                "url": url,
                "addr": local.to_string(),
                "token": token,
                "user": username,
                "page": format!("{url}#token={token}"),
            })
        );
    } else {
        println!("serving the HTTP API and the live page for {username} on {url}");
        println!("  open the page:  {url}#token={token}");
        println!("  API calls need: Authorization: Bearer {token}");
        println!("  stop with Ctrl-C");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let auth = Auth::Token {
        token,
        username: username.to_owned(),
    };
    let app = router_until(launcher, auth, shutdown.clone());
    serve(listener, app, shutdown).await?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.cancel();
}
