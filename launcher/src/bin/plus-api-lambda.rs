//! `plus-api-lambda`: the HTTP API for frontends as a Lambda function, behind
//! an API Gateway HTTP API with a JWT authorizer (or a Lambda function URL
//! fronted by one). Reads the AWS backend's variables (`DYNAMO_TABLE`,
//! `DYNAMO_STREAMS_TABLE`, `PRIMARY_BUCKET`, `REGION`); see the README's
//! "HTTP API and live page".

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let launcher = plus_launcher::aws::launcher_from_env().await?;
    plus_launcher::http::lambda::run(launcher).await
}
