//! Clients of external services, one module per provider, each reached only
//! through its configured base URL. Fakes with the same wire format live in
//! `tests/src/fakes/<provider>/`.

pub mod http;
pub mod openrouter;
pub mod stripe;
pub mod twilio;
pub mod upstream;
