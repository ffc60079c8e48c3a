//! Wallet leases: how an isolate serves short requests without a round trip
//! to the account's `WALLET` object for each one.
//!
//! The object grants an isolate a *lease*: an ordinary hold (so the balance,
//! allowance and spending cap it covers cannot be spent twice) whose amounts
//! the isolate then spends locally, reserving and settling each request with
//! the very same [`crate::wallet::reserve`] and [`crate::wallet::settle`]
//! applied to a small wallet made of the lease. Now and then (and whenever
//! the lease cannot cover a request) the isolate *renews*: it reports what it
//! has spent and asks for the amounts it still needs; the object applies the
//! spending to the real wallet and replaces the hold.
//!
//! Reports carry cumulative totals, never deltas, so a replayed or reordered
//! report applies nothing twice: the object keeps what it has applied per
//! lease and applies only the difference.
//!
//! What this gives up, knowingly: a lease holds money (or allowance) for one
//! isolate, so another isolate of the same account may be refused, or pay
//! overage, while it is held; leases are sized to a few dozen requests and
//! shrink back to what is in flight as soon as the isolate goes idle. If an
//! isolate dies, what it spent since its last report (at most one flush
//! interval) is not charged, and the object releases the lease when it
//! expires: the error is in the customer's favour and bounded.

use serde::{Deserialize, Serialize};

use crate::wallet::{self as w, Actual, Charge, Estimate, Hold, PlanTerms, Refusal, WalletState};

/// Requests' worth of headroom a lease asks for beyond what is in flight.
pub const HEADROOM_REQUESTS: u64 = 32;
/// A lease hold lives this long without a renewal; it is renewed long before.
pub const LEASE_TTL_MS: i64 = 10 * 60 * 1000;
/// Renew when less than this is left of the lease's life.
pub const RENEW_BEFORE_EXPIRY_MS: i64 = 5 * 60 * 1000;

/// Amounts a lease holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAmounts {
    pub prepaid_micros: i64,
    pub allowance_tokens: u64,
    pub overage_micros: i64,
}

/// What an isolate has spent under one lease id, cumulative since the lease
/// was first granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub prepaid_micros: i64,
    pub allowance_tokens: u64,
    pub overage_input_tokens: u64,
    pub overage_output_tokens: u64,
    pub overage_micros: i64,
    pub requests: u64,
}

impl Spent {
    fn add(&mut self, c: &Charge) {
        self.prepaid_micros = self.prepaid_micros.saturating_add(c.prepaid_micros);
        self.allowance_tokens = self.allowance_tokens.saturating_add(c.allowance_input_tokens).saturating_add(c.allowance_output_tokens);
        self.overage_input_tokens = self.overage_input_tokens.saturating_add(c.overage_input_tokens);
        self.overage_output_tokens = self.overage_output_tokens.saturating_add(c.overage_output_tokens);
        self.overage_micros = self.overage_micros.saturating_add(c.overage_micros);
        self.requests += 1;
    }

    /// What `self` has beyond `earlier` (never negative: an older report
    /// than the one applied changes nothing).
    pub fn since(&self, earlier: &Spent) -> Spent {
        Spent {
            prepaid_micros: (self.prepaid_micros - earlier.prepaid_micros).max(0),
            allowance_tokens: self.allowance_tokens.saturating_sub(earlier.allowance_tokens),
            overage_input_tokens: self.overage_input_tokens.saturating_sub(earlier.overage_input_tokens),
            overage_output_tokens: self.overage_output_tokens.saturating_sub(earlier.overage_output_tokens),
            overage_micros: (self.overage_micros - earlier.overage_micros).max(0),
            requests: self.requests.saturating_sub(earlier.requests),
        }
    }

    /// The larger of each field: what has been applied once both are.
    pub fn max(&self, other: &Spent) -> Spent {
        Spent {
            prepaid_micros: self.prepaid_micros.max(other.prepaid_micros),
            allowance_tokens: self.allowance_tokens.max(other.allowance_tokens),
            overage_input_tokens: self.overage_input_tokens.max(other.overage_input_tokens),
            overage_output_tokens: self.overage_output_tokens.max(other.overage_output_tokens),
            overage_micros: self.overage_micros.max(other.overage_micros),
            requests: self.requests.max(other.requests),
        }
    }
}

/// The object's answer to a renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub amounts: LeaseAmounts,
    /// The allowance granted is all the account had left: a request that
    /// needs more pays overage, as it would at the object.
    pub allowance_final: bool,
    pub expires_ms: i64,
    /// The wallet after the report was applied.
    pub balance_micros: i64,
    pub spending_cap_micros: i64,
    pub low_balance_crossed: bool,
}

/// The object's side of a renewal: applies `spent` beyond what was already
/// applied for this lease (`applied`, updated), then replaces the lease's
/// hold by what is asked for, bounded by what the wallet has free. A lease
/// asked to hold nothing is simply gone.
#[allow(clippy::too_many_arguments)]
pub fn renew(
    state: &mut WalletState,
    holds: &mut Vec<Hold>,
    terms: &PlanTerms,
    lease_id: &str,
    applied: &mut Spent,
    spent: &Spent,
    want: &LeaseAmounts,
    now_ms: i64,
) -> Grant {
    let _ = w::take_hold(holds, lease_id);
    let new = spent.since(applied);
    *applied = applied.max(spent);
    let before = state.balance_micros;
    state.balance_micros = state.balance_micros.saturating_sub(new.prepaid_micros.min(state.balance_micros.max(0)));
    state.allowance_used_tokens = state.allowance_used_tokens.saturating_add(new.allowance_tokens);
    state.overage_input_tokens = state.overage_input_tokens.saturating_add(new.overage_input_tokens);
    state.overage_output_tokens = state.overage_output_tokens.saturating_add(new.overage_output_tokens);
    state.overage_micros = state.overage_micros.saturating_add(new.overage_micros);

    let mut amounts =
        LeaseAmounts { prepaid_micros: want.prepaid_micros.clamp(0, w::available_micros(state, holds)), ..Default::default() };
    let mut allowance_final = true;
    let mut cap = 0;
    if let PlanTerms::Metered { included_tokens, default_cap_micros, .. } = *terms {
        let left = w::allowance_left(state, included_tokens, holds, None);
        amounts.allowance_tokens = want.allowance_tokens.min(left);
        allowance_final = amounts.allowance_tokens == left;
        cap = w::spending_cap(state, default_cap_micros);
        amounts.overage_micros = want.overage_micros.clamp(0, w::overage_room(state, cap, holds, None));
    }
    let expires_ms = now_ms.saturating_add(LEASE_TTL_MS);
    if amounts != LeaseAmounts::default() {
        holds.push(Hold {
            request_id: lease_id.to_string(),
            prepaid_micros: amounts.prepaid_micros,
            allowance_tokens: amounts.allowance_tokens,
            overage_micros: amounts.overage_micros,
            created_ms: now_ms,
            expires_ms,
        });
    }
    Grant {
        amounts,
        allowance_final,
        expires_ms,
        balance_micros: state.balance_micros,
        spending_cap_micros: cap,
        low_balance_crossed: w::low_balance_crossed(before, state.balance_micros, w::LOW_BALANCE_THRESHOLD_MICROS),
    }
}

/// Lease ids start with this, so the object's alarm releases an expired
/// lease instead of charging it as an abandoned request.
pub const LEASE_PREFIX: &str = "lease:";

pub fn is_lease(hold_id: &str) -> bool {
    hold_id.starts_with(LEASE_PREFIX)
}

/// Why a request could not be reserved locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// The lease is too small (or stale); renew and try again.
    Renew,
    /// The lease is all the wallet could give and it does not cover this.
    Refused(Refusal),
}

/// One isolate's view of its lease on one account's wallet.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalLease {
    pub terms: PlanTerms,
    pub grant: Grant,
    /// `spent` as it was when the current grant was made.
    pub spent_at_grant: Spent,
    pub spent: Spent,
    /// Requests reserved against the lease and not yet settled.
    pub holds: Vec<Hold>,
    /// No grant yet (a fresh lease holds nothing).
    pub granted: bool,
}

impl LocalLease {
    pub fn new(terms: PlanTerms) -> Self {
        LocalLease {
            terms,
            grant: Grant::default(),
            spent_at_grant: Spent::default(),
            spent: Spent::default(),
            holds: Vec::new(),
            granted: false,
        }
    }

    /// The lease as a wallet of its own: what is left of each amount.
    fn as_wallet(&self) -> WalletState {
        let since = self.spent.since(&self.spent_at_grant);
        let mut s = WalletState { balance_micros: (self.grant.amounts.prepaid_micros - since.prepaid_micros).max(0), ..Default::default() };
        if let PlanTerms::Metered { included_tokens, .. } = self.terms {
            let left = self.grant.amounts.allowance_tokens.saturating_sub(since.allowance_tokens);
            s.allowance_used_tokens = included_tokens.saturating_sub(left);
            let cap = self.grant.amounts.overage_micros.max(0);
            s.spending_cap_micros = Some(cap);
            s.overage_micros = since.overage_micros.min(cap);
        }
        s
    }

    /// The real balance as far as this isolate knows (what the object said
    /// at the last renewal, less what was spent here since).
    pub fn balance_micros(&self) -> i64 {
        (self.grant.balance_micros - self.spent.since(&self.spent_at_grant).prepaid_micros).max(0)
    }

    /// Reserves a request's worst case against the lease. `Renew` when the
    /// lease might answer differently from the object (too small, stale, or
    /// it would send to overage what the account's allowance still covers);
    /// `after_renewal` says the lease was just renewed for this request, so
    /// its answer stands.
    pub fn reserve(
        &mut self,
        est: &Estimate,
        request_id: &str,
        now_ms: i64,
        hold_ttl_ms: i64,
        after_renewal: bool,
    ) -> Result<Hold, Shortfall> {
        let fresh = self.granted && now_ms < self.grant.expires_ms - RENEW_BEFORE_EXPIRY_MS;
        let result = w::reserve(&self.as_wallet(), &self.holds, &self.terms, est, request_id, now_ms, hold_ttl_ms);
        match result {
            Ok(hold) if after_renewal || (fresh && (hold.overage_micros == 0 || self.grant.allowance_final)) => {
                self.holds.push(hold.clone());
                Ok(hold)
            }
            Err(refusal) if after_renewal => Err(Shortfall::Refused(self.refusal_in_wallet_terms(refusal))),
            _ => Err(Shortfall::Renew),
        }
    }

    /// The lease's refusal, told in the account's terms (its real balance).
    fn refusal_in_wallet_terms(&self, refusal: Refusal) -> Refusal {
        match refusal {
            Refusal::InsufficientCredits { available_micros, .. } => {
                Refusal::InsufficientCredits { balance_micros: self.balance_micros(), available_micros }
            }
            Refusal::SpendingCap { overage_micros, .. } => {
                Refusal::SpendingCap { cap_micros: self.grant.spending_cap_micros, overage_micros }
            }
        }
    }

    /// Settles a request reserved here, exactly as the object would have
    /// with the lease as its wallet. `None` if it was not reserved here.
    pub fn settle(&mut self, request_id: &str, actual: &Actual) -> Option<Charge> {
        let hold = w::take_hold(&mut self.holds, request_id)?;
        let mut wallet = self.as_wallet();
        let charge = w::settle(&mut wallet, &hold, &self.terms, actual, &self.holds);
        self.spent.add(&charge);
        Some(charge)
    }

    /// Nothing was served: the request's hold goes back to the lease.
    pub fn release(&mut self, request_id: &str) {
        let _ = w::take_hold(&mut self.holds, request_id);
    }

    /// What to ask for at a renewal: what the requests in flight hold, plus
    /// `headroom` requests like `est` when the isolate is busy (none when it
    /// is idle, which shrinks the lease to what is in flight).
    pub fn want(&self, est: Option<&Estimate>, headroom: u64) -> LeaseAmounts {
        let mut want = LeaseAmounts {
            prepaid_micros: self.holds.iter().map(|h| h.prepaid_micros).sum(),
            allowance_tokens: self.holds.iter().map(|h| h.allowance_tokens).sum(),
            overage_micros: self.holds.iter().map(|h| h.overage_micros).sum(),
        };
        if let Some(e) = est {
            let n = headroom.max(1);
            want.prepaid_micros = want.prepaid_micros.saturating_add(e.cost_micros.max(0).saturating_mul(n as i64));
            if let PlanTerms::Metered { overage_output_per_m, .. } = self.terms {
                let worst = e.input_tokens.saturating_add(e.max_output_tokens).saturating_mul(n);
                want.allowance_tokens = want.allowance_tokens.saturating_add(worst);
                // Priced as `reserve` prices a worst case: all at the output rate.
                let over = w::overage_cost(overage_output_per_m, overage_output_per_m, 0, worst);
                want.overage_micros = want.overage_micros.saturating_add(over);
            }
        }
        want
    }

    /// Takes the object's answer to a renewal that reported `reported`.
    pub fn granted(&mut self, grant: Grant, reported: Spent) {
        self.grant = grant;
        self.spent_at_grant = reported;
        self.granted = true;
    }

    /// Nothing is held, nothing in flight and everything reported.
    pub fn is_settled(&self, applied: &Spent) -> bool {
        self.holds.is_empty() && self.grant.amounts == LeaseAmounts::default() && self.spent == *applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn est(cost: i64) -> Estimate {
        Estimate { input_tokens: 10, max_output_tokens: 10, cost_micros: cost }
    }

    fn act(cost: i64) -> Actual {
        Actual { input_tokens: 5, output_tokens: 5, cost_micros: cost }
    }

    fn metered(included: u64) -> PlanTerms {
        PlanTerms::Metered {
            included_tokens: included,
            overage_input_per_m: 1_000_000,
            overage_output_per_m: 2_000_000,
            default_cap_micros: 1_000,
        }
    }

    /// An object and one isolate, wired together.
    struct World {
        state: WalletState,
        holds: Vec<Hold>,
        applied: Spent,
        lease: LocalLease,
    }

    impl World {
        fn new(terms: PlanTerms, balance: i64) -> Self {
            World {
                state: WalletState { balance_micros: balance, ..Default::default() },
                holds: vec![],
                applied: Spent::default(),
                lease: LocalLease::new(terms),
            }
        }

        fn renew(&mut self, want: LeaseAmounts) {
            let reported = self.lease.spent;
            let terms = self.lease.terms;
            let g = renew(&mut self.state, &mut self.holds, &terms, "lease:a", &mut self.applied, &reported, &want, NOW);
            self.lease.granted(g, reported);
        }

        /// Reserve locally, renewing once when the lease says so.
        fn reserve(&mut self, e: &Estimate, id: &str) -> Result<Hold, Shortfall> {
            match self.lease.reserve(e, id, NOW, 60_000, false) {
                Err(Shortfall::Renew) => {
                    let want = self.lease.want(Some(e), HEADROOM_REQUESTS);
                    self.renew(want);
                    self.lease.reserve(e, id, NOW, 60_000, true)
                }
                other => other,
            }
        }
    }

    #[test]
    fn a_fresh_lease_renews_then_serves_locally() {
        let mut world = World::new(PlanTerms::Prepaid, 1_000);
        assert_eq!(world.lease.reserve(&est(10), "r1", NOW, 60_000, false), Err(Shortfall::Renew));
        assert!(world.reserve(&est(10), "r1").is_ok());
        // 32 requests' worth of headroom was granted.
        assert_eq!(world.lease.grant.amounts.prepaid_micros, 320);
        assert_eq!(world.holds.len(), 1, "the lease is one hold at the object");
        let charge = world.lease.settle("r1", &act(7)).expect("settled");
        assert_eq!(charge.prepaid_micros, 7);
        assert_eq!(world.lease.balance_micros(), 993);
    }

    #[test]
    fn never_more_reserved_than_the_balance_and_spending_is_applied_once() {
        let mut world = World::new(PlanTerms::Prepaid, 100);
        let mut ok = 0;
        for i in 0..50 {
            if world.reserve(&est(10), &format!("r{i}")).is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 10, "100 µ$ covers ten worst cases, in flight at once");
        for i in 0..10 {
            world.lease.settle(&format!("r{i}"), &act(4));
        }
        // Idle: shrink to what is in flight (nothing); the report is applied.
        let want = world.lease.want(None, 0);
        world.renew(want);
        assert_eq!(world.state.balance_micros, 60);
        assert!(world.holds.is_empty());
        // The same report again changes nothing.
        let spent = world.lease.spent;
        let g = renew(&mut world.state, &mut world.holds, &PlanTerms::Prepaid, "lease:a", &mut world.applied, &spent, &want, NOW);
        assert_eq!(g.balance_micros, 60);
        assert!(world.lease.is_settled(&world.applied));
    }

    #[test]
    fn a_refusal_reports_the_real_balance() {
        let mut world = World::new(PlanTerms::Prepaid, 25);
        assert!(world.reserve(&est(20), "a").is_ok());
        match world.reserve(&est(20), "b") {
            Err(Shortfall::Refused(Refusal::InsufficientCredits { balance_micros, .. })) => assert_eq!(balance_micros, 25),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn allowance_then_overage_on_the_exact_token_as_at_the_object() {
        // 100 included tokens; each request uses 30 (15 in, 15 out).
        let mut world = World::new(metered(100), 0);
        let mut object = WalletState::default();
        let terms = metered(100);
        for i in 0..5 {
            let id = format!("r{i}");
            let e = Estimate { input_tokens: 15, max_output_tokens: 15, cost_micros: 0 };
            let a = Actual { input_tokens: 15, output_tokens: 15, cost_micros: 0 };
            world.reserve(&e, &id).expect("reserved");
            let local = world.lease.settle(&id, &a).expect("settled");
            let hold = w::reserve(&object, &[], &terms, &e, &id, NOW, 60_000).expect("object reserve");
            let direct = w::settle(&mut object, &hold, &terms, &a, &[]);
            assert_eq!(local, direct, "request {i}");
        }
        world.renew(LeaseAmounts::default());
        assert_eq!(world.state.allowance_used_tokens, 100);
        assert_eq!(world.state.overage_micros, object.overage_micros);
        assert_eq!(world.state.overage_input_tokens + world.state.overage_output_tokens, 50);
    }

    #[test]
    fn a_partial_allowance_lease_renews_instead_of_paying_overage() {
        let mut world = World::new(metered(1_000), 0);
        world.renew(LeaseAmounts { allowance_tokens: 10, ..Default::default() });
        assert!(!world.lease.grant.allowance_final);
        let e = Estimate { input_tokens: 15, max_output_tokens: 15, cost_micros: 0 };
        assert_eq!(world.lease.reserve(&e, "x", NOW, 60_000, false), Err(Shortfall::Renew));
        let hold = world.reserve(&e, "x").expect("renewed");
        assert_eq!(hold.overage_micros, 0);
        assert_eq!(hold.allowance_tokens, 30);
    }

    #[test]
    fn a_lease_near_expiry_renews() {
        let mut world = World::new(PlanTerms::Prepaid, 1_000);
        world.reserve(&est(1), "a").expect("reserved");
        let late = world.lease.grant.expires_ms - RENEW_BEFORE_EXPIRY_MS;
        assert_eq!(world.lease.reserve(&est(1), "b", late, 60_000, false), Err(Shortfall::Renew));
    }

    #[test]
    fn spending_reported_during_a_renewal_is_counted_against_the_new_grant() {
        let mut world = World::new(PlanTerms::Prepaid, 1_000);
        world.reserve(&est(100), "a").expect("a");
        world.reserve(&est(100), "b").expect("b");
        // A renewal is sent with what was spent so far (nothing)…
        let reported = world.lease.spent;
        let want = world.lease.want(None, 0);
        // …and while it is in flight, "a" settles.
        world.lease.settle("a", &act(60));
        let g = renew(&mut world.state, &mut world.holds, &PlanTerms::Prepaid, "lease:a", &mut world.applied, &reported, &want, NOW);
        world.lease.granted(g, reported);
        assert_eq!(world.lease.grant.amounts.prepaid_micros, 200, "both holds were in flight when it was sent");
        world.lease.settle("b", &act(50));
        world.renew(LeaseAmounts::default());
        assert_eq!(world.state.balance_micros, 890);
    }

    /// A small deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn random_sequences_never_overdraw_and_charge_what_was_settled() {
        for seed in 0..200 {
            let mut rng = Lcg(seed);
            let start = 500 + rng.next(5_000) as i64;
            let mut world = World::new(PlanTerms::Prepaid, start);
            let mut open: Vec<String> = vec![];
            let mut charged = 0i64;
            for step in 0..300 {
                match rng.next(4) {
                    0 | 1 => {
                        let id = format!("r{step}");
                        if world.reserve(&est(1 + rng.next(200) as i64), &id).is_ok() {
                            open.push(id);
                        }
                    }
                    2 if !open.is_empty() => {
                        let id = open.remove(rng.next(open.len() as u64) as usize);
                        let c = world.lease.settle(&id, &act(rng.next(250) as i64)).expect("held here");
                        charged += c.prepaid_micros;
                    }
                    _ => {
                        let want = world.lease.want(None, 0);
                        world.renew(want);
                    }
                }
                let held: i64 = world.holds.iter().map(|h| h.prepaid_micros).sum();
                assert!(held <= world.state.balance_micros, "seed {seed}: the lease never holds more than the balance");
            }
            for id in open.drain(..) {
                charged += world.lease.settle(&id, &act(0)).map(|c| c.prepaid_micros).unwrap_or(0);
            }
            world.renew(LeaseAmounts::default());
            assert!(world.state.balance_micros >= 0);
            assert_eq!(world.state.balance_micros, start - charged, "seed {seed}");
        }
    }
}
