//! Self-tests of the Twilio Verify fake: a real fakes server on a free
//! port, driven over HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fakes::client::{self, PendingVerification, ScriptSpec};
use crate::fakes::{spawn, FakesConfig, RunningFakes};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "auth-token";
const SERVICE: &str = "VA0123456789abcdef0123456789abcdef";
const TO: &str = "+14155550123";

async fn start() -> RunningFakes {
    spawn(FakesConfig { log_requests: false }).await.expect("start fakes")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

fn verifications_url(fakes: &RunningFakes) -> String {
    fakes.url(&format!("/twilio/v2/Services/{SERVICE}/Verifications"))
}

fn check_url(fakes: &RunningFakes) -> String {
    fakes.url(&format!("/twilio/v2/Services/{SERVICE}/VerificationCheck"))
}

/// `POST` of a urlencoded form with the test account's Basic auth.
async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = form.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
    let resp = http()
        .post(url)
        .basic_auth(ACCOUNT, Some(TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn send(fakes: &RunningFakes, to: &str) -> (u16, Value) {
    post_form(&verifications_url(fakes), &[("To", to), ("Channel", "sms")]).await
}

async fn check(fakes: &RunningFakes, to: &str, code: &str) -> (u16, Value) {
    post_form(&check_url(fakes), &[("To", to), ("Code", code)]).await
}

async fn sent_code(fakes: &RunningFakes, to: &str) -> Option<PendingVerification> {
    let resp = http().get(client::twilio_verifications_url(&fakes.url, to)).send().await.expect("send");
    if resp.status() == 404 {
        assert_eq!(resp.json::<Value>().await.expect("json"), json!({"error": "none"}));
        return None;
    }
    assert_eq!(resp.status(), 200);
    Some(resp.json().await.expect("json"))
}

fn wrong(code: &str) -> String {
    let first = if code.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &code[1..])
}

fn assert_error(body: &Value, status: u16, code: u64) {
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["more_info"], format!("https://www.twilio.com/docs/errors/{code}"), "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn send_check_wrong_right_again() {
    let fakes = start().await;
    let (status, v) = send(&fakes, TO).await;
    assert_eq!(status, 201, "{v}");
    let sid = v["sid"].as_str().expect("sid").to_owned();
    assert!(sid.starts_with("VE") && sid.len() == 34, "{sid}");
    assert_eq!(v["service_sid"], SERVICE);
    assert_eq!(v["account_sid"], ACCOUNT);
    assert_eq!(v["to"], TO);
    assert_eq!(v["channel"], "sms");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["valid"], false);
    assert_eq!(v["lookup"], json!({}));
    assert_eq!(v["amount"], Value::Null);
    assert_eq!(v["payee"], Value::Null);
    assert_eq!(v["sna"], Value::Null);
    assert_eq!(v["url"], format!("https://verify.twilio.com/v2/Services/{SERVICE}/Verifications/{sid}"));
    let attempts = v["send_code_attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0]["attempt_sid"].as_str().is_some_and(|s| s.starts_with("VL") && s.len() == 34));
    assert_eq!(attempts[0]["channel"], "sms");
    assert!(v["date_created"].as_str().is_some_and(|d| d.len() == 20 && d.ends_with('Z')), "{v}");

    let pending = sent_code(&fakes, TO).await.expect("pending");
    assert_eq!((pending.to.as_str(), pending.status.as_str(), pending.channel.as_str()), (TO, "pending", "sms"));
    assert_eq!(pending.service_sid, SERVICE);
    assert!(pending.code.len() == 6 && pending.code.bytes().all(|b| b.is_ascii_digit()));

    let (status, v) = check(&fakes, TO, &wrong(&pending.code)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["valid"].as_bool()), (Some("pending"), Some(false)));
    assert_eq!(v["sid"], sid.as_str());

    let (status, v) = check(&fakes, TO, &pending.code).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["valid"].as_bool()), (Some("approved"), Some(true)));
    assert_eq!(v["to"], TO);
    assert_eq!(v["sna_attempts_error_codes"], json!([]));

    let (status, v) = check(&fakes, TO, &pending.code).await;
    assert_eq!(status, 404);
    assert_error(&v, 404, 20404);
    assert_eq!(v["message"], format!("The requested resource /Services/{SERVICE}/VerificationCheck was not found"));
    assert!(sent_code(&fakes, TO).await.is_none());

    // Checking by VerificationSid works too.
    let (_, v) = send(&fakes, TO).await;
    let code = sent_code(&fakes, TO).await.expect("pending").code;
    let sid = v["sid"].as_str().expect("sid");
    let (status, v) = post_form(&check_url(&fakes), &[("VerificationSid", sid), ("Code", &code)]).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("approved")));

    // Every Twilio request was recorded under the twilio provider.
    let recorded: client::RecordedRequests =
        http().get(client::requests_url(&fakes.url, Some("twilio"), None)).send().await.expect("send").json().await.expect("json");
    assert_eq!(recorded.requests.len(), 6);
    assert_eq!(recorded.requests[0].path, format!("/v2/Services/{SERVICE}/Verifications"));
    assert_eq!(recorded.requests[0].body, "To=%2B14155550123&Channel=sms");
}

#[tokio::test]
async fn auth_is_required() {
    let fakes = start().await;
    let form = "To=%2B14155550123&Channel=sms";
    let post = || http().post(verifications_url(&fakes)).header("content-type", "application/x-www-form-urlencoded").body(form);
    let cases = [
        post(),
        post().basic_auth("SK0123", Some(TOKEN)),
        post().basic_auth(ACCOUNT, None::<&str>),
        post().bearer_auth("token"),
        post().header("authorization", "Basic not-base64!"),
    ];
    for req in cases {
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("www-authenticate").is_some());
        assert_eq!(
            resp.json::<Value>().await.expect("json"),
            json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})
        );
    }
    let resp = http().post(check_url(&fakes)).body("To=x&Code=1").send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert!(sent_code(&fakes, TO).await.is_none());
}

#[tokio::test]
async fn bad_parameters_get_60200() {
    let fakes = start().await;
    let url = verifications_url(&fakes);
    for to in ["", "14155550123", "+0415555012", "+1234567", "+1234567890123456", "+1415555O123"] {
        let (status, v) = post_form(&url, &[("To", to), ("Channel", "sms")]).await;
        assert_eq!(status, 400, "{to}");
        assert_error(&v, 400, 60200);
        assert_eq!(v["message"], format!("Invalid parameter `To`: {to}"));
    }
    let (status, v) = post_form(&url, &[("Channel", "sms")]).await;
    assert_eq!((status, v["message"].as_str()), (400, Some("Invalid parameter `To`: ")));
    for channel in ["", "fax", "SMS"] {
        let (status, v) = post_form(&url, &[("To", TO), ("Channel", channel)]).await;
        assert_eq!(status, 400, "{channel}");
        assert_error(&v, 400, 60200);
        assert_eq!(v["message"], format!("Invalid parameter `Channel`: {channel}"));
    }
    // A JSON body is not a form.
    let resp = http().post(&url).basic_auth(ACCOUNT, Some(TOKEN)).json(&json!({"To": TO, "Channel": "sms"})).send().await.expect("send");
    assert_eq!(resp.status(), 400);
    assert_error(&resp.json().await.expect("json"), 400, 60200);
    // Check without Code.
    let (status, v) = post_form(&check_url(&fakes), &[("To", TO)]).await;
    assert_eq!(status, 400);
    assert_error(&v, 400, 60200);
    assert!(sent_code(&fakes, TO).await.is_none());
    // Email channel takes an email address.
    let (status, v) = post_form(&url, &[("To", "user@example.com"), ("Channel", "email")]).await;
    assert_eq!((status, v["channel"].as_str()), (201, Some("email")));
}

#[tokio::test]
async fn max_send_attempts() {
    let fakes = start().await;
    for _ in 0..5 {
        assert_eq!(send(&fakes, TO).await.0, 201);
    }
    let code = sent_code(&fakes, TO).await.expect("pending").code;
    let (status, v) = send(&fakes, TO).await;
    assert_eq!(status, 429, "{v}");
    assert_error(&v, 429, 60203);
    assert_eq!(v["message"], "Max send attempts reached");
    // The pending verification is untouched; another number is unaffected.
    assert_eq!(sent_code(&fakes, TO).await.expect("pending").code, code);
    assert_eq!(send(&fakes, "+447700900123").await.0, 201);
    // An approved check resets the count.
    assert_eq!(check(&fakes, TO, &code).await.1["status"], "approved");
    assert_eq!(send(&fakes, TO).await.0, 201);
    // So does a reset of the fakes.
    for _ in 0..4 {
        assert_eq!(send(&fakes, TO).await.0, 201);
    }
    assert_eq!(send(&fakes, TO).await.0, 429);
    assert_eq!(http().post(client::reset_url(&fakes.url)).send().await.expect("send").status(), 200);
    assert!(sent_code(&fakes, TO).await.is_none());
    assert_eq!(send(&fakes, TO).await.0, 201);
}

#[tokio::test]
async fn max_check_attempts() {
    let fakes = start().await;
    assert_eq!(send(&fakes, TO).await.0, 201);
    let code = sent_code(&fakes, TO).await.expect("pending").code;
    let bad = wrong(&code);
    for _ in 0..4 {
        let (status, v) = check(&fakes, TO, &bad).await;
        assert_eq!((status, v["status"].as_str()), (200, Some("pending")));
    }
    let (status, v) = check(&fakes, TO, &bad).await;
    assert_eq!(status, 429, "{v}");
    assert_error(&v, 429, 60202);
    assert_eq!(v["message"], "Max check attempts reached");
    // Gone: even the right code is a 404 now.
    assert!(sent_code(&fakes, TO).await.is_none());
    let (status, v) = check(&fakes, TO, &code).await;
    assert_eq!(status, 404);
    assert_error(&v, 404, 20404);
}

#[tokio::test]
async fn newest_code_wins_and_unencoded_plus() {
    let fakes = start().await;
    send(&fakes, TO).await;
    let first = sent_code(&fakes, TO).await.expect("pending");
    send(&fakes, TO).await;
    let second = sent_code(&fakes, TO).await.expect("pending");
    // An unencoded `+` in the query reads as a space; taken as `+`.
    let resp = http().get(fakes.url(&format!("{}?to=+14155550123", client::TWILIO_VERIFICATIONS_PATH))).send().await.expect("send");
    assert_eq!(resp.json::<PendingVerification>().await.expect("json"), second);
    if first.code != second.code {
        assert_eq!(check(&fakes, TO, &first.code).await.1["status"], "pending");
    }
    assert_eq!(check(&fakes, TO, &second.code).await.1["status"], "approved");
    assert!(sent_code(&fakes, "+15005550006").await.is_none());
}

#[tokio::test]
async fn scripted_503_and_unknown_paths() {
    let fakes = start().await;
    let spec = ScriptSpec::new("twilio", &format!("/v2/Services/{SERVICE}/Verifications")).status(503);
    let resp = http().post(client::script_url(&fakes.url)).json(&spec.to_json()).send().await.expect("script");
    assert_eq!(resp.status(), 200);
    let resp = http()
        .post(verifications_url(&fakes))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("To=%2B14155550123&Channel=sms")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers().get("twilio-request-id").and_then(|v| v.to_str().ok()), Some("req_fake_1"));
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"code": 20500, "message": "Service Unavailable", "more_info": "https://www.twilio.com/docs/errors/20500", "status": 503})
    );
    assert!(sent_code(&fakes, TO).await.is_none());
    // The script was used once.
    assert_eq!(send(&fakes, TO).await.0, 201);

    for path in ["/twilio/v2/Services/VA1/Nope", "/twilio/2010-04-01/Accounts/AC1/Messages.json", "/twilio"] {
        let resp = http().post(fakes.url(path)).basic_auth(ACCOUNT, Some(TOKEN)).send().await.expect("send");
        assert_eq!(resp.status(), 404, "{path}");
        let v: Value = resp.json().await.expect("json");
        assert_error(&v, 404, 20404);
    }
    let resp = http().get(verifications_url(&fakes)).basic_auth(ACCOUNT, Some(TOKEN)).send().await.expect("send");
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["message"], format!("The requested resource /Services/{SERVICE}/Verifications was not found"));
}
