//! ZKAPAuthorizer's pass-based storage payment for gbs: the plugin
//! `privatestorageio-zkapauthz-v2`, ported from ZKAPAuthorizer 2022.8.21 (see
//! `plugin-model.md` §2 in the project's shared notes).
//!
//! Built so far, and checked against vectors recorded from the original Python code
//! (`vectors/`):
//!
//! - [`pass`]: passes as ZKAPAuthorizer makes and checks them (Ristretto privacy pass,
//!   bound to one operation on one storage index), and the issuer's side of redemption.
//! - [`pricing`]: what each operation costs in passes.
//! - [`spent`]: the server's persistent ledger of reserved and spent passes, which refuses
//!   a pass used before, also after a restart.
//!
//! Still to come: the server and client plugin sides, the client wallet, large pass sets through the plugin route, the issuer command, metrics.

pub mod pass;
pub mod pricing;
pub mod spent;
