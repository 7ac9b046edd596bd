//! `plus serve`: the HTTP API and the live page on a loopback port, with a
//! fresh access token printed at start, until SIGINT or SIGTERM. It also
//! fires the user's due schedules (the local backend's scheduler).

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
    tokio::spawn(fire_schedules(
        launcher.clone(),
        username.to_owned(),
        shutdown.clone(),
    ));
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

/// How often `plus serve` looks for due schedules: `PLUS_SCHEDULE_TICK_MS`
/// (default 1000).
fn schedule_tick() -> std::time::Duration {
    let ms = std::env::var("PLUS_SCHEDULE_TICK_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .unwrap_or(1000);
    std::time::Duration::from_millis(ms)
}

/// The local scheduler: every tick, fires `username`'s due schedules (see
/// [`Launcher::fire_due`]) and says what it did on stderr. A firing found
/// late (missed while `plus serve` was not running) is caught up once,
/// and said so; earlier missed ones are skipped, and counted.
async fn fire_schedules(launcher: Launcher, username: String, shutdown: CancellationToken) {
    use crate::ops::schedules::test_rate_override;
    if !launcher.fires_schedules_locally() {
        // On AWS, EventBridge Scheduler fires them.
        return;
    }
    let tick = schedule_tick();
    let rate_override = test_rate_override();
    let late_after =
        chrono::Duration::from_std(tick * 2).unwrap_or_default() + chrono::Duration::seconds(1);
    loop {
        let now = chrono::Utc::now();
        match launcher.fire_due(&username, now, rate_override).await {
            Ok(firings) => {
                for f in firings {
                    let late = chrono::DateTime::parse_from_rfc3339(&f.scheduled_for)
                        .is_ok_and(|t| now - t.with_timezone(&chrono::Utc) > late_after);
                    if late || f.missed > 0 {
                        eprintln!(
                            "schedule {}: caught up 1 missed firing (for {}){}",
                            f.schedule,
                            f.scheduled_for,
                            if f.missed > 0 {
                                format!(
                                    " and skipped {} earlier one{} missed while `plus serve` was not running",
                                    f.missed,
                                    if f.missed == 1 { "" } else { "s" }
                                )
                            } else {
                                ", missed while `plus serve` was not running".to_owned()
                            }
                        );
                    }
                    match &f.error {
                        None if f.created => eprintln!(
                            "schedule {} fired for {}: job {}",
                            f.schedule, f.scheduled_for, f.job_id
                        ),
                        None => eprintln!(
                            "schedule {} for {}: job {} exists already (launched once)",
                            f.schedule, f.scheduled_for, f.job_id
                        ),
                        Some(e) => eprintln!(
                            "schedule {} for {} did not launch: {e}",
                            f.schedule, f.scheduled_for
                        ),
                    }
                }
            }
            Err(e) => eprintln!("plus: schedules could not be read: {e}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}
