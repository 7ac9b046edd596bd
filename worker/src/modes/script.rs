//! RUN_SCRIPT (and RUN_ACTION once its script is resolved): run the script
//! once, upload its output files and read its result.

use plus_jobs::Script;
use serde_json::Value;

use crate::{
    job::{ending, Ending, Finish, JobContext},
    script::{self, Launch},
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
    let exit = match script::run_until(
        &launch,
        ctx.output.clone(),
        ctx.control.stopped(),
        ctx.config.grace,
    )
    .await
    {
        Ok(exit) => exit,
        Err(e) => return Finish::failed(e.to_string()).into(),
    };
    script::upload_outputs(ctx.blobs.as_ref(), job_id, ws, &ctx.events).await;
    let result = script::read_result(ctx.blobs.as_ref(), job_id, ws).await;
    ending::from_exit(ctx, exit, result)
}
