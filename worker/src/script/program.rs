//! How a script file is executed: [`Program`], resolved once per job.

use std::path::Path;

use super::ScriptError;

/// The program and arguments that run a script file per the contract:
/// with an interpreter, `interpreter script args...`; else the file itself
/// when it has a shebang, and `/bin/sh script args...` when it has none.
/// Resolved once per job (it reads the file's first bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The executable.
    pub program: String,
    /// Its arguments.
    pub argv: Vec<String>,
    /// Whether the job named an interpreter (for error sentences).
    pub(super) interpreter: bool,
}

impl Program {
    /// How to run `script` with the job's `interpreter` (may be empty) and
    /// `args`.
    ///
    /// # Errors
    /// [`ScriptError::ScriptFile`] when the script file cannot be read.
    pub fn resolve(script: &Path, interpreter: &str, args: &[String]) -> Result<Self, ScriptError> {
        let script_arg = script.display().to_string();
        let with_file = |program: &str, interpreter: bool| {
            let mut argv = vec![script_arg.clone()];
            argv.extend(args.iter().cloned());
            Program {
                program: program.to_owned(),
                argv,
                interpreter,
            }
        };
        if !interpreter.trim().is_empty() {
            return Ok(with_file(interpreter.trim(), true));
        }
        let mut head = [0u8; 2];
        let n = {
            use std::io::Read;
            std::fs::File::open(script)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|source| ScriptError::ScriptFile { source })?
        };
        Ok(if n == 2 && &head == b"#!" {
            Program {
                program: script_arg.clone(),
                argv: args.to_vec(),
                interpreter: false,
            }
        } else {
            with_file("/bin/sh", false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Workspace;

    #[test]
    fn scripts_without_a_shebang_run_with_sh() {
        let ws = Workspace::create(&std::env::temp_dir(), "t", b"echo hi\n").unwrap();
        let p = Program::resolve(&ws.script, "", &["a".into()]).unwrap();
        assert_eq!(p.program, "/bin/sh");
        assert_eq!(p.argv, vec![ws.script.display().to_string(), "a".into()]);
        std::fs::write(&ws.script, "#!/usr/bin/env bash\necho hi\n").unwrap();
        let p = Program::resolve(&ws.script, "", &[]).unwrap();
        assert_eq!(p.program, ws.script.display().to_string());
        assert!(p.argv.is_empty());
        let p = Program::resolve(&ws.script, "python3", &[]).unwrap();
        assert_eq!(p.program, "python3");
    }
}
