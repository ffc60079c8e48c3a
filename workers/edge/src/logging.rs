//! Writes redacted JSON lines (see `dex_shared::log`) to the Workers console.

use dex_shared::log::{Level, LogLine};

pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

pub fn emit(line: LogLine) {
    let text = line.render(now_ms());
    match line.level() {
        Level::Error => worker::console_error!("{}", text),
        Level::Warn => worker::console_warn!("{}", text),
        _ => worker::console_log!("{}", text),
    }
}

pub fn info(event: &str) -> LogLine {
    LogLine::new(Level::Info, event)
}

pub fn warn(event: &str) -> LogLine {
    LogLine::new(Level::Warn, event)
}

pub fn error(event: &str) -> LogLine {
    LogLine::new(Level::Error, event)
}
