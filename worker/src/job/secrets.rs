//! The job's secrets (DESIGN.md, Secrets), resolved just before its first
//! script starts: checked again by the rules the launcher applies (an
//! engine may have written the record), read from Secrets Manager, SSM or
//! the local launcher's `env:` values, and handed to the script's
//! environment and the output [`Mask`](crate::output::Mask) only.
//!
//! A value never goes into an error, an event, a log line or the record:
//! errors name the env var, the reference and what to grant.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use plus_jobs::{secrets::SecretRef, BackendConfig};

use super::{Finish, JobContext};

/// The resolved secrets of a job, env var name -> value, set once before
/// any script starts; its `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct ResolvedSecrets(Arc<OnceLock<Vec<(String, String)>>>);

impl std::fmt::Debug for ResolvedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.vars().iter().map(|(k, _)| k))
            .finish()
    }
}

impl ResolvedSecrets {
    /// The variables, once resolved (empty before, or with no secrets).
    pub fn vars(&self) -> &[(String, String)] {
        self.0.get().map_or(&[], Vec::as_slice)
    }
}

/// Resolves the job's secrets (an action's, `action`, under the job's own
/// by name) into `ctx`'s script environment and output mask.
///
/// # Errors
/// A [`Finish`] that fails the job before any script starts: a reference
/// outside the user's prefix or a reserved name (naming the secret and the
/// rule), or a secret that cannot be read (naming the env var, the
/// reference and the permission to grant; never a value).
pub async fn resolve(
    ctx: &JobContext,
    action: Option<&HashMap<String, String>>,
) -> Result<(), Finish> {
    let all = match action {
        Some(defaults) => plus_jobs::secrets::merged(defaults, &ctx.job.secrets),
        None => ctx.job.secrets.clone(),
    };
    if all.is_empty() {
        return Ok(());
    }
    let user = &ctx.job.username;
    let refs = plus_jobs::secrets::validate(&all, user).map_err(|problems| {
        Finish::failed(format!(
            "the job's secrets were refused, so its script was not started: {}",
            problems.join("; ")
        ))
    })?;
    let mut reader = Reader::new(ctx);
    let mut vars = Vec::with_capacity(refs.len());
    for (name, reference) in refs {
        let value = reader
            .read(&reference)
            .await
            .map_err(|why| Finish::failed(reader.sentence(&name, &reference, &why)))?;
        if value.contains('\0') {
            return Err(Finish::failed(format!(
                "secret {name} ({reference}) holds a NUL byte, which no environment variable can: store it encoded (e.g. base64)"
            )));
        }
        vars.push((name, value));
    }
    ctx.mask.set(vars.iter().map(|(_, v)| v.as_str()));
    let _ = ctx.secrets.0.set(vars);
    tracing::info!(
        secrets = ?ctx.secrets,
        "resolved the job's secrets into the script's environment"
    );
    Ok(())
}

/// Reads references; the SDK clients are made on first use.
struct Reader<'a> {
    ctx: &'a JobContext,
    sm: Option<aws_sdk_secretsmanager::Client>,
    ssm: Option<aws_sdk_ssm::Client>,
    sdk: Option<aws_config::SdkConfig>,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a JobContext) -> Self {
        Self {
            ctx,
            sm: None,
            ssm: None,
            sdk: ctx.sdk.clone(),
        }
    }

    /// The backend's SDK configuration, or on the local backend the
    /// standard chain's.
    async fn sdk(&mut self) -> &aws_config::SdkConfig {
        if self.sdk.is_none() {
            self.sdk = Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await);
        }
        self.sdk.as_ref().expect("set above")
    }

    /// The value, or why it could not be read.
    async fn read(&mut self, reference: &SecretRef) -> Result<String, String> {
        match reference {
            SecretRef::Env { var } => self
                .ctx
                .config
                .env_secrets
                .0
                .get(var)
                .cloned()
                .ok_or_else(|| "no value was passed to the worker".to_owned()),
            SecretRef::SecretsManager { id, .. } => {
                if self.sm.is_none() {
                    self.sm = Some(aws_sdk_secretsmanager::Client::new(self.sdk().await));
                }
                let client = self.sm.as_ref().expect("set above");
                let out = client
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| described(e.code(), e.message(), &e))?;
                out.secret_string.ok_or_else(|| {
                    "it holds binary data (SecretBinary): only a text secret (SecretString) can be an environment variable".to_owned()
                })
            }
            SecretRef::Ssm { name } => {
                if self.ssm.is_none() {
                    self.ssm = Some(aws_sdk_ssm::Client::new(self.sdk().await));
                }
                let client = self.ssm.as_ref().expect("set above");
                let out = client
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| described(e.code(), e.message(), &e))?;
                out.parameter
                    .and_then(|p| p.value)
                    .ok_or_else(|| "the parameter has no value".to_owned())
            }
        }
    }

    /// The sentence a secret that cannot be read fails the job with.
    fn sentence(&self, name: &str, reference: &SecretRef, why: &str) -> String {
        let (region, account) = self.region_and_account(reference);
        let grant = reference.permission(&region, &account, &self.ctx.job.username);
        match reference {
            SecretRef::Env { var } => format!(
                "secret {name} ({reference}) could not be read: {why}; set {var} in the environment of `plus run` / `plus launch` (env: references work on the local backend only, and are read when the job is launched or retried there)"
            ),
            _ => format!(
                "secret {name} ({reference}) could not be read: {why}; check that it exists, and grant the worker's task role {grant}"
            ),
        }
    }

    /// The region and account for the permission sentence: the backend's
    /// region; the account of the task's ARN or of the reference's.
    fn region_and_account(&self, reference: &SecretRef) -> (String, String) {
        let region = match &self.ctx.config.backend {
            BackendConfig::Aws(aws) => aws.region.clone(),
            _ => "REGION".to_owned(),
        };
        let from_arn = |arn: &str| {
            arn.strip_prefix("arn:")
                .and_then(|rest| rest.split(':').nth(3))
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
        };
        let account = from_arn(&self.ctx.lease)
            .or_else(|| match reference {
                SecretRef::SecretsManager { id, .. } => from_arn(id),
                _ => None,
            })
            .unwrap_or_else(|| "ACCOUNT".to_owned());
        (region, account)
    }
}

/// An SDK error as a short phrase: its code and message, else its chain.
fn described(
    code: Option<&str>,
    message: Option<&str>,
    e: &(dyn std::error::Error + 'static),
) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => plus_jobs::error_chain(e),
    }
}
