//! RUN_SCRIPT (and RUN_ACTION once its script is resolved): run the script
//! once, upload its output files and read its result.

use std::sync::atomic::{AtomicBool, Ordering};

use plus_jobs::Script;
use serde_json::Value;

use crate::{
    job::{ending, Ending, Finish, JobContext},
    script::{self, Launch, ScriptError},
};

/// RUN_SCRIPT: the job's own script with the job's params.
pub async fn run(ctx: &JobContext) -> Ending {
    let script = ctx.job.script.clone().unwrap_or_default();
    run_once(ctx, &script, &ctx.params()).await
}

/// Runs `script` once with `params` and collects its result.
pub async fn run_once(ctx: &JobContext, script: &Script, params: &Value) -> Ending {
    let job_id = &ctx.job.object_id;
    let prepared =
        match script::prepare(ctx.blobs.as_ref(), script, &ctx.config.work_root, job_id).await {
            Ok(prepared) => prepared,
            Err(e) => return Finish::failed(e.to_string()).into(),
        };
    let ws = &prepared.ws;
    let launch = Launch {
        program: prepared.program.clone(),
        env: ctx.script_env(ws, params, &ws.work),
        cwd: ws.work.clone(),
        stdin: None,
    };
    // Whether the script was stopped (SIGTERM, cancel, timeout) or exited
    // on its own: a stop that comes after it exited never rewrites that.
    let stopped_it = AtomicBool::new(false);
    let stop = async {
        ctx.control.stopped().await;
        stopped_it.store(true, Ordering::Relaxed);
    };
    let exit = match script::run_until(&launch, ctx.output.clone(), stop, ctx.config.grace).await {
        Ok(exit) => exit,
        Err(e) => return Finish::failed(e.to_string()).into(),
    };
    let stopped = if stopped_it.load(Ordering::Relaxed) {
        ctx.control.reason()
    } else {
        None
    };
    // What it left is stored within the bounds of a stop (SIGTERM,
    // cancel), never of the timeout: it exited within its limit.
    let mut result = tokio::select! {
        result = script::read_result(ctx.blobs.as_ref(), job_id, ws) => result,
        () = ending::artifacts_deadline(ctx) => Err(ScriptError::ResultCutShort),
    };
    // A secret value in the result would land on the record.
    if let Ok(Some(value)) = &mut result {
        ctx.mask.apply_json(value);
    }
    let outputs = script::upload_outputs(
        ctx.blobs.clone(),
        job_id,
        ws,
        ending::artifacts_deadline(ctx),
    )
    .await;
    if !outputs.complete() {
        // The record names the first; the stream says it where the
        // output is read.
        if let Some(problem) = outputs.problem("the job was stopped") {
            ctx.events
                .event(plus_jobs::EventKind::Stderr, format!("[plus] {problem}"));
        }
    }
    ending::from_exit(ctx, exit, stopped, result, &outputs)
}
