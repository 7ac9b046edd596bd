//! `plus-lambda`: the launcher as a Lambda function (provided.al2023,
//! packaged as `bootstrap`). Clients are built once at start; each
//! invocation is one JSON operation (see `plus_launcher::json_api`).

use lambda_http::lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    plus_worker::telemetry::init();
    let launcher = plus_launcher::aws::launcher_from_env().await.map_err(|e| {
        let msg = plus_launcher::cli::report(&e);
        tracing::error!(error = %msg, "the launcher is not configured");
        Error::from(msg)
    })?;
    let launcher = &launcher;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        plus_launcher::json_api::handle(launcher, event.payload)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "operation failed");
                Error::from(e.to_string())
            })
    }))
    .await
}
