//! The scheduled handler: cron string → named task (see `dex_queues::cron`).

use dex_queues::cron::CronTask;
use dex_queues::Trigger;
use worker::Env;

use crate::jobs;
use crate::logging;

pub async fn run(cron: &str, env: Env) {
    let Some(task) = CronTask::for_cron(cron) else {
        logging::emit(logging::error("cron.unknown_schedule").field("cron", cron));
        return;
    };
    logging::emit(logging::info("cron.started").field("task", task.name()).field("cron", cron));
    if let Some(job) = task.inline_job() {
        jobs::run_inline(&env, job, Trigger::Cron).await;
    }
    for job in task.enqueued_jobs() {
        if let Err(e) = jobs::enqueue(&env, job, Trigger::Cron).await {
            logging::emit(logging::error("cron.enqueue_failed").field("task", task.name()).field("detail", e.to_string()));
        }
    }
    if task == CronTask::DomainWarmupCheck {
        // The domain pool and warm-up client arrive with the persona/domain
        // work; until then the schedule is live and says so.
        logging::emit(logging::warn("cron.task_not_built").field("task", task.name()));
    }
}
