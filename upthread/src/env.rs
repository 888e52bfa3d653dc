//! The scheduler's knobs as environment variables, read once by [`init`](crate::init).
//!
//! | variable | value | default | same as |
//! |---|---|---|---|
//! | `UPTHREAD_VCORES` | a positive integer; more than the process has means all | every vcore | [`set_num_vcores`](crate::set_num_vcores) |
//! | `UPTHREAD_SCHED_PERIOD_US` | `0` (cooperative) or at least [`MIN_SCHED_PERIOD_US`](crate::MIN_SCHED_PERIOD_US) | `0` | [`set_sched_period`](crate::set_sched_period) |
//! | `UPTHREAD_CAN_VCORE_REQUEST` | `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` | `1` | [`can_vcore_request`](crate::can_vcore_request) |
//! | `UPTHREAD_CAN_VCORE_STEAL` | as above | `1` | [`can_vcore_steal`](crate::can_vcore_steal) |
//!
//! A malformed value is reported on standard error, naming the variable and the value,
//! and the default is used: a typo in a tuning knob should not stop a program, but it
//! must not go unnoticed either. (`VCORE_LIMIT`, read by `parlib-vcore`, caps the vcores
//! the process has at all.)

/// Number of vcores threads are placed on.
pub const VCORES_ENV: &str = "UPTHREAD_VCORES";
/// Preemption period in microseconds.
pub const SCHED_PERIOD_ENV: &str = "UPTHREAD_SCHED_PERIOD_US";
/// Whether vcores are requested as work appears and yielded when idle.
pub const CAN_VCORE_REQUEST_ENV: &str = "UPTHREAD_CAN_VCORE_REQUEST";
/// Whether idle vcores steal work.
pub const CAN_VCORE_STEAL_ENV: &str = "UPTHREAD_CAN_VCORE_STEAL";

/// Knob values found in the environment; `None` for unset or malformed ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Knobs {
    pub(crate) vcores: Option<usize>,
    pub(crate) sched_period_us: Option<u64>,
    pub(crate) can_vcore_request: Option<bool>,
    pub(crate) can_vcore_steal: Option<bool>,
}

fn var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => {
            complain(name, &v.to_string_lossy(), "it is not valid UTF-8");
            None
        }
    }
}

fn complain(name: &str, value: &str, why: &str) {
    eprintln!("upthread: ignoring {name}={value:?}: {why}; using the default");
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn bool_var(name: &str) -> Option<bool> {
    let v = var(name)?;
    let b = parse_bool(&v);
    if b.is_none() {
        complain(name, &v, "expected 1/0, true/false, yes/no or on/off");
    }
    b
}

/// Reads the knobs, reporting malformed values.
pub(crate) fn read() -> Knobs {
    let vcores = var(VCORES_ENV).and_then(|v| match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            complain(VCORES_ENV, &v, "expected a positive integer");
            None
        }
    });
    let sched_period_us = var(SCHED_PERIOD_ENV).and_then(|v| match v.trim().parse::<u64>() {
        Ok(us) if us == 0 || us >= crate::MIN_SCHED_PERIOD_US => Some(us),
        _ => {
            let why = format!("expected 0 or an integer of at least {}", crate::MIN_SCHED_PERIOD_US);
            complain(SCHED_PERIOD_ENV, &v, &why);
            None
        }
    });
    Knobs {
        vcores,
        sched_period_us,
        can_vcore_request: bool_var(CAN_VCORE_REQUEST_ENV),
        can_vcore_steal: bool_var(CAN_VCORE_STEAL_ENV),
    }
}

/// Applies the knobs that are set, before the scheduler starts.
pub(crate) fn apply(k: &Knobs) {
    if let Some(n) = k.vcores {
        // Above the vcore count means "all": set_num_vcores caps it at setup.
        let _ = crate::sched::set_num_vcores(n.min(parlib_vcore::max_vcores().max(1)));
    }
    if let Some(us) = k.sched_period_us {
        let _ = crate::preempt::set_sched_period(us);
    }
    if let Some(b) = k.can_vcore_request {
        crate::sched::can_vcore_request(b);
    }
    if let Some(b) = k.can_vcore_steal {
        crate::sched::can_vcore_steal(b);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for t in ["1", "true", "YES", " on "] {
            assert_eq!(parse_bool(t), Some(true), "{t:?}");
        }
        for f in ["0", "False", "no", "OFF"] {
            assert_eq!(parse_bool(f), Some(false), "{f:?}");
        }
        assert_eq!(parse_bool("2"), None);
        assert_eq!(parse_bool(""), None);
    }
}
