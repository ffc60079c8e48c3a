//! Every route the Worker answers, in one table.
//!
//! The Worker's router maps each [`RouteId`] to its handler with an exhaustive
//! `match`, so a route cannot exist without a handler; the OpenAPI test below
//! checks that the published document names every route here.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteId {
    Health,
    OpenApi,
    Register,
    Login,
    Refresh,
    Logout,
    TokenFromKey,
    PhoneSendCode,
    PhoneVerifyCode,
    PhoneRefresh,
    PhoneLogout,
    Me,
    ApiKeysList,
    ApiKeysCreate,
    ApiKeysRevoke,
    ApiKeysRotate,
    DextoKeysList,
    DextoKeysCreate,
    DextoKeysDelete,
    DextoKeysValidate,
    Provision,
    KeysProvision,
    KeysRotate,
    KeysValidate,
    KeysList,
    DeviceStart,
    DevicePoll,
    DeviceApprove,
    DeviceDeny,
    ChatCompletions,
    AiChat,
    Completions,
    Embeddings,
    Messages,
    Models,
    MeUsage,
    BillingBalance,
    AdminUsage,
    StripeCheckoutPack,
    BillingCheckout,
    BillingSubscribe,
    BillingPortal,
    BillingSubscription,
    StripeWebhook,
    AdminBootstrap,
    AdminListUsers,
    AdminCreateAccount,
    AdminGetAccount,
    AdminSuspendAccount,
    AdminReactivateAccount,
    AdminCreditAccount,
    AdminListJobs,
    AdminEnqueueJob,
    AdminGetJob,
}

/// Who may call a route; checked by the Worker before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (the handler may read its own, e.g. a refresh token).
    Public,
    /// The one-time operator bootstrap secret.
    BootstrapToken,
    /// An active API key.
    ApiKey,
    /// A signed-in session's access token (JWT), not an API key.
    Session,
    /// A session token or an API key.
    User,
    /// A session or key of a user with the global operator role.
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub id: RouteId,
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn r(method: &'static str, path: &'static str, id: RouteId, access: Access) -> Route {
    Route { id, method, path, access }
}

use Access::*;
use RouteId::*;

pub const ROUTES: &[Route] = &[
    r("GET", "/health", Health, Public),
    r("GET", "/openapi.json", OpenApi, Public),
    // Sign-in, e-mail and password (Dex).
    r("POST", "/v1/auth/register", Register, Public),
    r("POST", "/v1/auth/login", Login, Public),
    r("POST", "/v1/auth/refresh", Refresh, Public),
    r("POST", "/v1/auth/logout", Logout, Public),
    r("POST", "/v1/auth/token", TokenFromKey, ApiKey),
    // Sign-in by phone (Karen tenants).
    r("POST", "/auth/send-code", PhoneSendCode, Public),
    r("POST", "/auth/verify-code", PhoneVerifyCode, Public),
    r("POST", "/auth/refresh", PhoneRefresh, Public),
    r("POST", "/auth/logout", PhoneLogout, Public),
    r("GET", "/v1/me", Me, User),
    // API keys (Dex).
    r("GET", "/v1/api-keys", ApiKeysList, Session),
    r("POST", "/v1/api-keys", ApiKeysCreate, Session),
    r("DELETE", "/v1/api-keys/:id", ApiKeysRevoke, Session),
    r("POST", "/v1/api-keys/:id/rotate", ApiKeysRotate, Session),
    // API keys (Dexto CLI, both its January 2026 and current forms).
    r("GET", "/api/keys", DextoKeysList, Session),
    r("POST", "/api/keys", DextoKeysCreate, Session),
    r("DELETE", "/api/keys/:id", DextoKeysDelete, Session),
    r("GET", "/api/keys/validate", DextoKeysValidate, Public),
    r("POST", "/api/provision", Provision, Session),
    r("POST", "/keys/provision", KeysProvision, Session),
    r("POST", "/keys/rotate", KeysRotate, ApiKey),
    r("GET", "/keys/validate", KeysValidate, Public),
    r("GET", "/keys/list", KeysList, User),
    r("POST", "/api/auth/device/start", DeviceStart, Public),
    r("POST", "/api/auth/device/poll", DevicePoll, Public),
    r("POST", "/api/auth/device/approve", DeviceApprove, Session),
    r("POST", "/api/auth/device/deny", DeviceDeny, Session),
    // The AI proxy.
    r("POST", "/v1/chat/completions", ChatCompletions, ApiKey),
    r("POST", "/v1/ai/chat", AiChat, ApiKey),
    r("POST", "/v1/completions", Completions, ApiKey),
    r("POST", "/v1/embeddings", Embeddings, ApiKey),
    r("POST", "/v1/messages", Messages, ApiKey),
    r("GET", "/v1/models", Models, Public),
    // Usage and balance.
    r("GET", "/me/usage", MeUsage, User),
    r("GET", "/api/account/usage", MeUsage, User),
    r("GET", "/v1/usage", MeUsage, User),
    r("GET", "/v1/billing/usage", MeUsage, User),
    r("GET", "/api/billing/balance", BillingBalance, User),
    // Payments (Stripe).
    r("POST", "/api/stripe/create-checkout-session", StripeCheckoutPack, User),
    r("POST", "/api/billing/checkout-session", BillingCheckout, User),
    r("POST", "/v1/billing/subscribe", BillingSubscribe, User),
    r("POST", "/v1/billing/portal", BillingPortal, User),
    r("GET", "/v1/billing/subscription", BillingSubscription, User),
    r("POST", "/webhooks/stripe", StripeWebhook, Public),
    // Operators.
    r("POST", "/v1/admin/bootstrap", AdminBootstrap, BootstrapToken),
    r("GET", "/v1/admin/users", AdminListUsers, Operator),
    r("GET", "/v1/admin/usage", AdminUsage, Operator),
    r("POST", "/v1/admin/accounts", AdminCreateAccount, Operator),
    r("GET", "/v1/admin/accounts/:id", AdminGetAccount, Operator),
    r("POST", "/v1/admin/accounts/:id/suspend", AdminSuspendAccount, Operator),
    r("POST", "/v1/admin/accounts/:id/reactivate", AdminReactivateAccount, Operator),
    r("POST", "/v1/admin/accounts/:id/credits", AdminCreditAccount, Operator),
    r("GET", "/v1/admin/jobs", AdminListJobs, Operator),
    r("POST", "/v1/admin/jobs", AdminEnqueueJob, Operator),
    r("GET", "/v1/admin/jobs/:id", AdminGetJob, Operator),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    Found(&'static Route, Params),
    /// The path exists but not for this method; the allowed methods.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

fn match_path(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(Params(params)),
            (Some(p), Some(g)) => {
                if let Some(name) = p.strip_prefix(':') {
                    if g.is_empty() {
                        return None;
                    }
                    params.push((name, g.to_string()));
                } else if p != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Finds the route for a request. `HEAD` is answered by `GET` routes.
pub fn match_route(method: &str, path: &str) -> RouteMatch {
    // A trailing slash names the same resource.
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let lookup = if method == "HEAD" { "GET" } else { method };
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_path(route.path, path) {
            if route.method == lookup {
                return RouteMatch::Found(route, params);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        allowed.dedup();
        RouteMatch::MethodNotAllowed(allowed)
    }
}

/// `/v1/admin/accounts/:id` → `/v1/admin/accounts/{id}` (OpenAPI's template form).
pub fn openapi_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_static_and_param_routes() {
        match match_route("GET", "/v1/admin/accounts/acct_1") {
            RouteMatch::Found(r, p) => {
                assert_eq!(r.id, AdminGetAccount);
                assert_eq!(p.get("id"), Some("acct_1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(match_route("GET", "/health/"), RouteMatch::Found(r, _) if r.id == Health));
        assert!(matches!(match_route("HEAD", "/health"), RouteMatch::Found(r, _) if r.id == Health));
    }

    #[test]
    fn wrong_method_lists_allowed() {
        assert_eq!(match_route("DELETE", "/health"), RouteMatch::MethodNotAllowed(vec!["GET"]));
        assert_eq!(match_route("PUT", "/v1/admin/jobs"), RouteMatch::MethodNotAllowed(vec!["GET", "POST"]));
    }

    #[test]
    fn unknown_and_empty_params_are_not_found() {
        assert_eq!(match_route("GET", "/nope"), RouteMatch::NotFound);
        assert_eq!(match_route("GET", "/v1/admin/accounts//credits"), RouteMatch::NotFound);
        assert_eq!(match_route("GET", "/v1/admin/accounts/a/b"), RouteMatch::NotFound);
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {} twice", a.method, a.path);
            }
        }
    }

    #[test]
    fn openapi_path_form() {
        assert_eq!(openapi_path("/v1/admin/accounts/:id/credits"), "/v1/admin/accounts/{id}/credits");
    }
}
