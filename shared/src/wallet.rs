//! Wallet arithmetic: reservations, settlement and plan allowances.
//!
//! One `WALLET` Durable Object per account is the only place money changes; it
//! persists a [`WalletState`] and the outstanding [`Hold`]s and calls these pure
//! functions serially, which is what makes the guarantees below exact however
//! many Worker isolates serve the account:
//!
//! 1. Before an AI request is forwarded the proxy [`reserve`]s a worst-case
//!    [`Estimate`] (idempotent by request id: the object looks the id up with
//!    [`find_hold`] first and returns the existing hold).
//! 2. After the response it [`settle`]s the hold to the real [`Actual`] usage;
//!    whatever was reserved beyond it is released with the hold.
//! 3. A failure before the first byte releases the hold ([`take_hold`] and
//!    drop it): nothing is charged.
//! 4. A hold never settled (the Worker died) expires; the object's alarm
//!    settles it at its reserved amount with [`settle_expired`], and the
//!    [`Charge`] is flagged `expired` for reconciliation.
//!
//! Money is integer micro-USD (`i64`), usage is integer tokens (`u64`); there
//! is no floating point anywhere. Everything that could overflow saturates or
//! is checked.
//!
//! Invariants (proved by the tests below):
//! * prepaid: `balance_micros ≥ 0` and Σ `holds.prepaid_micros` ≤ `balance_micros`,
//!   so concurrent reservations never overdraw;
//! * prepaid: starting balance + credits = final balance + Σ charges, to the micro-USD;
//! * metered: `allowance_used_tokens` + Σ `holds.allowance_tokens` ≤ included tokens,
//!   and `overage_micros` + Σ `holds.overage_micros` ≤ spending cap;
//! * settling, releasing or crediting twice changes nothing: the second call
//!   finds no hold (or an already-seen credit id) and the object does nothing.

use serde::{Deserialize, Serialize};

use crate::models::{cost_micros, Price};

/// Below this balance the account owner is told their credit is running low.
pub const LOW_BALANCE_THRESHOLD_MICROS: i64 = 1_000_000;

/// How an account's requests are paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanTerms {
    /// Requests are paid from the prepaid balance at the model's price.
    Prepaid,
    /// A per-period token allowance (all models, input + output), then
    /// overage at the plan's own prices, billed later through Stripe metering
    /// and bounded by a spending cap. The model's price is irrelevant.
    Metered {
        included_tokens: u64,
        /// Micro-USD per 1M overage input tokens.
        overage_input_per_m: i64,
        /// Micro-USD per 1M overage output tokens.
        overage_output_per_m: i64,
        /// Spending cap per period when the account has not set its own.
        default_cap_micros: i64,
    },
}

/// The terms for a plan name. Unknown plans are prepaid: they can never spend
/// money the account has not paid in.
pub fn plan_terms(plan: &str) -> PlanTerms {
    match plan {
        "basic" => PlanTerms::Metered {
            included_tokens: 5_000_000,
            overage_input_per_m: 3_000_000,
            overage_output_per_m: 15_000_000,
            default_cap_micros: 100_000_000,
        },
        "pro" => PlanTerms::Metered {
            included_tokens: 30_000_000,
            overage_input_per_m: 2_500_000,
            overage_output_per_m: 12_000_000,
            default_cap_micros: 500_000_000,
        },
        // "prepaid" (Dexto), the persona tiers "ignition" | "velocity" |
        // "dominance", and anything unknown.
        _ => PlanTerms::Prepaid,
    }
}

/// What the `WALLET` object persists for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WalletState {
    /// Prepaid balance; never below 0.
    pub balance_micros: i64,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    /// Metered: included tokens used this period.
    pub allowance_used_tokens: u64,
    /// Metered: overage billable this period (what is reported to Stripe).
    pub overage_micros: i64,
    /// Metered: overage input tokens this period.
    pub overage_input_tokens: u64,
    /// Metered: overage output tokens this period.
    pub overage_output_tokens: u64,
    /// Metered: the account's own spending cap per period; `None` = plan default.
    pub spending_cap_micros: Option<i64>,
}

/// The worst case of a request, known before it is forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub input_tokens: u64,
    pub max_output_tokens: u64,
    /// At the model's price, worst case (prepaid plans only).
    pub cost_micros: i64,
}

/// A reservation against the wallet, outstanding until settled, released or
/// expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub request_id: String,
    /// Prepaid: balance held back.
    pub prepaid_micros: i64,
    /// Metered: included tokens held back.
    pub allowance_tokens: u64,
    /// Metered: worst-case overage held against the spending cap.
    pub overage_micros: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Hold {
    /// A hold is expired from `expires_ms` on.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_ms
    }
}

/// Why a reservation was refused (both map to HTTP 402).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// Prepaid: the estimate exceeds the balance not already held.
    InsufficientCredits { balance_micros: i64, available_micros: i64 },
    /// Metered: the period's overage would exceed the spending cap.
    /// `overage_micros` is the period's overage had the reservation been
    /// accepted (settled + held + this request's worst case).
    SpendingCap { cap_micros: i64, overage_micros: i64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::money::micros_to_usd_string as usd;
        match *self {
            Refusal::InsufficientCredits { balance_micros, available_micros } => write!(
                f,
                "insufficient credits: balance ${}, available ${} after pending requests",
                usd(balance_micros),
                usd(available_micros)
            ),
            Refusal::SpendingCap { cap_micros, overage_micros } => write!(
                f,
                "spending cap reached: this request could bring the period's overage to ${} (cap ${})",
                usd(overage_micros),
                usd(cap_micros)
            ),
        }
    }
}

/// The real usage of a request, known after it completes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the model's price (prepaid plans only).
    pub cost_micros: i64,
}

/// What one settled request cost, for the usage log and reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub request_id: String,
    /// Taken from the prepaid balance.
    pub prepaid_micros: i64,
    pub allowance_input_tokens: u64,
    pub allowance_output_tokens: u64,
    pub overage_input_tokens: u64,
    pub overage_output_tokens: u64,
    /// Overage added to the period (at most the room under the spending cap).
    pub overage_micros: i64,
    /// The real cost exceeded what could be charged (balance or cap).
    pub capped: bool,
    /// Settled by the alarm at the reserved amount (the Worker never settled).
    pub expired: bool,
}

/// Balance not held by outstanding reservations: balance − Σ holds, never
/// below 0.
pub fn available_micros(state: &WalletState, holds: &[Hold]) -> i64 {
    state.balance_micros.saturating_sub(held_prepaid(holds, None)).max(0)
}

/// The outstanding hold for a request id, if any (reservations are idempotent:
/// the object returns this instead of reserving twice).
pub fn find_hold<'a>(holds: &'a [Hold], request_id: &str) -> Option<&'a Hold> {
    holds.iter().find(|h| h.request_id == request_id)
}

/// Removes and returns the hold for a request id. Releasing is exactly this
/// (the reserved amounts simply stop counting); settling is this followed by
/// [`settle`] with the remaining holds. `None` (nothing to do) on a replay.
pub fn take_hold(holds: &mut Vec<Hold>, request_id: &str) -> Option<Hold> {
    let i = holds.iter().position(|h| h.request_id == request_id)?;
    Some(holds.remove(i))
}

/// The earliest expiry among the holds: when the object's alarm should run.
pub fn next_expiry_ms(holds: &[Hold]) -> Option<i64> {
    holds.iter().map(|h| h.expires_ms).min()
}

/// Reserves the worst case of a request.
///
/// Prepaid: holds `est.cost_micros` if it is at most the available balance (a
/// cost of 0 always passes). Metered: holds as much of the remaining allowance
/// as the worst-case tokens (input + max output) need, and prices the rest at
/// the output overage price (an upper bound), which must fit under the
/// spending cap together with the period's overage and the other holds'.
/// A request that needs no overage is never refused by the cap.
///
/// Does not look for an existing hold; the caller does that with [`find_hold`].
pub fn reserve(
    state: &WalletState,
    holds: &[Hold],
    terms: &PlanTerms,
    est: &Estimate,
    request_id: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Hold, Refusal> {
    let mut hold = Hold {
        request_id: request_id.to_string(),
        prepaid_micros: 0,
        allowance_tokens: 0,
        overage_micros: 0,
        created_ms: now_ms,
        expires_ms: now_ms.saturating_add(ttl_ms.max(0)),
    };
    match *terms {
        PlanTerms::Prepaid => {
            let cost = est.cost_micros.max(0);
            let available = available_micros(state, holds);
            if cost > available {
                return Err(Refusal::InsufficientCredits { balance_micros: state.balance_micros, available_micros: available });
            }
            hold.prepaid_micros = cost;
        }
        PlanTerms::Metered { included_tokens, overage_output_per_m, default_cap_micros, .. } => {
            let worst = est.input_tokens.saturating_add(est.max_output_tokens);
            let allowance = worst.min(allowance_left(state, included_tokens, holds, None));
            let over_tokens = worst - allowance;
            let over = overage_cost(overage_output_per_m, overage_output_per_m, 0, over_tokens);
            let cap = spending_cap(state, default_cap_micros);
            if over > 0 {
                // Checked, not saturating: an overflowing total must not pass a cap of i64::MAX.
                let total = state.overage_micros.max(0).checked_add(held_overage(holds, None)).and_then(|t| t.checked_add(over));
                match total {
                    Some(t) if t <= cap => {}
                    t => return Err(Refusal::SpendingCap { cap_micros: cap, overage_micros: t.unwrap_or(i64::MAX) }),
                }
            }
            hold.allowance_tokens = allowance;
            hold.overage_micros = over;
        }
    }
    Ok(hold)
}

/// Settles a hold to the real usage. `hold` must already be out of the
/// outstanding set; `other_holds` are the rest (an entry with the same request
/// id is ignored anyway).
///
/// Prepaid: charges the model cost, which may exceed the reservation if the
/// balance not held by other requests covers it: the charge is
/// `min(actual.cost_micros, balance − Σ other holds)` (this hold's own amount
/// is part of that room), so the balance never goes below zero nor below what
/// other requests hold. `capped` when the real cost was more than that.
///
/// Metered: the remaining allowance at settle time is
/// `included − used − Σ other holds' allowance` (the allowance this hold
/// reserved is available to it); it takes input tokens first, then output
/// tokens, and the rest is overage at the plan's prices, rounded up over the
/// whole request. The overage charged is bounded by
/// `cap − period overage − Σ other holds' overage` (`capped` if that bound
/// applied). Token counters record all tokens used, capped or not;
/// `overage_micros` is what is billable.
pub fn settle(state: &mut WalletState, hold: &Hold, terms: &PlanTerms, actual: &Actual, other_holds: &[Hold]) -> Charge {
    let mut charge = Charge { request_id: hold.request_id.clone(), ..Charge::default() };
    match *terms {
        PlanTerms::Prepaid => {
            let cost = actual.cost_micros.max(0);
            let balance = state.balance_micros.max(0);
            let room = balance.saturating_sub(held_prepaid(other_holds, Some(&hold.request_id))).clamp(0, balance);
            let charged = cost.min(room);
            state.balance_micros = state.balance_micros.saturating_sub(charged);
            charge.prepaid_micros = charged;
            charge.capped = cost > charged;
        }
        PlanTerms::Metered { included_tokens, overage_input_per_m, overage_output_per_m, default_cap_micros } => {
            let others = Some(hold.request_id.as_str());
            let mut remaining = allowance_left(state, included_tokens, other_holds, others);
            let allowance_in = actual.input_tokens.min(remaining);
            remaining -= allowance_in;
            let allowance_out = actual.output_tokens.min(remaining);
            let over_in = actual.input_tokens - allowance_in;
            let over_out = actual.output_tokens - allowance_out;
            let cost = overage_cost(overage_input_per_m, overage_output_per_m, over_in, over_out);
            let cap = spending_cap(state, default_cap_micros);
            let charged = cost.min(overage_room(state, cap, other_holds, others));

            state.allowance_used_tokens = state.allowance_used_tokens.saturating_add(allowance_in).saturating_add(allowance_out);
            state.overage_input_tokens = state.overage_input_tokens.saturating_add(over_in);
            state.overage_output_tokens = state.overage_output_tokens.saturating_add(over_out);
            state.overage_micros = state.overage_micros.saturating_add(charged);

            charge.allowance_input_tokens = allowance_in;
            charge.allowance_output_tokens = allowance_out;
            charge.overage_input_tokens = over_in;
            charge.overage_output_tokens = over_out;
            charge.overage_micros = charged;
            charge.capped = cost > charged;
        }
    }
    charge
}

/// Settles a hold the Worker never settled, at its reserved amount
/// (`expired: true`, for reconciliation).
///
/// Prepaid: charges `hold.prepaid_micros`, bounded by the balance (`capped` if
/// that bound applied). Metered: counts `hold.allowance_tokens` as allowance
/// used and `hold.overage_micros` as overage (bounded by the room left under
/// the cap). The real input/output split is unknown, so the allowance tokens
/// are reported as input tokens (the allowance is consumed input first) and
/// no overage tokens are counted, only their micro-USD.
pub fn settle_expired(state: &mut WalletState, hold: &Hold, terms: &PlanTerms) -> Charge {
    let mut charge = Charge { request_id: hold.request_id.clone(), expired: true, ..Charge::default() };
    match *terms {
        PlanTerms::Prepaid => {
            let cost = hold.prepaid_micros.max(0);
            let charged = cost.min(state.balance_micros.max(0));
            state.balance_micros = state.balance_micros.saturating_sub(charged);
            charge.prepaid_micros = charged;
            charge.capped = cost > charged;
        }
        PlanTerms::Metered { default_cap_micros, .. } => {
            let cost = hold.overage_micros.max(0);
            let room = spending_cap(state, default_cap_micros).saturating_sub(state.overage_micros).max(0);
            let charged = cost.min(room);
            state.allowance_used_tokens = state.allowance_used_tokens.saturating_add(hold.allowance_tokens);
            state.overage_micros = state.overage_micros.saturating_add(charged);
            charge.allowance_input_tokens = hold.allowance_tokens;
            charge.overage_micros = charged;
            charge.capped = cost > charged;
        }
    }
    charge
}

/// Adds to the prepaid balance (a top-up, or a negative adjustment such as a
/// refund) and returns the new balance. Refused if the balance would go below
/// zero or overflow. Idempotency (a replayed payment event) is the caller's:
/// it records the event id and credits once. A negative credit does not look
/// at outstanding holds; [`settle`] stays within the balance regardless.
pub fn credit(state: &mut WalletState, amount_micros: i64) -> Result<i64, &'static str> {
    let balance = state.balance_micros.checked_add(amount_micros).ok_or("balance overflow")?;
    if balance < 0 {
        return Err("balance would go below zero");
    }
    state.balance_micros = balance;
    Ok(balance)
}

/// Starts a new billing period: the allowance is whole again and the overage
/// counters are zero. The caller reports the closing period's overage
/// (`overage_micros`, and the token counters) to Stripe metering *before*
/// rolling, since this discards it. Balance and spending cap are untouched.
pub fn roll_period(state: &mut WalletState, start_ms: i64, end_ms: i64) {
    state.period_start_ms = start_ms;
    state.period_end_ms = end_ms;
    state.allowance_used_tokens = 0;
    state.overage_micros = 0;
    state.overage_input_tokens = 0;
    state.overage_output_tokens = 0;
}

/// True only when the balance crosses from at least `threshold_micros` to
/// below it, so the low-balance notice goes out once per crossing (the caller
/// uses [`LOW_BALANCE_THRESHOLD_MICROS`]).
pub fn low_balance_crossed(before_micros: i64, after_micros: i64, threshold_micros: i64) -> bool {
    before_micros >= threshold_micros && after_micros < threshold_micros
}

/// Input tokens estimated from the request body: one per 3 bytes, rounded up.
/// Deliberately generous (JSON syntax and field names count too), so a
/// reservation rarely falls short of the real usage.
pub fn estimate_input_tokens(request_body_bytes: u64) -> u64 {
    request_body_bytes.div_ceil(3)
}

/// The period's spending cap: the account's own, else the plan default.
pub(crate) fn spending_cap(state: &WalletState, default_cap_micros: i64) -> i64 {
    state.spending_cap_micros.unwrap_or(default_cap_micros).max(0)
}

/// Included tokens not used this period nor held by `holds` (but `exclude`).
pub(crate) fn allowance_left(state: &WalletState, included_tokens: u64, holds: &[Hold], exclude: Option<&str>) -> u64 {
    included_tokens.saturating_sub(state.allowance_used_tokens).saturating_sub(held_allowance(holds, exclude))
}

/// Overage still allowed under `cap` this period, beyond what `holds` (but
/// `exclude`) hold; never below 0.
pub(crate) fn overage_room(state: &WalletState, cap: i64, holds: &[Hold], exclude: Option<&str>) -> i64 {
    cap.saturating_sub(state.overage_micros).saturating_sub(held_overage(holds, exclude)).max(0)
}

/// Overage in micro-USD at the plan's prices, rounded up over the whole
/// request (the same arithmetic as model pricing).
pub(crate) fn overage_cost(input_per_m: i64, output_per_m: i64, input_tokens: u64, output_tokens: u64) -> i64 {
    let price = Price { input_per_m: input_per_m.max(0), output_per_m: output_per_m.max(0), cached_input_per_m: input_per_m.max(0) };
    cost_micros(&price, input_tokens, 0, output_tokens, 0)
}

fn others<'a>(holds: &'a [Hold], exclude: Option<&'a str>) -> impl Iterator<Item = &'a Hold> {
    holds.iter().filter(move |h| exclude != Some(h.request_id.as_str()))
}

pub(crate) fn held_prepaid(holds: &[Hold], exclude: Option<&str>) -> i64 {
    others(holds, exclude).fold(0i64, |sum, h| sum.saturating_add(h.prepaid_micros.max(0)))
}

fn held_allowance(holds: &[Hold], exclude: Option<&str>) -> u64 {
    others(holds, exclude).fold(0u64, |sum, h| sum.saturating_add(h.allowance_tokens))
}

fn held_overage(holds: &[Hold], exclude: Option<&str>) -> i64 {
    others(holds, exclude).fold(0i64, |sum, h| sum.saturating_add(h.overage_micros.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NOW: i64 = 1_700_000_000_000;
    const TTL: i64 = 300_000;

    fn prepaid(balance: i64) -> WalletState {
        WalletState { balance_micros: balance, ..WalletState::default() }
    }

    fn est(cost: i64) -> Estimate {
        Estimate { input_tokens: 10, max_output_tokens: 10, cost_micros: cost }
    }

    fn tokens(input: u64, max_output: u64) -> Estimate {
        Estimate { input_tokens: input, max_output_tokens: max_output, cost_micros: 0 }
    }

    fn act(cost: i64) -> Actual {
        Actual { input_tokens: 1, output_tokens: 1, cost_micros: cost }
    }

    fn used(input: u64, output: u64) -> Actual {
        Actual { input_tokens: input, output_tokens: output, cost_micros: 0 }
    }

    /// Metered terms with simple per-token prices (micro-USD per token).
    fn metered(included: u64, in_per_token: i64, out_per_token: i64, cap: i64) -> PlanTerms {
        PlanTerms::Metered {
            included_tokens: included,
            overage_input_per_m: in_per_token * 1_000_000,
            overage_output_per_m: out_per_token * 1_000_000,
            default_cap_micros: cap,
        }
    }

    /// What the `WALLET` object does around these functions: idempotency by
    /// request id / credit id, hold bookkeeping, the expiry alarm.
    struct Sim {
        terms: PlanTerms,
        state: WalletState,
        holds: Vec<Hold>,
        charges: Vec<Charge>,
        credited: i64,
        credit_ids: HashSet<String>,
    }

    impl Sim {
        fn new(terms: PlanTerms, state: WalletState) -> Self {
            Sim { terms, state, holds: Vec::new(), charges: Vec::new(), credited: 0, credit_ids: HashSet::new() }
        }

        fn reserve(&mut self, id: &str, est: &Estimate, now: i64) -> Result<Hold, Refusal> {
            if let Some(h) = find_hold(&self.holds, id) {
                return Ok(h.clone());
            }
            let h = reserve(&self.state, &self.holds, &self.terms, est, id, now, TTL)?;
            self.holds.push(h.clone());
            Ok(h)
        }

        fn settle(&mut self, id: &str, actual: &Actual) -> Option<Charge> {
            let hold = take_hold(&mut self.holds, id)?;
            let c = settle(&mut self.state, &hold, &self.terms, actual, &self.holds);
            self.charges.push(c.clone());
            Some(c)
        }

        fn release(&mut self, id: &str) -> bool {
            take_hold(&mut self.holds, id).is_some()
        }

        fn alarm(&mut self, now: i64) -> usize {
            let expired: Vec<String> = self.holds.iter().filter(|h| h.is_expired(now)).map(|h| h.request_id.clone()).collect();
            for id in &expired {
                if let Some(hold) = take_hold(&mut self.holds, id) {
                    let c = settle_expired(&mut self.state, &hold, &self.terms);
                    self.charges.push(c);
                }
            }
            expired.len()
        }

        fn credit(&mut self, event_id: &str, amount: i64) -> Result<i64, &'static str> {
            if !self.credit_ids.insert(event_id.to_string()) {
                return Ok(self.state.balance_micros);
            }
            let b = credit(&mut self.state, amount)?;
            self.credited += amount;
            Ok(b)
        }

        fn charged_prepaid(&self) -> i64 {
            self.charges.iter().map(|c| c.prepaid_micros).sum()
        }
    }

    /// Deterministic LCG (Knuth's MMIX constants); the high bits are used.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next() % n
            }
        }
    }

    // ---- plans -------------------------------------------------------------

    #[test]
    fn plan_names_map_to_terms() {
        for p in ["prepaid", "ignition", "velocity", "dominance", "", "enterprise", "BASIC"] {
            assert_eq!(plan_terms(p), PlanTerms::Prepaid, "{p}");
        }
        assert_eq!(
            plan_terms("basic"),
            PlanTerms::Metered {
                included_tokens: 5_000_000,
                overage_input_per_m: 3_000_000,
                overage_output_per_m: 15_000_000,
                default_cap_micros: 100_000_000
            }
        );
        assert_eq!(
            plan_terms("pro"),
            PlanTerms::Metered {
                included_tokens: 30_000_000,
                overage_input_per_m: 2_500_000,
                overage_output_per_m: 12_000_000,
                default_cap_micros: 500_000_000
            }
        );
    }

    #[test]
    fn types_round_trip_through_json() {
        let terms = plan_terms("basic");
        let j = serde_json::to_value(terms).unwrap();
        assert_eq!(j["kind"], "metered");
        assert_eq!(serde_json::from_value::<PlanTerms>(j).unwrap(), terms);
        assert_eq!(serde_json::to_value(PlanTerms::Prepaid).unwrap(), serde_json::json!({"kind": "prepaid"}));

        let state = WalletState { balance_micros: 5, spending_cap_micros: Some(7), ..WalletState::default() };
        let back: WalletState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
        // Stored state missing newer fields still loads.
        let old: WalletState = serde_json::from_str(r#"{"balance_micros": 42}"#).unwrap();
        assert_eq!(old, prepaid(42));

        let hold = reserve(&prepaid(10), &[], &PlanTerms::Prepaid, &est(3), "r1", NOW, TTL).unwrap();
        let back: Hold = serde_json::from_str(&serde_json::to_string(&hold).unwrap()).unwrap();
        assert_eq!(back, hold);

        let r = Refusal::SpendingCap { cap_micros: 1, overage_micros: 2 };
        let j = serde_json::to_value(r).unwrap();
        assert_eq!(j["reason"], "spending_cap");
        assert_eq!(serde_json::from_value::<Refusal>(j).unwrap(), r);
        assert!(r.to_string().contains("spending cap"));

        let c = Charge { request_id: "r".into(), overage_micros: 3, capped: true, ..Charge::default() };
        assert_eq!(serde_json::from_str::<Charge>(&serde_json::to_string(&c).unwrap()).unwrap(), c);
    }

    // ---- prepaid -----------------------------------------------------------

    #[test]
    fn exact_balance_passes_one_micro_more_is_refused() {
        let s = prepaid(1_000);
        let h = reserve(&s, &[], &PlanTerms::Prepaid, &est(1_000), "a", NOW, TTL).unwrap();
        assert_eq!(h.prepaid_micros, 1_000);
        assert_eq!((h.allowance_tokens, h.overage_micros), (0, 0));
        assert_eq!((h.created_ms, h.expires_ms), (NOW, NOW + TTL));
        assert_eq!(
            reserve(&s, &[], &PlanTerms::Prepaid, &est(1_001), "a", NOW, TTL),
            Err(Refusal::InsufficientCredits { balance_micros: 1_000, available_micros: 1_000 })
        );
        // With 400 held elsewhere, 600 passes and 601 does not.
        let held = [Hold { prepaid_micros: 400, ..h.clone() }];
        assert_eq!(available_micros(&s, &held), 600);
        assert!(reserve(&s, &held, &PlanTerms::Prepaid, &est(600), "b", NOW, TTL).is_ok());
        assert_eq!(
            reserve(&s, &held, &PlanTerms::Prepaid, &est(601), "b", NOW, TTL),
            Err(Refusal::InsufficientCredits { balance_micros: 1_000, available_micros: 600 })
        );
    }

    #[test]
    fn zero_cost_always_passes() {
        let s = prepaid(0);
        assert_eq!(reserve(&s, &[], &PlanTerms::Prepaid, &est(0), "a", NOW, TTL).map(|h| h.prepaid_micros), Ok(0));
        // Even if a refund left the balance below what is held.
        let held =
            [Hold { request_id: "x".into(), prepaid_micros: 5, allowance_tokens: 0, overage_micros: 0, created_ms: 0, expires_ms: 1 }];
        assert_eq!(available_micros(&s, &held), 0);
        assert!(reserve(&s, &held, &PlanTerms::Prepaid, &est(0), "a", NOW, TTL).is_ok());
        // A negative estimate is treated as 0, never as a credit.
        assert_eq!(reserve(&s, &[], &PlanTerms::Prepaid, &est(-5), "a", NOW, TTL).map(|h| h.prepaid_micros), Ok(0));
    }

    #[test]
    fn settle_charges_actual_and_releases_the_rest() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(1_000));
        sim.reserve("a", &est(800), NOW).unwrap();
        assert_eq!(available_micros(&sim.state, &sim.holds), 200);
        let c = sim.settle("a", &act(300)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped, c.expired), (300, false, false));
        assert_eq!(sim.state.balance_micros, 700);
        assert_eq!(available_micros(&sim.state, &sim.holds), 700);
    }

    #[test]
    fn settle_may_exceed_the_hold_from_free_balance_but_never_others_holds() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(1_000));
        sim.reserve("a", &est(100), NOW).unwrap();
        sim.reserve("b", &est(600), NOW).unwrap();
        // a costs 350: its own 100 + 250 of the 300 free.
        let c = sim.settle("a", &act(350)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped), (350, false));
        assert_eq!(sim.state.balance_micros, 650);
        assert_eq!(available_micros(&sim.state, &sim.holds), 50);
        // b costs 700 but only 650 is left: charged 650, capped.
        let c = sim.settle("b", &act(700)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped), (650, true));
        assert_eq!(sim.state.balance_micros, 0);
    }

    #[test]
    fn capped_when_actual_exceeds_available() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(500));
        sim.reserve("a", &est(200), NOW).unwrap();
        sim.reserve("b", &est(300), NOW).unwrap();
        // a may take 500 − 300 (held by b) = 200.
        let c = sim.settle("a", &act(201)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped), (200, true));
        assert_eq!(sim.state.balance_micros, 300);
        let c = sim.settle("b", &act(300)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped), (300, false));
        assert_eq!(sim.state.balance_micros, 0);
    }

    #[test]
    fn settle_ignores_its_own_hold_if_passed_among_the_others() {
        let mut s = prepaid(100);
        let h = reserve(&s, &[], &PlanTerms::Prepaid, &est(100), "a", NOW, TTL).unwrap();
        let c = settle(&mut s, &h, &PlanTerms::Prepaid, &act(100), std::slice::from_ref(&h));
        assert_eq!((c.prepaid_micros, c.capped, s.balance_micros), (100, false, 0));
    }

    #[test]
    fn settle_stays_within_balance_after_a_refund() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(1_000));
        sim.reserve("a", &est(600), NOW).unwrap();
        sim.reserve("b", &est(400), NOW).unwrap();
        sim.credit("refund", -900).unwrap();
        // 100 left, 400 held by b: a can be charged nothing.
        let c = sim.settle("a", &act(600)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped), (0, true));
        let c = sim.settle("b", &act(400)).unwrap();
        assert_eq!((c.prepaid_micros, c.capped), (100, true));
        assert_eq!(sim.state.balance_micros, 0);
    }

    #[test]
    fn release_restores_availability() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(1_000));
        sim.reserve("a", &est(1_000), NOW).unwrap();
        assert!(matches!(sim.reserve("b", &est(1), NOW), Err(Refusal::InsufficientCredits { .. })));
        assert!(sim.release("a"));
        assert_eq!(available_micros(&sim.state, &sim.holds), 1_000);
        assert_eq!(sim.state.balance_micros, 1_000);
        assert!(sim.reserve("b", &est(1_000), NOW).is_ok());
    }

    #[test]
    fn replays_change_nothing() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(1_000));
        let h1 = sim.reserve("a", &est(500), NOW).unwrap();
        // A replayed reservation returns the same hold and holds nothing more.
        let h2 = sim.reserve("a", &est(900), NOW + 5).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(sim.holds.len(), 1);
        sim.settle("a", &act(300)).unwrap();
        let after = sim.state.clone();
        assert_eq!(sim.settle("a", &act(300)), None);
        assert!(!sim.release("a"));
        assert_eq!(sim.alarm(NOW + 10 * TTL), 0);
        assert_eq!(sim.state, after);
        assert_eq!(sim.charges.len(), 1);

        sim.reserve("b", &est(100), NOW).unwrap();
        assert!(sim.release("b"));
        assert!(!sim.release("b"));
        assert_eq!(sim.state, after);

        assert_eq!(sim.credit("evt_1", 250), Ok(950));
        assert_eq!(sim.credit("evt_1", 250), Ok(950));
        assert_eq!(sim.state.balance_micros, 950);
    }

    #[test]
    fn expired_holds_settle_at_the_reserved_amount() {
        let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(1_000));
        sim.reserve("a", &est(300), NOW).unwrap();
        sim.reserve("b", &est(200), NOW + 1_000).unwrap();
        assert_eq!(next_expiry_ms(&sim.holds), Some(NOW + TTL));
        assert_eq!(sim.alarm(NOW + TTL - 1), 0);
        assert_eq!(sim.alarm(NOW + TTL), 1);
        let c = sim.charges.last().unwrap().clone();
        assert_eq!((c.request_id.as_str(), c.prepaid_micros, c.expired, c.capped), ("a", 300, true, false));
        assert_eq!(sim.state.balance_micros, 700);
        assert_eq!(next_expiry_ms(&sim.holds), Some(NOW + 1_000 + TTL));
        // The late settle of the expired request finds nothing.
        assert_eq!(sim.settle("a", &act(10)), None);
        assert_eq!(sim.state.balance_micros, 700);

        // Bounded by the balance.
        let mut s = prepaid(50);
        let h = Hold { request_id: "z".into(), prepaid_micros: 80, allowance_tokens: 0, overage_micros: 0, created_ms: 0, expires_ms: 0 };
        let c = settle_expired(&mut s, &h, &PlanTerms::Prepaid);
        assert_eq!((c.prepaid_micros, c.capped, c.expired, s.balance_micros), (50, true, true, 0));
    }

    #[test]
    fn credit_checks_sign_and_overflow() {
        let mut s = prepaid(100);
        assert_eq!(credit(&mut s, 50), Ok(150));
        assert_eq!(credit(&mut s, -150), Ok(0));
        assert!(credit(&mut s, -1).is_err());
        assert_eq!(s.balance_micros, 0);
        assert_eq!(credit(&mut s, i64::MAX), Ok(i64::MAX));
        assert!(credit(&mut s, 1).is_err());
        assert_eq!(s.balance_micros, i64::MAX);
    }

    #[test]
    fn random_prepaid_sequences_never_overdraw() {
        // Refusals, capped settles, expiries: every path must be exercised.
        let mut seen = [0u32; 3];
        for seed in 0..300u64 {
            let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5);
            let start = rng.below(5_000) as i64;
            let mut sim = Sim::new(PlanTerms::Prepaid, prepaid(start));
            let mut now = NOW;
            let mut next_id = 0u32;
            for step in 0..200 {
                now += rng.below(TTL as u64 / 4) as i64;
                let before_balance = sim.state.balance_micros;
                match rng.below(10) {
                    0..=3 => {
                        next_id += 1;
                        let id = format!("r{next_id}");
                        let cost = rng.below(2_000) as i64;
                        let available = available_micros(&sim.state, &sim.holds);
                        match sim.reserve(&id, &est(cost), now) {
                            Ok(h) => assert!(cost <= available && h.prepaid_micros == cost),
                            Err(Refusal::InsufficientCredits { balance_micros, available_micros: a }) => {
                                seen[0] += 1;
                                assert!(cost > available);
                                assert_eq!((balance_micros, a), (before_balance, available));
                            }
                            Err(r) => panic!("{r:?}"),
                        }
                    }
                    4..=6 if !sim.holds.is_empty() => {
                        let i = rng.below(sim.holds.len() as u64) as usize;
                        let hold = sim.holds[i].clone();
                        // Anywhere from nothing to well over the estimate.
                        let cost = rng.below(hold.prepaid_micros as u64 * 2 + 50) as i64;
                        let room = before_balance - held_prepaid(&sim.holds, Some(&hold.request_id));
                        let c = sim.settle(&hold.request_id, &act(cost)).unwrap();
                        assert!(c.prepaid_micros <= room, "seed {seed} step {step}: charged beyond room");
                        assert_eq!(c.prepaid_micros, cost.min(room));
                        assert_eq!(c.capped, cost > c.prepaid_micros);
                        seen[1] += u32::from(c.capped);
                        if cost <= hold.prepaid_micros {
                            assert!(!c.capped, "a cost within the hold is always covered");
                        }
                        // Replay.
                        let s = sim.state.clone();
                        assert_eq!(sim.settle(&hold.request_id, &act(cost)), None);
                        assert_eq!(sim.state, s);
                    }
                    7 if !sim.holds.is_empty() => {
                        let i = rng.below(sim.holds.len() as u64) as usize;
                        let id = sim.holds[i].request_id.clone();
                        let avail = available_micros(&sim.state, &sim.holds);
                        assert!(sim.release(&id));
                        assert!(available_micros(&sim.state, &sim.holds) >= avail);
                        assert_eq!(sim.state.balance_micros, before_balance);
                        assert!(!sim.release(&id));
                    }
                    8 => {
                        sim.alarm(now);
                        assert!(sim.holds.iter().all(|h| !h.is_expired(now)));
                    }
                    _ => {
                        let amount = rng.below(1_000) as i64;
                        let id = format!("evt{}", rng.below(20));
                        sim.credit(&id, amount).unwrap();
                    }
                }
                let held = held_prepaid(&sim.holds, None);
                assert!(sim.state.balance_micros >= 0, "seed {seed} step {step}");
                assert!(held <= sim.state.balance_micros, "seed {seed} step {step}: holds {held} > balance");
                assert_eq!(sim.state.balance_micros, start + sim.credited - sim.charged_prepaid(), "seed {seed} step {step}");
            }
            // Drain: everything left expires; conservation still exact.
            sim.alarm(i64::MAX);
            assert!(sim.holds.is_empty());
            seen[2] += sim.charges.iter().filter(|c| c.expired).count() as u32;
            assert!(sim.charges.iter().filter(|c| c.expired).all(|c| !c.capped), "expired holds are always covered");
            assert_eq!(start + sim.credited, sim.state.balance_micros + sim.charged_prepaid(), "seed {seed}");
        }
        assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
    }

    // ---- metered -----------------------------------------------------------

    fn metered_state(used: u64) -> WalletState {
        WalletState { allowance_used_tokens: used, ..WalletState::default() }
    }

    fn settle_fresh(terms: &PlanTerms, state: &mut WalletState, e: &Estimate, a: &Actual) -> Charge {
        let h = reserve(state, &[], terms, e, "r", NOW, TTL).unwrap();
        settle(state, &h, terms, a, &[])
    }

    #[test]
    fn allowance_switches_to_overage_on_the_exact_token() {
        let terms = metered(100, 3, 15, 1_000_000);

        // 10 left, 7 in + 8 out: allowance takes 7 in + 3 out, overage 5 out.
        let mut s = metered_state(90);
        let c = settle_fresh(&terms, &mut s, &tokens(7, 8), &used(7, 8));
        assert_eq!((c.allowance_input_tokens, c.allowance_output_tokens), (7, 3));
        assert_eq!((c.overage_input_tokens, c.overage_output_tokens), (0, 5));
        assert_eq!(c.overage_micros, 75);
        assert_eq!((s.allowance_used_tokens, s.overage_micros, s.overage_input_tokens, s.overage_output_tokens), (100, 75, 0, 5));
        assert!(!c.capped);

        // 5 left: 5 in from the allowance, 2 in + 8 out overage.
        let mut s = metered_state(95);
        let c = settle_fresh(&terms, &mut s, &tokens(7, 8), &used(7, 8));
        assert_eq!((c.allowance_input_tokens, c.allowance_output_tokens, c.overage_input_tokens, c.overage_output_tokens), (5, 0, 2, 8));
        assert_eq!(c.overage_micros, 2 * 3 + 8 * 15);

        // Exactly enough: no overage.
        let mut s = metered_state(85);
        let c = settle_fresh(&terms, &mut s, &tokens(7, 8), &used(7, 8));
        assert_eq!((c.allowance_input_tokens, c.allowance_output_tokens, c.overage_micros), (7, 8, 0));
        assert_eq!(s.allowance_used_tokens, 100);

        // One short: exactly one output token of overage.
        let mut s = metered_state(86);
        let c = settle_fresh(&terms, &mut s, &tokens(7, 8), &used(7, 8));
        assert_eq!((c.allowance_output_tokens, c.overage_output_tokens, c.overage_micros), (7, 1, 15));

        // Nothing left: all overage.
        let mut s = metered_state(100);
        let c = settle_fresh(&terms, &mut s, &tokens(7, 8), &used(7, 8));
        assert_eq!((c.allowance_input_tokens, c.allowance_output_tokens, c.overage_input_tokens, c.overage_output_tokens), (0, 0, 7, 8));
        assert_eq!(c.overage_micros, 7 * 3 + 8 * 15);
        assert_eq!(s.allowance_used_tokens, 100);

        // Over-used (e.g. an expired hold counted after a roll): saturates.
        let mut s = metered_state(150);
        let c = settle_fresh(&terms, &mut s, &tokens(1, 0), &used(1, 0));
        assert_eq!((c.allowance_input_tokens, c.overage_input_tokens), (0, 1));
    }

    #[test]
    fn reservation_holds_allowance_then_worst_case_overage() {
        let terms = metered(100, 3, 15, 1_000_000);
        let s = metered_state(90);
        let h = reserve(&s, &[], &terms, &tokens(7, 8), "r", NOW, TTL).unwrap();
        // 15 worst-case tokens: 10 allowance, 5 priced at the output price.
        assert_eq!((h.prepaid_micros, h.allowance_tokens, h.overage_micros), (0, 10, 75));
        // Metered plans ignore the balance and the model price.
        let h =
            reserve(&s, &[], &terms, &Estimate { input_tokens: 1, max_output_tokens: 0, cost_micros: 1_000_000 }, "r", NOW, TTL).unwrap();
        assert_eq!((h.prepaid_micros, h.allowance_tokens, h.overage_micros), (0, 1, 0));
    }

    #[test]
    fn overage_rounds_up_over_the_whole_request() {
        // 1.5 and 2.5 micro-USD per token.
        let terms = PlanTerms::Metered {
            included_tokens: 0,
            overage_input_per_m: 1_500_000,
            overage_output_per_m: 2_500_000,
            default_cap_micros: 1_000_000,
        };
        let mut s = metered_state(0);
        // 1.5 + 2.5 = 4 exactly (not 2 + 3).
        assert_eq!(settle_fresh(&terms, &mut s, &tokens(1, 1), &used(1, 1)).overage_micros, 4);
        // 1.5 → 2.
        assert_eq!(settle_fresh(&terms, &mut s, &tokens(1, 0), &used(1, 0)).overage_micros, 2);
        // 3 × 2.5 = 7.5 → 8.
        assert_eq!(settle_fresh(&terms, &mut s, &tokens(0, 3), &used(0, 3)).overage_micros, 8);
        assert_eq!(s.overage_micros, 14);
        assert_eq!((s.overage_input_tokens, s.overage_output_tokens), (2, 4));

        // Real plan prices: pro input is 2.5 micro-USD per token.
        let pro = plan_terms("pro");
        let mut s = metered_state(30_000_000);
        assert_eq!(settle_fresh(&pro, &mut s, &tokens(3, 0), &used(3, 0)).overage_micros, 8);
        let basic = plan_terms("basic");
        let mut s = metered_state(5_000_000);
        assert_eq!(settle_fresh(&basic, &mut s, &tokens(1_000_000, 1_000_000), &used(1_000_000, 1_000_000)).overage_micros, 18_000_000);
    }

    #[test]
    fn spending_cap_refuses_worst_case_overage() {
        let terms = metered(0, 3, 15, 1_000_000);
        let s = WalletState { spending_cap_micros: Some(150), ..WalletState::default() };
        // 10 worst-case tokens × 15 = 150: exactly the cap.
        assert_eq!(reserve(&s, &[], &terms, &tokens(5, 5), "a", NOW, TTL).map(|h| h.overage_micros), Ok(150));
        assert_eq!(
            reserve(&s, &[], &terms, &tokens(5, 6), "a", NOW, TTL),
            Err(Refusal::SpendingCap { cap_micros: 150, overage_micros: 165 })
        );
        // Settled overage and other holds count against the cap.
        let s2 = WalletState { overage_micros: 30, ..s.clone() };
        let held = [reserve(&s2, &[], &terms, &tokens(2, 2), "h", NOW, TTL).unwrap()];
        assert_eq!(held[0].overage_micros, 60);
        assert!(reserve(&s2, &held, &terms, &tokens(2, 2), "a", NOW, TTL).is_ok());
        assert_eq!(
            reserve(&s2, &held, &terms, &tokens(2, 3), "a", NOW, TTL),
            Err(Refusal::SpendingCap { cap_micros: 150, overage_micros: 165 })
        );
        // The plan default applies when the account set none.
        let basic = plan_terms("basic");
        let s = metered_state(5_000_000);
        // $100 / 15 micro-USD per token = 6_666_666.67 tokens.
        assert!(reserve(&s, &[], &basic, &tokens(0, 6_666_666), "a", NOW, TTL).is_ok());
        assert_eq!(
            reserve(&s, &[], &basic, &tokens(0, 6_666_667), "a", NOW, TTL),
            Err(Refusal::SpendingCap { cap_micros: 100_000_000, overage_micros: 100_000_005 })
        );
        // A request that fits in the allowance is never refused by the cap,
        // even when the cap was lowered below the period's overage.
        let terms = metered(100, 3, 15, 1_000_000);
        let s = WalletState { spending_cap_micros: Some(10), overage_micros: 50, ..WalletState::default() };
        assert!(reserve(&s, &[], &terms, &tokens(50, 50), "a", NOW, TTL).is_ok());
        assert!(matches!(reserve(&s, &[], &terms, &tokens(50, 51), "a", NOW, TTL), Err(Refusal::SpendingCap { .. })));
        // A zero cap allows no overage at all.
        let s = WalletState { spending_cap_micros: Some(0), ..WalletState::default() };
        assert!(reserve(&s, &[], &metered(0, 3, 15, 1_000), &tokens(1, 0), "a", NOW, TTL).is_err());
    }

    #[test]
    fn settle_is_limited_by_the_cap() {
        let terms = metered(0, 3, 15, 1_000_000);
        let mut sim = Sim::new(terms, WalletState { spending_cap_micros: Some(200), ..WalletState::default() });
        sim.reserve("a", &tokens(5, 5), NOW).unwrap(); // 150
        sim.reserve("b", &tokens(1, 2), NOW).unwrap(); // 45
                                                       // a used 20 output tokens = 300, but b holds 45: room is 155.
        let c = sim.settle("a", &used(0, 20)).unwrap();
        assert_eq!((c.overage_output_tokens, c.overage_micros, c.capped), (20, 155, true));
        assert_eq!((sim.state.overage_micros, sim.state.overage_output_tokens), (155, 20));
        let c = sim.settle("b", &used(1, 2)).unwrap();
        assert_eq!((c.overage_micros, c.capped), (33, false));
        assert_eq!(sim.state.overage_micros, 188);
    }

    #[test]
    fn concurrent_holds_share_the_allowance() {
        let terms = metered(100, 3, 15, 1_000_000);
        let mut sim = Sim::new(terms, WalletState::default());
        let a = sim.reserve("a", &tokens(10, 50), NOW).unwrap();
        let b = sim.reserve("b", &tokens(30, 30), NOW).unwrap();
        assert_eq!((a.allowance_tokens, a.overage_micros), (60, 0));
        assert_eq!((b.allowance_tokens, b.overage_micros), (40, 20 * 15));
        let c = sim.reserve("c", &tokens(1, 0), NOW).unwrap();
        assert_eq!((c.allowance_tokens, c.overage_micros), (0, 3 * 5));
        assert!(sim.release("c"));

        // b settles first while a still holds 60: b may use 40.
        let cb = sim.settle("b", &used(30, 30)).unwrap();
        assert_eq!(
            (cb.allowance_input_tokens, cb.allowance_output_tokens, cb.overage_input_tokens, cb.overage_output_tokens),
            (30, 10, 0, 20)
        );
        assert_eq!(cb.overage_micros, 300);
        // a used less than it held: the rest goes back to the allowance.
        let ca = sim.settle("a", &used(10, 20)).unwrap();
        assert_eq!((ca.allowance_input_tokens, ca.allowance_output_tokens, ca.overage_micros), (10, 20, 0));
        assert_eq!(sim.state.allowance_used_tokens, 70);
        let d = sim.reserve("d", &tokens(30, 30), NOW).unwrap();
        assert_eq!((d.allowance_tokens, d.overage_micros), (30, 30 * 15));

        // Other order: a settles first with less than it held, b gets it.
        let mut sim = Sim::new(terms, WalletState::default());
        sim.reserve("a", &tokens(10, 50), NOW).unwrap();
        sim.reserve("b", &tokens(30, 30), NOW).unwrap();
        sim.settle("a", &used(10, 20)).unwrap();
        let cb = sim.settle("b", &used(30, 30)).unwrap();
        assert_eq!((cb.allowance_input_tokens, cb.allowance_output_tokens, cb.overage_micros), (30, 30, 0));
        assert_eq!(sim.state.allowance_used_tokens, 90);
    }

    #[test]
    fn expired_metered_hold_counts_its_reservation() {
        let terms = metered(100, 3, 15, 1_000_000);
        let mut sim = Sim::new(terms, metered_state(90));
        sim.reserve("a", &tokens(7, 8), NOW).unwrap();
        assert_eq!(sim.alarm(NOW + TTL), 1);
        let c = sim.charges[0].clone();
        assert!(c.expired && !c.capped);
        assert_eq!((c.allowance_input_tokens, c.overage_micros, c.prepaid_micros), (10, 75, 0));
        assert_eq!((sim.state.allowance_used_tokens, sim.state.overage_micros), (100, 75));
        // Bounded by the cap if it was lowered meanwhile.
        let mut s = WalletState { spending_cap_micros: Some(80), overage_micros: 40, ..WalletState::default() };
        let h = Hold { request_id: "z".into(), prepaid_micros: 0, allowance_tokens: 0, overage_micros: 75, created_ms: 0, expires_ms: 0 };
        let c = settle_expired(&mut s, &h, &terms);
        assert_eq!((c.overage_micros, c.capped, s.overage_micros), (40, true, 80));
    }

    #[test]
    fn roll_period_resets_the_allowance_and_overage() {
        let terms = metered(100, 3, 15, 1_000_000);
        let mut s = WalletState {
            balance_micros: 77,
            period_start_ms: 1,
            period_end_ms: 2,
            allowance_used_tokens: 100,
            overage_micros: 500,
            overage_input_tokens: 4,
            overage_output_tokens: 9,
            spending_cap_micros: Some(600),
        };
        // The period's allowance is spent and 500 + 10 × 15 would pass the cap of 600.
        assert_eq!(
            reserve(&s, &[], &terms, &tokens(5, 5), "a", NOW, TTL),
            Err(Refusal::SpendingCap { cap_micros: 600, overage_micros: 650 })
        );
        roll_period(&mut s, 2, 3);
        assert_eq!(
            s,
            WalletState {
                balance_micros: 77,
                period_start_ms: 2,
                period_end_ms: 3,
                allowance_used_tokens: 0,
                overage_micros: 0,
                overage_input_tokens: 0,
                overage_output_tokens: 0,
                spending_cap_micros: Some(600),
            }
        );
        let h = reserve(&s, &[], &terms, &tokens(5, 5), "a", NOW, TTL).unwrap();
        assert_eq!((h.allowance_tokens, h.overage_micros), (10, 0));
    }

    #[test]
    fn random_metered_sequences_keep_allowance_and_cap() {
        // Cap refusals, capped settles, expiries, allowance/overage splits.
        let mut seen = [0u32; 4];
        for seed in 0..300u64 {
            let mut rng = Lcg(seed ^ 0x5EED_0000);
            let included = rng.below(2_000);
            let cap = rng.below(20_000) as i64;
            let terms = PlanTerms::Metered {
                included_tokens: included,
                overage_input_per_m: 1_000_000 + rng.below(3_000_000) as i64,
                overage_output_per_m: 4_000_000 + rng.below(12_000_000) as i64,
                default_cap_micros: cap,
            };
            let PlanTerms::Metered { overage_input_per_m, overage_output_per_m, .. } = terms else { unreachable!() };
            let mut sim = Sim::new(terms, WalletState::default());
            let mut now = NOW;
            let mut next_id = 0u32;
            let mut tokens_used = 0u64;
            for step in 0..200 {
                now += rng.below(TTL as u64 / 4) as i64;
                match rng.below(10) {
                    0..=3 => {
                        next_id += 1;
                        let e = tokens(rng.below(300), rng.below(300));
                        if let Err(Refusal::SpendingCap { .. }) = sim.reserve(&format!("r{next_id}"), &e, now) {
                            seen[0] += 1;
                        }
                    }
                    4..=6 if !sim.holds.is_empty() => {
                        let i = rng.below(sim.holds.len() as u64) as usize;
                        let id = sim.holds[i].request_id.clone();
                        let a = used(rng.below(400), rng.below(400));
                        let c = sim.settle(&id, &a).unwrap();
                        assert_eq!(c.allowance_input_tokens + c.overage_input_tokens, a.input_tokens);
                        assert_eq!(c.allowance_output_tokens + c.overage_output_tokens, a.output_tokens);
                        // Input is drawn from the allowance first.
                        assert!(c.allowance_output_tokens == 0 || c.overage_input_tokens == 0);
                        let full = overage_cost(overage_input_per_m, overage_output_per_m, c.overage_input_tokens, c.overage_output_tokens);
                        assert_eq!(c.capped, c.overage_micros < full, "seed {seed} step {step}");
                        seen[1] += u32::from(c.capped);
                        let in_allowance = c.allowance_input_tokens + c.allowance_output_tokens;
                        seen[3] += u32::from(in_allowance > 0 && c.overage_input_tokens + c.overage_output_tokens > 0);
                        assert!(c.overage_micros <= full);
                        tokens_used += a.input_tokens + a.output_tokens;
                        assert_eq!(sim.settle(&id, &a), None);
                    }
                    7 if !sim.holds.is_empty() => {
                        let i = rng.below(sim.holds.len() as u64) as usize;
                        let id = sim.holds[i].request_id.clone();
                        assert!(sim.release(&id));
                    }
                    _ => {
                        sim.alarm(now);
                    }
                }
                let s = &sim.state;
                assert!(s.allowance_used_tokens + held_allowance(&sim.holds, None) <= included, "seed {seed} step {step}: allowance");
                assert!(s.overage_micros + held_overage(&sim.holds, None) <= cap, "seed {seed} step {step}: cap");
                let charged: i64 = sim.charges.iter().map(|c| c.overage_micros).sum();
                assert_eq!(s.overage_micros, charged);
                let allowance: u64 = sim.charges.iter().map(|c| c.allowance_input_tokens + c.allowance_output_tokens).sum();
                assert_eq!(s.allowance_used_tokens, allowance);
                assert!(sim.charges.iter().all(|c| c.prepaid_micros == 0));
            }
            let settled: u64 = sim
                .charges
                .iter()
                .filter(|c| !c.expired)
                .map(|c| c.allowance_input_tokens + c.allowance_output_tokens + c.overage_input_tokens + c.overage_output_tokens)
                .sum();
            assert_eq!(settled, tokens_used);
            seen[2] += sim.charges.iter().filter(|c| c.expired).count() as u32;
        }
        assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
    }

    // ---- misc --------------------------------------------------------------

    #[test]
    fn low_balance_fires_once_per_crossing() {
        let t = LOW_BALANCE_THRESHOLD_MICROS;
        assert!(low_balance_crossed(t, t - 1, t));
        assert!(low_balance_crossed(5 * t, 0, t));
        assert!(!low_balance_crossed(t, t, t));
        assert!(!low_balance_crossed(t - 1, t - 2, t), "already below: no second notice");
        assert!(!low_balance_crossed(t - 1, t + 5, t), "a top-up is not a crossing down");
        // A sequence of charges crosses exactly once; a top-up re-arms it.
        let balances = [3 * t, 2 * t, t, t / 2, t / 4, 0, 4 * t, t, t - 1, 0];
        let crossings = balances.windows(2).filter(|w| low_balance_crossed(w[0], w[1], t)).count();
        assert_eq!(crossings, 2);
    }

    #[test]
    fn input_estimate_rounds_up() {
        assert_eq!(estimate_input_tokens(0), 0);
        assert_eq!(estimate_input_tokens(1), 1);
        assert_eq!(estimate_input_tokens(3), 1);
        assert_eq!(estimate_input_tokens(4), 2);
        assert_eq!(estimate_input_tokens(3_000), 1_000);
        assert_eq!(estimate_input_tokens(u64::MAX), u64::MAX / 3); // 2⁶⁴ − 1 is a multiple of 3
        assert_eq!(estimate_input_tokens(u64::MAX - 1), u64::MAX / 3);
    }

    #[test]
    fn absurd_inputs_saturate() {
        let terms = plan_terms("pro");
        let s = WalletState { overage_micros: i64::MAX, spending_cap_micros: Some(i64::MAX), ..WalletState::default() };
        let e = Estimate { input_tokens: u64::MAX, max_output_tokens: u64::MAX, cost_micros: i64::MAX };
        assert!(matches!(reserve(&s, &[], &terms, &e, "a", i64::MAX, i64::MAX), Err(Refusal::SpendingCap { .. })));
        let h = Hold {
            request_id: "a".into(),
            prepaid_micros: i64::MAX,
            allowance_tokens: u64::MAX,
            overage_micros: i64::MAX,
            created_ms: 0,
            expires_ms: 0,
        };
        let mut s2 = s.clone();
        let c = settle(&mut s2, &h, &terms, &used(u64::MAX, u64::MAX), &[h.clone(), h.clone()]);
        assert!(c.capped);
        let mut p = prepaid(i64::MAX);
        let c = settle(&mut p, &h, &PlanTerms::Prepaid, &act(i64::MAX), &[h.clone(), h.clone()]);
        assert_eq!(c.prepaid_micros, i64::MAX);
        assert_eq!(available_micros(&prepaid(5), &[h.clone(), h]), 0);
    }
}
