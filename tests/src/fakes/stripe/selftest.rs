//! Self-tests of the Stripe fake: a real fakes server on a free port, driven
//! over HTTP, and a tiny webhook receiver that checks Stripe signatures
//! itself (HMAC-SHA256 over `"{t}.{body}"`, not through the fake's code).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::fakes::client::{self, DeliveryReport, MeterEvents, ScriptSpec, StripeEvents};
use crate::fakes::{spawn, FakesConfig, RunningFakes};

const KEY: &str = "sk_test_local_fake";
const SECRET: &str = "whsec_selftest_0123456789abcdef";

async fn start() -> RunningFakes {
    spawn(FakesConfig { log_requests: false }).await.expect("start fakes")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

/// `POST /stripe{path}` with a raw form body and optional idempotency key.
async fn post_form(fakes: &RunningFakes, path: &str, form: &str, idempotency_key: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .post(fakes.url(&format!("/stripe{path}")))
        .bearer_auth(KEY)
        .header("stripe-version", client::stripe::API_VERSION)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.expect("send")
}

async fn post_json(fakes: &RunningFakes, path: &str, form: &str) -> (u16, Value) {
    let resp = post_form(fakes, path, form, None).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn get_json(fakes: &RunningFakes, path: &str) -> (u16, Value) {
    let resp = http().get(fakes.url(&format!("/stripe{path}"))).bearer_auth(KEY).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn control_post(url: impl Into<String>, body: Value) -> (u16, Value) {
    let resp = http().post(url.into()).json(&body).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn assert_error(body: &Value, kind: &str) {
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

const PAYMENT_FORM: &str = "mode=payment&client_reference_id=acct_1\
    &success_url=https%3A%2F%2Fapp.example%2Fok%3Fsession_id%3D%7BCHECKOUT_SESSION_ID%7D&cancel_url=https%3A%2F%2Fapp.example%2Fno\
    &line_items%5B0%5D%5Bquantity%5D=1&line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd\
    &line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=500&line_items%5B0%5D%5Bprice_data%5D%5Bproduct_data%5D%5Bname%5D=Credits\
    &line_items[1][quantity]=2&line_items[1][price_data][currency]=usd&line_items[1][price_data][unit_amount]=250\
    &line_items[1][price_data][product_data][name]=More&metadata[account_id]=acct_1&metadata[kind]=credit_pack";

fn subscription_form(customer: &str) -> String {
    format!(
        "mode=subscription&customer={customer}&client_reference_id=acct_2&success_url=https://app.example/ok\
         &line_items[0][quantity]=1&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=25000\
         &line_items[0][price_data][recurring][interval]=month&line_items[0][price_data][product_data][name]=Dex+pro\
         &metadata[account_id]=acct_2&metadata[plan]=pro&subscription_data[metadata][account_id]=acct_2\
         &subscription_data[metadata][plan]=pro"
    )
}

// ---------------------------------------------------------------- receiver

/// One request the receiver got, and what its own verification found.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
    verdict: Result<(), &'static str>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Verifies a `Stripe-Signature` as Stripe documents it: `t` and `v1` from
/// the header, HMAC-SHA256 keyed with the whole secret over `"{t}.{body}"`,
/// and `t` within 300 s of now.
fn verify(header: Option<&str>, body: &[u8]) -> Result<(), &'static str> {
    let header = header.ok_or("missing header")?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| "bad t")?),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => {}
        }
    }
    let t = t.ok_or("no t")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).map_err(|_| "key")?;
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    if !v1.contains(&expected) {
        return Err("mismatch");
    }
    let now = i64::try_from(crate::fakes::now_secs()).expect("now");
    if (now - t).abs() > 300 {
        return Err("stale");
    }
    Ok(())
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> Response {
    let verdict = verify(headers.get("stripe-signature").and_then(|v| v.to_str().ok()), &body);
    inbox.lock().expect("inbox").push(Received { headers, body: String::from_utf8_lossy(&body).into_owned(), verdict });
    match verdict {
        Ok(()) => Json(json!({"received": true})).into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, Json(json!({"error": reason}))).into_response(),
    }
}

/// A webhook endpoint on a free port: its URL and what it received.
async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = Router::new().route("/webhooks/stripe", axum::routing::post(receive)).with_state(inbox.clone());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/webhooks/stripe"), inbox)
}

fn statuses(report: &DeliveryReport) -> Vec<Option<u16>> {
    report.deliveries.iter().map(|d| d.status).collect()
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn auth_unknown_urls_and_customers() {
    let fakes = start().await;
    let url = fakes.url("/stripe/v1/customers");
    let resp = http().post(&url).body("email=a%40b.co").send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Basic realm=\"Stripe\""));
    let v: Value = resp.json().await.expect("json");
    assert_error(&v, "invalid_request_error");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.starts_with("You did not provide an API key.")), "{v}");
    let resp = http().post(&url).bearer_auth("pk_test_1234").body("").send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["message"], "Invalid API Key provided: pk_****1234");
    // `curl -u sk_test_…:` works as well as Bearer.
    let resp = http().post(&url).basic_auth(KEY, Some("")).body("").send().await.expect("send");
    assert_eq!(resp.status(), 200);

    let (status, v) = get_json(&fakes, "/v1/xyz").await;
    assert_eq!(status, 404);
    assert_error(&v, "invalid_request_error");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.starts_with("Unrecognized request URL (GET: /v1/xyz).")), "{v}");
    assert!(v["error"]["request_log_url"].as_str().is_some_and(|u| u.contains("req_fake_")), "{v}");
    let (status, v) = post_json(&fakes, "/v1/checkout/sessions/cs_1", "").await;
    assert_eq!(status, 404);
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.starts_with("Unrecognized request URL (POST: /v1/checkout/sessions/cs_1)")));

    let resp = post_form(&fakes, "/v1/customers", "email=jane%40example.com&name=Jane+Doe&metadata[account_id]=acct_1", None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("request-id").and_then(|v| v.to_str().ok()).is_some_and(|r| r.starts_with("req_fake_")));
    assert_eq!(resp.headers().get("stripe-version").and_then(|v| v.to_str().ok()), Some(client::stripe::API_VERSION));
    let customer: Value = resp.json().await.expect("json");
    let id = customer["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("cus_fake_"), "{id}");
    assert_eq!(customer["object"], "customer");
    assert_eq!(customer["email"], "jane@example.com");
    assert_eq!(customer["name"], "Jane Doe");
    assert_eq!(customer["metadata"], json!({"account_id": "acct_1"}));
    assert_eq!(customer["livemode"], false);
    assert_eq!(get_json(&fakes, &format!("/v1/customers/{id}")).await, (200, customer));

    let (status, v) = get_json(&fakes, "/v1/customers/cus_nope").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "resource_missing");
    assert_eq!(v["error"]["message"], "No such customer: 'cus_nope'");
    let (status, v) = post_json(&fakes, "/v1/customers", "emial=typo%40x.io").await;
    assert_eq!(status, 400);
    assert_eq!((v["error"]["code"].as_str(), v["error"]["param"].as_str()), (Some("parameter_unknown"), Some("emial")));
    assert_eq!(v["error"]["message"], "Received unknown parameter: emial");
    let (status, v) = post_json(&fakes, "/v1/customers", "metadata=x&metadata[a]=b").await;
    assert_eq!((status, v["error"]["message"].as_str()), (400, Some("Invalid hash")));

    // A reset forgets customers.
    assert_eq!(http().post(client::reset_url(&fakes.url)).send().await.expect("reset").status(), 200);
    assert_eq!(get_json(&fakes, &format!("/v1/customers/{id}")).await.0, 404);
}

#[tokio::test]
async fn checkout_session_create_retrieve_expire() {
    let fakes = start().await;
    let (status, s) = post_json(&fakes, "/v1/checkout/sessions", PAYMENT_FORM).await;
    assert_eq!(status, 200, "{s}");
    let id = s["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("cs_test_"), "{id}");
    assert_eq!(s["object"], "checkout.session");
    assert_eq!(s["url"], format!("https://checkout.stripe.com/c/pay/{id}"));
    assert_eq!((s["mode"].as_str(), s["status"].as_str(), s["payment_status"].as_str()), (Some("payment"), Some("open"), Some("unpaid")));
    assert_eq!(s["amount_total"], 1000);
    assert_eq!(s["amount_subtotal"], 1000);
    assert_eq!(s["currency"], "usd");
    assert_eq!(s["customer"], Value::Null);
    assert_eq!(s["subscription"], Value::Null);
    assert_eq!(s["client_reference_id"], "acct_1");
    assert_eq!(s["metadata"], json!({"account_id": "acct_1", "kind": "credit_pack"}));
    assert_eq!(s["success_url"], "https://app.example/ok?session_id={CHECKOUT_SESSION_ID}");
    assert_eq!(s["livemode"], false);
    assert_eq!(s["expires_at"].as_i64().expect("expires_at") - s["created"].as_i64().expect("created"), 86_400);
    assert!(s.get("line_items").is_none(), "line items only when expanded");

    assert_eq!(get_json(&fakes, &format!("/v1/checkout/sessions/{id}")).await, (200, s.clone()));
    let (status, expanded) = get_json(&fakes, &format!("/v1/checkout/sessions/{id}?expand[]=line_items")).await;
    assert_eq!(status, 200);
    let lines = expanded["line_items"]["data"].as_array().expect("lines");
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[1]["quantity"].as_i64(), lines[1]["amount_total"].as_i64()), (Some(2), Some(500)));
    assert_eq!(lines[0]["price"]["unit_amount"], 500);
    assert_eq!(lines[0]["price"]["type"], "one_time");
    assert_eq!(lines[0]["description"], "Credits");
    let (_, list) = get_json(&fakes, &format!("/v1/checkout/sessions/{id}/line_items")).await;
    assert_eq!(list["data"], expanded["line_items"]["data"]);
    let (status, v) = get_json(&fakes, &format!("/v1/checkout/sessions/{id}?expand[]=nope")).await;
    assert_eq!((status, v["error"]["message"].as_str()), (400, Some("This property cannot be expanded (nope).")));

    let (status, e) = post_json(&fakes, &format!("/v1/checkout/sessions/{id}/expire"), "").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!((e["status"].as_str(), e["url"].clone()), (Some("expired"), Value::Null));
    let (status, v) = post_json(&fakes, &format!("/v1/checkout/sessions/{id}/expire"), "").await;
    assert_eq!(status, 400);
    assert_error(&v, "invalid_request_error");
    let (status, v) = get_json(&fakes, "/v1/checkout/sessions/cs_test_nope").await;
    assert_eq!((status, v["error"]["message"].as_str()), (404, Some("No such checkout.session: 'cs_test_nope'")));
    // Completing an expired session is refused by the control plane.
    let (status, _) = control_post(&client::stripe_complete_checkout_url(&fakes.url, &id), json!({})).await;
    assert_eq!(status, 409);

    // What Stripe checks.
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("line_items[0][quantity]=1", "Missing required param: mode.", Some("mode")),
        ("mode=payment", "`line_items` is required in `payment` mode.", Some("line_items")),
        (
            "mode=payment&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=5\
             &line_items[0][price_data][product_data][name]=x",
            "Missing required param: line_items[0][quantity].",
            Some("line_items[0][quantity]"),
        ),
        (
            "mode=subscription&line_items[0][quantity]=1&line_items[0][price_data][currency]=usd\
             &line_items[0][price_data][unit_amount]=5&line_items[0][price_data][product_data][name]=x",
            "You must provide at least one recurring price in `subscription` mode when using prices.",
            Some("line_items"),
        ),
        (
            "mode=payment&customer=cus_1&customer_email=a%40b.co&line_items[0][quantity]=1&line_items[0][price]=price_1",
            "You may only specify one of these parameters: customer, customer_email.",
            Some("customer_email"),
        ),
        (
            "mode=payment&line_items[0][quantity]=1&line_items[0][price]=price_1&success_url=not-a-url",
            "Not a valid URL",
            Some("success_url"),
        ),
        (
            "mode=payment&line_items[0][quantity]=1&line_items[0][price]=price_1&line_items[0][prcie]=x",
            "Received unknown parameter: line_items[0][prcie]",
            Some("line_items[0][prcie]"),
        ),
    ];
    for (form, message, param) in cases {
        let (status, v) = post_json(&fakes, "/v1/checkout/sessions", form).await;
        assert_eq!(status, 400, "{form}: {v}");
        assert_error(&v, "invalid_request_error");
        assert_eq!(v["error"]["message"], message, "{form}");
        assert_eq!(v["error"]["param"].as_str(), param, "{form}");
    }
    let (status, v) =
        post_json(&fakes, "/v1/checkout/sessions", "mode=payment&customer=nope&line_items[0][quantity]=1&line_items[0][price]=p").await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("resource_missing")));
}

#[tokio::test]
async fn idempotency_key_replays_and_conflicts() {
    let fakes = start().await;
    let first = post_form(&fakes, "/v1/checkout/sessions", PAYMENT_FORM, Some("key-1")).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_request = first.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let first: Value = first.json().await.expect("json");
    let again = post_form(&fakes, "/v1/checkout/sessions", PAYMENT_FORM, Some("key-1")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(again.headers().get("original-request").and_then(|v| v.to_str().ok()).map(str::to_owned), first_request);
    assert_eq!(again.json::<Value>().await.expect("json"), first, "the stored first answer");
    // Only one session was made: a new key makes the second.
    let other: Value = post_form(&fakes, "/v1/checkout/sessions", PAYMENT_FORM, Some("key-2")).await.json().await.expect("json");
    assert_ne!(other["id"], first["id"]);

    // Same key, other parameters.
    let changed = PAYMENT_FORM.replace("unit_amount%5D=500", "unit_amount%5D=501");
    let resp = post_form(&fakes, "/v1/checkout/sessions", &changed, Some("key-1")).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_error(&v, "idempotency_error");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("same parameters") && m.contains("'key-1'")), "{v}");
    // Same parameters in another order are the same parameters.
    let reordered = PAYMENT_FORM.split('&').rev().collect::<Vec<_>>().join("&");
    assert_eq!(post_form(&fakes, "/v1/checkout/sessions", &reordered, Some("key-1")).await.status(), 200);
    // Same key, other endpoint.
    let resp = post_form(&fakes, "/v1/customers", "email=a%40b.co", Some("key-1")).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_error(&v, "idempotency_error");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("'/v1/checkout/sessions' vs '/v1/customers'")), "{v}");

    // A failed request keeps nothing: the key is still free afterwards.
    assert_eq!(post_form(&fakes, "/v1/customers", "bogus=1", Some("key-3")).await.status(), 400);
    let resp = post_form(&fakes, "/v1/customers", "email=c%40d.co", Some("key-3")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn meter_events_duplicates_and_scripted_failure() {
    let fakes = start().await;
    let now = crate::fakes::now_secs();
    let form =
        format!("event_name=dex_overage_input_tokens&payload[stripe_customer_id]=cus_1&payload[value]=25&identifier=id_1&timestamp={now}");
    let (status, v) = post_json(&fakes, "/v1/billing/meter_events", &form).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "billing.meter_event");
    assert_eq!(v["event_name"], "dex_overage_input_tokens");
    assert_eq!(v["identifier"], "id_1");
    assert_eq!(v["payload"], json!({"stripe_customer_id": "cus_1", "value": "25"}));
    assert_eq!(v["timestamp"], now);
    assert_eq!(v["livemode"], false);
    assert!(v["created"].is_i64());

    // The same identifier again, even with another value: refused, as Stripe does.
    let resp = post_form(&fakes, "/v1/billing/meter_events", &form.replace("value]=25", "value]=30"), None).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers().get("stripe-should-retry").and_then(|v| v.to_str().ok()), Some("false"));
    let v: Value = resp.json().await.expect("json");
    assert_error(&v, "invalid_request_error");
    assert_eq!(v["error"]["message"], "An event already exists with identifier id_1.");

    // Without identifier, one is made; stale timestamps are refused.
    let (status, v) =
        post_json(&fakes, "/v1/billing/meter_events", "event_name=e&payload[stripe_customer_id]=cus_1&payload[value]=1").await;
    assert_eq!(status, 200);
    assert!(v["identifier"].as_str().is_some_and(|i| !i.is_empty()));
    let stale = format!("event_name=e&payload[value]=1&timestamp={}", now - 36 * 86_400);
    let (status, v) = post_json(&fakes, "/v1/billing/meter_events", &stale).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("timestamp")));
    let (status, v) = post_json(&fakes, "/v1/billing/meter_events", "payload[value]=1").await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("parameter_missing")));

    // A scripted 500 answers Stripe's error shape and records nothing.
    let spec = ScriptSpec::new("stripe", "/v1/billing/meter_events").status(500);
    assert_eq!(http().post(client::script_url(&fakes.url)).json(&spec.to_json()).send().await.expect("script").status(), 200);
    let resp = post_form(&fakes, "/v1/billing/meter_events", &form.replace("id_1", "id_2"), None).await;
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("request-id").is_some());
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({"error": {"type": "api_error", "message": "Internal Server Error"}}));
    assert_eq!(post_json(&fakes, "/v1/billing/meter_events", &form.replace("id_1", "id_2")).await.0, 200);

    let events: MeterEvents =
        http().get(client::stripe_meter_events_url(&fakes.url)).send().await.expect("send").json().await.expect("json");
    let ids: Vec<&str> = events.events.iter().filter_map(|e| e["identifier"].as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!((ids[0], ids[2]), ("id_1", "id_2"));
    assert_eq!(events.events[0]["payload"]["value"], "25", "the first one, stored once");
}

#[tokio::test]
async fn billing_portal_session() {
    let fakes = start().await;
    let customer: Value = post_form(&fakes, "/v1/customers", "email=p%40q.io", None).await.json().await.expect("json");
    let id = customer["id"].as_str().expect("id");
    let form = format!("customer={id}&return_url=https%3A%2F%2Fapp.example%2Fbilling");
    let (status, v) = post_json(&fakes, "/v1/billing_portal/sessions", &form).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].as_str().is_some_and(|i| i.starts_with("bps_")));
    assert_eq!(v["object"], "billing_portal.session");
    assert_eq!(v["customer"], id);
    assert_eq!(v["return_url"], "https://app.example/billing");
    let n = v["id"].as_str().expect("id").trim_start_matches("bps_");
    assert_eq!(v["url"], format!("https://billing.stripe.com/p/session/test_{n}"));
    let (status, v) = post_json(&fakes, "/v1/billing_portal/sessions", "return_url=https://x.io").await;
    assert_eq!((status, v["error"]["message"].as_str()), (400, Some("Missing required param: customer.")));
    let (status, v) = post_json(&fakes, "/v1/billing_portal/sessions", "customer=acct_1").await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("resource_missing")));
    // A `cus_` id the fakes forgot (a restart) is adopted.
    assert_eq!(post_json(&fakes, "/v1/billing_portal/sessions", "customer=cus_from_before").await.0, 200);
    assert_eq!(get_json(&fakes, "/v1/customers/cus_from_before").await.0, 200);
}

#[tokio::test]
async fn completing_a_subscription_session_delivers_signed_events() {
    let fakes = start().await;
    let (webhook_url, inbox) = receiver().await;
    let customer: Value = post_form(&fakes, "/v1/customers", "email=sub%40example.com&name=Sub", None).await.json().await.expect("json");
    let customer_id = customer["id"].as_str().expect("id").to_owned();
    let (status, s) = post_json(&fakes, "/v1/checkout/sessions", &subscription_form(&customer_id)).await;
    assert_eq!(status, 200, "{s}");
    let session_id = s["id"].as_str().expect("id").to_owned();
    assert_eq!(s["amount_total"], 25_000);

    let body = json!({"webhook_url": webhook_url, "secret": SECRET, "deliveries": 5, "concurrent": true});
    let (status, report) = control_post(&client::stripe_complete_checkout_url(&fakes.url, &session_id), body).await;
    assert_eq!(status, 200, "{report}");
    let report: DeliveryReport = serde_json::from_value(report).expect("report");
    assert_eq!(report.events.len(), 2);
    assert_eq!(statuses(&report), vec![Some(200); 10], "{:?}", report.deliveries);
    assert_eq!(report.deliveries.iter().filter(|d| d.event_id == report.events[0]).count(), 5);

    // The receiver verified every one itself, and got the events N times each.
    let received = inbox.lock().expect("inbox").clone();
    assert_eq!(received.len(), 10);
    assert!(received.iter().all(|r| r.verdict.is_ok()));
    for r in &received {
        assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json; charset=utf-8"));
        assert_eq!(r.headers.get("user-agent").and_then(|v| v.to_str().ok()), Some("Stripe/1.0 (+https://stripe.com/docs/webhooks)"));
        let sig = r.headers.get("stripe-signature").and_then(|v| v.to_str().ok()).expect("signature");
        assert!(sig.starts_with("t=") && sig.contains(",v1="), "{sig}");
    }
    let events: Vec<Value> = received.iter().map(|r| serde_json::from_str(&r.body).expect("json body")).collect();
    let completed = events.iter().find(|e| e["type"] == "checkout.session.completed").expect("completed").clone();
    assert_eq!(events.iter().filter(|e| e["id"] == completed["id"]).count(), 5);
    assert!(completed["id"].as_str().is_some_and(|i| i.starts_with("evt_")));
    assert_eq!(completed["object"], "event");
    assert_eq!(completed["api_version"], client::stripe::API_VERSION);
    assert_eq!(completed["livemode"], false);
    assert_eq!(completed["pending_webhooks"], 1);
    assert_eq!(completed["request"], json!({"id": null, "idempotency_key": null}));
    let session = &completed["data"]["object"];
    assert_eq!((session["status"].as_str(), session["payment_status"].as_str()), (Some("complete"), Some("paid")));
    assert_eq!(session["customer"], customer_id.as_str());
    assert_eq!(session["customer_details"]["email"], "sub@example.com");
    assert_eq!(session["metadata"]["plan"], "pro");
    assert_eq!(session["url"], Value::Null);
    let sub_id = session["subscription"].as_str().expect("subscription id").to_owned();
    assert!(sub_id.starts_with("sub_fake_"), "{sub_id}");

    let created = events.iter().find(|e| e["type"] == "customer.subscription.created").expect("created");
    let sub = &created["data"]["object"];
    assert_eq!(sub["id"], sub_id.as_str());
    assert_eq!(sub["object"], "subscription");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["customer"], customer_id.as_str());
    assert_eq!(sub["metadata"], json!({"account_id": "acct_2", "plan": "pro"}));
    let item = &sub["items"]["data"][0];
    assert_eq!(item["price"]["lookup_key"], "pro");
    assert_eq!(item["price"]["recurring"]["interval"], "month");
    assert_eq!(item["price"]["unit_amount"], 25_000);
    let start = sub["current_period_start"].as_i64().expect("start");
    assert_eq!(sub["current_period_end"].as_i64(), Some(start + 30 * 86_400));
    assert_eq!((item["current_period_start"].as_i64(), item["current_period_end"].as_i64()), (Some(start), Some(start + 30 * 86_400)));

    // The API and the control plane agree with the events.
    let (status, api_sub) = get_json(&fakes, &format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!((status, &api_sub), (200, sub));
    let stored: Value =
        http().get(client::stripe_subscription_url(&fakes.url, &sub_id)).send().await.expect("send").json().await.expect("json");
    assert_eq!(&stored, sub);
    let (_, api_session) = get_json(&fakes, &format!("/v1/checkout/sessions/{session_id}?expand[]=subscription")).await;
    assert_eq!(api_session["status"], "complete");
    assert_eq!(api_session["subscription"]["id"], sub_id.as_str());
    let (status, event) = get_json(&fakes, &format!("/v1/events/{}", report.events[0])).await;
    assert_eq!((status, event["type"].as_str()), (200, Some("checkout.session.completed")));
    let all: StripeEvents = http().get(client::stripe_events_url(&fakes.url)).send().await.expect("send").json().await.expect("json");
    assert_eq!(all.events.len(), 2);

    // Once complete, a session cannot be completed again.
    let (status, _) = control_post(&client::stripe_complete_checkout_url(&fakes.url, &session_id), json!({})).await;
    assert_eq!(status, 409);
    let (status, _) = control_post(&client::stripe_complete_checkout_url(&fakes.url, "cs_test_nope"), json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn completing_a_payment_session_in_order() {
    let fakes = start().await;
    let (webhook_url, inbox) = receiver().await;
    let (_, s) = post_json(&fakes, "/v1/checkout/sessions", &format!("{PAYMENT_FORM}&customer_email=buyer%40example.com")).await;
    let id = s["id"].as_str().expect("id");
    let body = json!({"webhook_url": webhook_url, "secret": SECRET, "deliveries": 3});
    let (status, report) = control_post(&client::stripe_complete_checkout_url(&fakes.url, id), body).await;
    assert_eq!(status, 200, "{report}");
    let report: DeliveryReport = serde_json::from_value(report).expect("report");
    assert_eq!(report.events.len(), 1, "payment mode: checkout.session.completed only");
    assert_eq!(report.deliveries.iter().map(|d| d.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(statuses(&report), vec![Some(200); 3]);
    let session = report.session.expect("session");
    assert_eq!((session["status"].as_str(), session["payment_status"].as_str()), (Some("complete"), Some("paid")));
    assert!(session["payment_intent"].as_str().is_some_and(|p| p.starts_with("pi_")));
    assert_eq!(session["customer"], Value::Null, "no customer made in payment mode");
    assert_eq!(session["customer_details"]["email"], "buyer@example.com");
    assert!(report.subscription.is_none());
    assert_eq!(inbox.lock().expect("inbox").len(), 3);

    // Without a webhook_url nothing is delivered; bad control bodies are 400.
    let (_, s) = post_json(&fakes, "/v1/checkout/sessions", PAYMENT_FORM).await;
    let url = client::stripe_complete_checkout_url(&fakes.url, s["id"].as_str().expect("id"));
    assert_eq!(control_post(&url, json!({"webhook_url": "http://127.0.0.1:1/x"})).await.0, 400, "secret required");
    assert_eq!(control_post(&url, json!({"delivery": 2})).await.0, 400, "unknown field");
    let (status, report) = control_post(&url, json!({})).await;
    assert_eq!((status, report["deliveries"].clone()), (200, json!([])));
}

#[tokio::test]
async fn sent_events_and_bad_signatures() {
    let fakes = start().await;
    let (webhook_url, inbox) = receiver().await;
    let object = json!({"id": "sub_sent_1", "object": "subscription", "customer": "cus_1", "status": "past_due",
                        "items": {"object": "list", "data": []}, "metadata": {"plan": "pro"}});
    let send = |extra: Value| {
        let mut body = json!({"webhook_url": webhook_url, "secret": SECRET, "type": "customer.subscription.updated", "object": object});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        control_post(client::stripe_send_event_url(&fakes.url), body)
    };

    let (status, report) = send(json!({"id": "evt_custom_1", "created": 1_700_000_000, "previous_attributes": {"status": "active"}})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["events"], json!(["evt_custom_1"]));
    assert_eq!(report["deliveries"][0]["status"], 200);
    let event: Value = serde_json::from_str(&inbox.lock().expect("inbox")[0].body).expect("json");
    assert_eq!(event["id"], "evt_custom_1");
    assert_eq!(event["created"], 1_700_000_000);
    assert_eq!(event["type"], "customer.subscription.updated");
    assert_eq!(event["data"]["object"], object);
    assert_eq!(event["data"]["previous_attributes"], json!({"status": "active"}));
    // The subscription sent is what the API now answers.
    assert_eq!(get_json(&fakes, "/v1/subscriptions/sub_sent_1").await, (200, object.clone()));

    for (bad, reason) in [
        (json!({"tamper": true}), "mismatch"),
        (json!({"wrong_secret": true}), "mismatch"),
        (json!({"timestamp_offset_secs": -301}), "stale"),
        (json!({"timestamp_offset_secs": 400}), "stale"),
    ] {
        inbox.lock().expect("inbox").clear();
        let (status, report) = send(bad.clone()).await;
        assert_eq!(status, 200, "{bad}: {report}");
        assert_eq!(report["deliveries"][0]["status"], 400, "{bad}: {report}");
        let got = inbox.lock().expect("inbox")[0].clone();
        assert_eq!(got.verdict, Err(reason), "{bad}");
        if bad["tamper"] == true {
            let tampered: Value = serde_json::from_str(&got.body).expect("still JSON");
            assert_eq!(tampered["livemode"], true, "the body was altered after signing");
        }
    }

    // Concurrent deliveries of one event all arrive.
    inbox.lock().expect("inbox").clear();
    let (_, report) = send(json!({"deliveries": 4, "concurrent": true})).await;
    assert_eq!(report["deliveries"].as_array().map(Vec::len), Some(4));
    assert_eq!(inbox.lock().expect("inbox").len(), 4);
    // An unreachable endpoint is reported, not an error of the control call.
    let body = json!({
        "webhook_url": "http://127.0.0.1:1/hook", "secret": SECRET, "type": "invoice.paid",
        "object": {"id": "in_1", "object": "invoice"},
    });
    let (status, report) = control_post(&client::stripe_send_event_url(&fakes.url), body).await;
    assert_eq!((status, report["deliveries"][0]["status"].clone()), (200, Value::Null));
    assert!(report["deliveries"][0]["error"].is_string());
    let (status, _) =
        control_post(&client::stripe_send_event_url(&fakes.url), json!({"webhook_url": webhook_url, "secret": SECRET, "object": {}})).await;
    assert_eq!(status, 400, "type is required");
}

#[test]
fn control_urls() {
    assert_eq!(client::stripe_complete_checkout_url("http://h:1/", "cs_test_1"), "http://h:1/__fakes/stripe/checkout/cs_test_1/complete");
    assert_eq!(client::stripe_subscription_url("http://h:1", "sub_1"), "http://h:1/__fakes/stripe/subscriptions/sub_1");
    assert_eq!(client::stripe_meter_events_url("http://h:1"), "http://h:1/__fakes/stripe/meter_events");
    assert_eq!(client::stripe_send_event_url("http://h:1"), "http://h:1/__fakes/stripe/events/send");
    assert_eq!(client::stripe::signature_header("k", 1, b"x"), format!("t=1,v1={}", client::stripe::compute_signature("k", 1, b"x")));
}
