//! The OpenAPI 3.1 document served at `GET /openapi.json`.
//!
//! Written by hand (it is the contract clients read), checked against the
//! route table by the test below so no routed path goes undocumented and no
//! documented path is unrouted.

pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{openapi_path, ROUTES};
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(OPENAPI_JSON).unwrap_or(Value::Null)
    }

    #[test]
    fn is_openapi_3_1() {
        let d = doc();
        assert_eq!(d["openapi"], "3.1.0");
        assert!(d["info"]["title"].is_string());
    }

    #[test]
    fn documents_every_routed_path_and_method() {
        let d = doc();
        for route in ROUTES {
            let p = openapi_path(route.path);
            let op = &d["paths"][&p][route.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing from openapi.json", route.method, p);
            assert!(op["operationId"].is_string(), "{} {} has no operationId", route.method, p);
            assert!(op["responses"].is_object(), "{} {} has no responses", route.method, p);
        }
    }

    #[test]
    fn documents_nothing_unrouted() {
        let d = doc();
        let paths = d["paths"].as_object().cloned().unwrap_or_default();
        for (p, ops) in paths {
            for (method, _) in ops.as_object().cloned().unwrap_or_default() {
                if method == "parameters" {
                    continue;
                }
                let routed = ROUTES.iter().any(|r| openapi_path(r.path) == p && r.method.eq_ignore_ascii_case(&method));
                assert!(routed, "{method} {p} is documented but not routed");
            }
        }
    }
}
