//! How a script file is executed: [`Program`], resolved once per job.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::ScriptError;

/// The program and arguments that run a script file per the contract:
/// with an interpreter, `interpreter script args...`; else the file itself
/// (its shebang line, or a binary), and `/bin/sh script args...` when the
/// kernel refuses it as not an executable format (ENOEXEC), as `execvp`
/// does. Resolved once per job (it reads the file's first bytes).
#[derive(Clone, Debug)]
pub struct Program {
    /// The executable.
    pub program: String,
    /// Its arguments.
    pub argv: Vec<String>,
    /// Whether the job named an interpreter (for error sentences).
    pub(super) interpreter: bool,
    /// Set when the file has no shebang and is executed directly: whether
    /// the kernel refused it (ENOEXEC), so it runs with `/bin/sh`. Shared by
    /// the clones (one per collection item), so only the first start of a
    /// job tries the file itself.
    pub(super) sh_fallback: Option<Arc<AtomicBool>>,
}

impl Program {
    /// How to run `script` with the job's `interpreter` (may be empty) and
    /// `args`.
    ///
    /// # Errors
    /// [`ScriptError::ScriptFile`] when the script file cannot be read.
    pub fn resolve(script: &Path, interpreter: &str, args: &[String]) -> Result<Self, ScriptError> {
        let script_arg = script.display().to_string();
        if !interpreter.trim().is_empty() {
            let mut argv = vec![script_arg];
            argv.extend(args.iter().cloned());
            return Ok(Program {
                program: interpreter.trim().to_owned(),
                argv,
                interpreter: true,
                sh_fallback: None,
            });
        }
        let mut head = [0u8; 2];
        let n = {
            use std::io::Read;
            std::fs::File::open(script)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|source| ScriptError::ScriptFile { source })?
        };
        let shebang = n == 2 && &head == b"#!";
        Ok(Program {
            program: script_arg,
            argv: args.to_vec(),
            interpreter: false,
            sh_fallback: (!shebang).then(Arc::default),
        })
    }

    /// Whether this is a script file without a shebang that the kernel
    /// refused to execute: it runs with `/bin/sh`.
    pub fn runs_with_sh(&self) -> bool {
        self.sh_fallback
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Whether a start that failed with `e` is tried again with `/bin/sh`
    /// (a file without a shebang that is not an executable format); if so,
    /// remembers it for the later starts.
    pub fn falls_back_to_sh(&self, e: &std::io::Error) -> bool {
        let refused = e.raw_os_error() == Some(nix::libc::ENOEXEC);
        match &self.sh_fallback {
            Some(flag) if refused => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The same script run as `/bin/sh script args...`.
    pub fn with_sh(&self) -> Program {
        let mut argv = vec![self.program.clone()];
        argv.extend(self.argv.iter().cloned());
        Program {
            program: "/bin/sh".to_owned(),
            argv,
            interpreter: false,
            sh_fallback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Workspace;

    #[test]
    fn scripts_without_a_shebang_run_directly_then_with_sh() {
        let ws = Workspace::create(&std::env::temp_dir(), "t", b"echo hi\n").unwrap();
        let p = Program::resolve(&ws.script, "", &["a".into()]).unwrap();
        assert_eq!(p.program, ws.script.display().to_string());
        assert!(!p.runs_with_sh());
        let enoexec = std::io::Error::from_raw_os_error(nix::libc::ENOEXEC);
        assert!(!p
            .clone()
            .falls_back_to_sh(&std::io::Error::from_raw_os_error(nix::libc::EACCES)));
        assert!(p.clone().falls_back_to_sh(&enoexec));
        assert!(p.runs_with_sh(), "remembered by every clone");
        let sh = p.with_sh();
        assert_eq!(sh.program, "/bin/sh");
        assert_eq!(sh.argv, vec![ws.script.display().to_string(), "a".into()]);
        std::fs::write(&ws.script, "#!/usr/bin/env bash\necho hi\n").unwrap();
        let p = Program::resolve(&ws.script, "", &[]).unwrap();
        assert_eq!(p.program, ws.script.display().to_string());
        assert!(p.argv.is_empty());
        assert!(
            !p.falls_back_to_sh(&enoexec),
            "a shebang is never run with sh"
        );
        let p = Program::resolve(&ws.script, "python3", &[]).unwrap();
        assert_eq!(p.program, "python3");
    }
}
