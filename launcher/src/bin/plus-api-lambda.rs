//! `plus-api-lambda`: the HTTP API for frontends as a Lambda function, behind
//! an API Gateway HTTP API with a JWT authorizer (or a Lambda function URL
//! fronted by one). Reads the AWS backend's variables (`DYNAMO_TABLE`,
//! `DYNAMO_STREAMS_TABLE`, `PRIMARY_BUCKET`, `REGION`); see the README's
//! "HTTP API and live page".

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plus_worker::telemetry::init();
    let launcher = plus_launcher::aws::launcher_from_env().await?;
    plus_launcher::http::lambda::run(launcher).await
}
