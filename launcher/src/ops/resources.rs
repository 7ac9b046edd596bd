//! Task sizes: Fargate's rules for CPU, memory and ephemeral storage,
//! checked before anything is written. The errors name the rule and the
//! valid choices; each face words them for its own input (the CLI names its
//! flags, see [`ResourceError::as_flags`]).

use plus_jobs::TaskResources;

/// Why a task size is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// One of CPU and memory without the other.
    #[error("cpu and memory go together: give both (e.g. 1024 CPU units with 2048 MiB)")]
    Unpaired,
    /// A CPU size Fargate does not offer.
    #[error("{0} CPU units is not a Fargate size: choose 256, 512, 1024, 2048, 4096, 8192 or 16384 CPU units")]
    Cpu(u32),
    /// A memory size the CPU size does not allow.
    #[error("{memory} MiB of memory is not valid with {cpu} CPU units: choose one of {} MiB", list(.choices))]
    Memory {
        /// The CPU units asked for.
        cpu: u32,
        /// The memory asked for, in MiB.
        memory: u32,
        /// The memory sizes `cpu` allows, in MiB.
        choices: Vec<u32>,
    },
    /// Ephemeral storage out of Fargate's range.
    #[error("{0} GiB of ephemeral storage is out of range: Fargate allows 21 to 200 GiB")]
    Storage(u32),
}

impl ResourceError {
    /// The same refusal worded with the `plus` command line's flags
    /// (`--cpu`, `--memory`, `--storage`).
    pub fn as_flags(&self) -> String {
        match self {
            Self::Unpaired => {
                "--cpu and --memory go together: give both (e.g. --cpu 1024 --memory 2048)".into()
            }
            Self::Cpu(cpu) => format!(
                "--cpu {cpu} is not a Fargate size: choose 256, 512, 1024, 2048, 4096, 8192 or 16384 CPU units"
            ),
            Self::Memory {
                cpu,
                memory,
                choices,
            } => format!(
                "--memory {memory} MiB is not valid with --cpu {cpu}: choose one of {} MiB",
                list(choices)
            ),
            Self::Storage(gib) => {
                format!("--storage {gib} GiB is out of range: Fargate allows 21 to 200 GiB")
            }
        }
    }
}

fn list(choices: &[u32]) -> String {
    let shown: Vec<String> = choices.iter().map(u32::to_string).collect();
    shown.join(", ")
}

/// The memory sizes (MiB) Fargate allows with `cpu` CPU units; `None` when
/// `cpu` is not a Fargate size.
pub fn valid_memory(cpu: u32) -> Option<Vec<u32>> {
    let range =
        |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).collect::<Vec<_>>();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

/// Checks a task size against Fargate's rules (zero means "the task
/// definition's own").
///
/// # Errors
/// [`ResourceError`] with the valid choices.
pub fn validate(r: &TaskResources) -> Result<(), ResourceError> {
    if r.cpu > 0 || r.memory > 0 {
        if r.cpu == 0 || r.memory == 0 {
            return Err(ResourceError::Unpaired);
        }
        let choices = valid_memory(r.cpu).ok_or(ResourceError::Cpu(r.cpu))?;
        if !choices.contains(&r.memory) {
            return Err(ResourceError::Memory {
                cpu: r.cpu,
                memory: r.memory,
                choices,
            });
        }
    }
    if r.ephemeral_storage_gib > 0 && !(21..=200).contains(&r.ephemeral_storage_gib) {
        return Err(ResourceError::Storage(r.ephemeral_storage_gib));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_sizes_are_checked_with_the_choices_in_the_error() {
        let ok = |cpu, memory| {
            validate(&TaskResources {
                cpu,
                memory,
                ..Default::default()
            })
            .map_err(|e| e.as_flags())
        };
        assert!(ok(256, 512).is_ok());
        assert!(ok(4096, 30720).is_ok());
        assert!(ok(16384, 122880).is_ok());
        let err = ok(256, 4096).unwrap_err();
        assert!(err.contains("choose one of 512, 1024, 2048 MiB"), "{err}");
        assert!(ok(300, 1024).unwrap_err().contains("not a Fargate size"));
        assert!(ok(1024, 0).unwrap_err().contains("go together"));
        let storage = validate(&TaskResources {
            ephemeral_storage_gib: 500,
            ..Default::default()
        })
        .unwrap_err()
        .as_flags();
        assert!(storage.contains("21 to 200 GiB"), "{storage}");
    }
}
