//! Secret references (DESIGN.md, Secrets): what a job's or an action's
//! `secrets` map holds, env var name -> reference, and the rules every part
//! checks the same way (the launcher before writing, the worker before
//! running, since an engine may write a record directly).
//!
//! A reference is one of:
//! - a Secrets Manager secret, by name (`plus/alice/db`) or ARN
//!   (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:plus/alice/db-AbCdEf`);
//! - an SSM parameter, `ssm:/plus/alice/token` (read with decryption);
//! - on the local backend, `env:NAME`: the variable `NAME` of the launching
//!   user's environment, taken at launch and never stored.
//!
//! A user may reference only their own secrets: Secrets Manager names under
//! `plus/{username}/` and SSM parameters under `/plus/{username}/`. Only the
//! references are ever stored; values exist in the worker's memory and the
//! script's environment alone.

use std::{collections::HashMap, fmt};

/// The environment variables a secret may not be named: the worker
/// contract's variables (DESIGN.md, Worker environment) and the script's
/// own base (Script contract). Any `PLUS_*`, `AWS_*` or `ECS_*` name is
/// refused too (see [`RESERVED_PREFIXES`]).
pub const RESERVED_NAMES: [&str; 18] = {
    let contract = crate::contract::names::ALL;
    let process = [
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
    ];
    let mut all = [""; 18];
    let mut i = 0;
    while i < contract.len() {
        all[i] = contract[i];
        i += 1;
    }
    while i < all.len() {
        all[i] = process[i - contract.len()];
        i += 1;
    }
    all
};

/// Prefixes of reserved environment variable names.
pub const RESERVED_PREFIXES: [&str; 3] = ["PLUS_", "AWS_", "ECS_"];

/// Resolved values shorter than this many bytes are not masked in the
/// script's output: masking `on` or `1` would garble every line.
pub const MIN_MASKED_BYTES: usize = 4;

/// Where a secret's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// A Secrets Manager secret; `id` is what `GetSecretValue` takes (the
    /// name or the ARN), `name` the secret's name (the ARN's name part).
    SecretsManager {
        /// `SecretId`.
        id: String,
        /// The name, which the prefix rule applies to.
        name: String,
    },
    /// An SSM parameter (`ssm:/path`); `name` is the path.
    Ssm {
        /// The parameter's name, starting with `/`.
        name: String,
    },
    /// `env:NAME`: a variable of the launching user's environment (local
    /// backend only).
    Env {
        /// The variable's name.
        var: String,
    },
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::SecretsManager { id, .. } => f.write_str(id),
            SecretRef::Ssm { name } => write!(f, "ssm:{name}"),
            SecretRef::Env { var } => write!(f, "env:{var}"),
        }
    }
}

/// The Secrets Manager prefix a user's secrets are named under.
pub fn secrets_manager_prefix(username: &str) -> String {
    format!("plus/{username}/")
}

/// The SSM prefix a user's parameters are named under.
pub fn ssm_prefix(username: &str) -> String {
    format!("/plus/{username}/")
}

/// Whether `name` is a valid shell variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is made of Secrets Manager's name characters
/// (`[A-Za-z0-9/_+=.@-]`, at least one).
fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

impl SecretRef {
    /// Reads a reference. The prefix rule is [`SecretRef::check_owner`].
    ///
    /// # Errors
    /// A sentence naming the reference and the forms it may take.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        const FORMS: &str = "a reference is a Secrets Manager name (plus/USER/NAME) or ARN, ssm:/plus/USER/NAME, or on the local backend env:VARIABLE";
        let bad = |why: &str| Err(format!("the secret reference {text:?} {why}: {FORMS}"));
        if text.trim() != text || text.is_empty() || text.chars().any(char::is_control) {
            return bad("is empty or has spaces or control characters");
        }
        if let Some(var) = text.strip_prefix("env:") {
            if !is_shell_name(var) {
                return bad("does not name an environment variable");
            }
            return Ok(SecretRef::Env {
                var: var.to_owned(),
            });
        }
        if let Some(name) = text.strip_prefix("ssm:") {
            // SSM's own characters for parameter names.
            let chars = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
            if !name.starts_with('/') || name.len() < 2 || !name.chars().all(chars) {
                return bad("is not an SSM parameter path (ssm:/plus/USER/NAME, letters, digits and _./- only)");
            }
            return Ok(SecretRef::Ssm {
                name: name.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("arn:") {
            // arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME
            let parts: Vec<&str> = rest.splitn(6, ':').collect();
            let word = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            return match parts.as_slice() {
                [partition, "secretsmanager", region, account, "secret", name]
                    if !partition.is_empty()
                        && word(partition)
                        && word(region)
                        && account.chars().all(|c| c.is_ascii_digit())
                        && is_secret_name(name) =>
                {
                    Ok(SecretRef::SecretsManager {
                        id: text.to_owned(),
                        name: (*name).to_owned(),
                    })
                }
                _ => bad("is not the ARN of a Secrets Manager secret"),
            };
        }
        if !is_secret_name(text) {
            return bad("is not a Secrets Manager name (letters, digits and /_+=.@- only)");
        }
        Ok(SecretRef::SecretsManager {
            id: text.to_owned(),
            name: text.to_owned(),
        })
    }

    /// The prefix rule: a Secrets Manager name under `plus/{username}/`, an
    /// SSM parameter under `/plus/{username}/` (`env:` references are the
    /// user's own environment).
    ///
    /// # Errors
    /// A sentence naming the reference and the prefix allowed.
    pub fn check_owner(&self, username: &str) -> Result<(), String> {
        let (name, prefix, kind) = match self {
            SecretRef::Env { .. } => return Ok(()),
            SecretRef::SecretsManager { name, .. } => (
                name,
                secrets_manager_prefix(username),
                "Secrets Manager secret",
            ),
            SecretRef::Ssm { name } => (name, ssm_prefix(username), "SSM parameter"),
        };
        if name.len() > prefix.len() && name.starts_with(&prefix) {
            Ok(())
        } else {
            Err(format!(
                "the secret reference {self} is not allowed: {username}'s jobs may use only the {kind}s named under {prefix}"
            ))
        }
    }

    /// What to grant the worker's task role so it can read this reference
    /// (in `region`, of `account`, for `username`).
    pub fn permission(&self, region: &str, account: &str, username: &str) -> String {
        match self {
            SecretRef::SecretsManager { .. } => format!(
                "secretsmanager:GetSecretValue on arn:aws:secretsmanager:{region}:{account}:secret:plus/{username}/*"
            ),
            SecretRef::Ssm { .. } => format!(
                "ssm:GetParameter on arn:aws:ssm:{region}:{account}:parameter/plus/{username}/* (and kms:Decrypt on its key for a SecureString)"
            ),
            SecretRef::Env { var } => format!(
                "{var} in the environment of `plus run` / `plus launch` (env: references are read there, on the local backend only)"
            ),
        }
    }
}

/// Checks an env var name a secret is given as: a shell name, none of the
/// worker contract's.
///
/// # Errors
/// A sentence naming the variable and the rule.
pub fn check_env_name(name: &str) -> Result<(), String> {
    if !is_shell_name(name) {
        return Err(format!(
            "the secret name {name:?} is not a valid environment variable name: use letters, digits and _, not starting with a digit"
        ));
    }
    // Exact case, as the environment itself compares names.
    if RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(format!(
            "the secret name {name} is reserved: the worker and the script contract set {} and every PLUS_*, AWS_* and ECS_* variable; choose another name",
            RESERVED_NAMES.join(", ")
        ));
    }
    Ok(())
}

/// Checks a whole `secrets` map for `username`: every name (see
/// [`check_env_name`]) and reference ([`SecretRef::parse`] and
/// [`SecretRef::check_owner`]). Returns the references by name, sorted.
///
/// # Errors
/// One sentence per problem.
pub fn validate(
    secrets: &HashMap<String, String>,
    username: &str,
) -> Result<Vec<(String, SecretRef)>, Vec<String>> {
    let mut problems = Vec::new();
    let mut refs = Vec::new();
    for (name, text) in sorted(secrets) {
        if let Err(p) = check_env_name(name) {
            problems.push(p);
        }
        match SecretRef::parse(text).and_then(|r| r.check_owner(username).map(|()| r)) {
            Ok(r) => refs.push((name.clone(), r)),
            Err(p) => problems.push(format!("secret {name}: {p}")),
        }
    }
    if problems.is_empty() {
        Ok(refs)
    } else {
        Err(problems)
    }
}

/// The entries of a `secrets` map in name order (for display and checks).
pub fn sorted(secrets: &HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut entries: Vec<_> = secrets.iter().collect();
    entries.sort();
    entries
}

/// An action's secrets with a job's own over them, by name.
pub fn merged(
    action: &HashMap<String, String>,
    job: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut all = action.clone();
    all.extend(job.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Parses `NAME=REF` pairs (`--secret`).
///
/// # Errors
/// A sentence for an entry without `=`, with an empty side, or a name
/// given twice.
pub fn parse_pairs(pairs: &[String]) -> Result<HashMap<String, String>, String> {
    let mut secrets = HashMap::new();
    for pair in pairs {
        let Some((name, reference)) = pair.split_once('=') else {
            return Err(format!(
                "--secret {pair:?} is not NAME=REF: write e.g. --secret DB_PASSWORD=plus/USER/db"
            ));
        };
        if name.is_empty() || reference.is_empty() {
            return Err(format!(
                "--secret {pair:?} needs both a NAME and a REF: write e.g. --secret DB_PASSWORD=plus/USER/db"
            ));
        }
        if secrets
            .insert(name.to_owned(), reference.to_owned())
            .is_some()
        {
            return Err(format!(
                "--secret {name} is given twice: give each name once"
            ));
        }
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap()
    }

    #[test]
    fn references_take_their_three_forms() {
        assert_eq!(
            sm("plus/alice/db"),
            SecretRef::SecretsManager {
                id: "plus/alice/db".into(),
                name: "plus/alice/db".into()
            }
        );
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:plus/alice/db-AbCdEf";
        assert_eq!(
            sm(arn),
            SecretRef::SecretsManager {
                id: arn.into(),
                name: "plus/alice/db-AbCdEf".into()
            }
        );
        assert_eq!(
            sm("ssm:/plus/alice/token"),
            SecretRef::Ssm {
                name: "/plus/alice/token".into()
            }
        );
        assert_eq!(
            sm("env:MY_TOKEN"),
            SecretRef::Env {
                var: "MY_TOKEN".into()
            }
        );
        assert_eq!(
            sm("ssm:/plus/alice/token").to_string(),
            "ssm:/plus/alice/token"
        );
    }

    #[test]
    fn malformed_references_are_refused_with_the_forms() {
        for bad in [
            "",
            " plus/alice/db",
            "ssm:plus/alice/x",
            "env:1X",
            "env:",
            "arn:aws:ssm:eu-west-1:1:parameter/plus/alice/x",
            "plus/alice/d b",
            "plus/alice/db\n",
            "ssm:/plus/alice/a b",
            "arn:aws:secretsmanager:eu-west-1:12x:secret:plus/alice/db",
            "arn:aws:secretsmanager:eu-west-1:1:secret:plus/alice/d b",
        ] {
            let e = SecretRef::parse(bad).unwrap_err();
            assert!(e.contains("ssm:/plus/USER/NAME"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn only_the_users_own_prefix_is_allowed() {
        for ok in [
            "plus/alice/db",
            "ssm:/plus/alice/token",
            "arn:aws:secretsmanager:eu-west-1:1:secret:plus/alice/db-AbCdEf",
            "env:ANYTHING",
        ] {
            assert_eq!(sm(ok).check_owner("alice"), Ok(()), "{ok}");
        }
        for (bad, prefix) in [
            ("plus/bob/x", "plus/alice/"),
            ("plus/alice2/x", "plus/alice/"),
            ("plus/alice/", "plus/alice/"),
            ("prod/db", "plus/alice/"),
            ("plus/alicex", "plus/alice/"),
            ("ssm:/plus/bob/x", "/plus/alice/"),
            ("ssm:/prod/x", "/plus/alice/"),
            ("ssm:/plus/alice", "/plus/alice/"),
            (
                "arn:aws:secretsmanager:eu-west-1:1:secret:plus/bob/x-AbCdEf",
                "plus/alice/",
            ),
        ] {
            let e = sm(bad).check_owner("alice").unwrap_err();
            assert!(e.contains(bad) && e.contains(prefix), "{bad}: {e}");
        }
    }

    #[test]
    fn names_must_be_shell_names_outside_the_contract() {
        for ok in ["DB_PASSWORD", "_x", "token2", "aws_region"] {
            assert_eq!(check_env_name(ok), Ok(()));
        }
        for bad in ["1X", "A-B", "", "A B"] {
            assert!(check_env_name(bad).unwrap_err().contains("not a valid"));
        }
        for reserved in [
            "JOB_ID",
            "PLUS_PARAMS",
            "AWS_SECRET_ACCESS_KEY",
            "PATH",
            "ECS_CONTAINER_METADATA_URI_V4",
            "ACCESS_KEY",
        ] {
            assert!(
                check_env_name(reserved).unwrap_err().contains("reserved"),
                "{reserved}"
            );
        }
    }

    #[test]
    fn a_map_is_checked_whole_and_merged_by_name() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let problems = validate(
            &map(&[
                ("A", "plus/bob/x"),
                ("JOB_ID", "plus/alice/x"),
                ("B", "plus/alice/y"),
            ]),
            "alice",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let ok = validate(&map(&[("B", "ssm:/plus/alice/y")]), "alice").unwrap();
        assert_eq!(ok[0].0, "B");
        let m = merged(
            &map(&[("A", "plus/alice/a"), ("B", "plus/alice/b")]),
            &map(&[("B", "plus/alice/own")]),
        );
        assert_eq!(m, map(&[("A", "plus/alice/a"), ("B", "plus/alice/own")]));
        assert_eq!(
            parse_pairs(&["T=env:X".into()]).unwrap(),
            map(&[("T", "env:X")])
        );
        assert!(parse_pairs(&["T".into()]).is_err());
        assert!(parse_pairs(&["T=a".into(), "T=b".into()]).is_err());
    }
}
